//! `gridwatch particles …` (the replicas on all local cores) and the flags `gridwatch submit
//! particles …` shares with it. Both print through the `particles` kind's printer, so a local run
//! and a grid job print the same replicas.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::connect::ClientError;
use super::job_request::{JobRequest, SubmitCommon};
use super::julia::count;
use super::tool_error::{ignore_broken_pipe, ToolError};
use gridwatch::jobs::particles::{
    write_ensemble, Ensemble, ParticlesJobSpec, ParticlesSubmission, Replica, MAX_REPLICAS,
    PARTICLES_KIND,
};
use gridwatch::jobs::JobContext;
use gridwatch::particles::MAX_PARTICLES;

/// What to simulate.
#[derive(Clone, Debug, clap::Args)]
pub struct ParticlesSpecArgs {
    /// Discs per simulation (1 to 1000000). Their radius makes them cover 10 % of the box.
    #[arg(long, allow_negative_numbers = true)]
    pub particles: i64,
    /// Steps per simulation (particles × steps at most 2·10¹⁰ per replica).
    #[arg(long, allow_negative_numbers = true)]
    pub steps: i64,
    /// Seed of the first replica's initial state.
    #[arg(long)]
    pub seed: u64,
    /// Independent simulations, with seeds SEED, SEED+1, …, SEED+R−1 (1 to 100000).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub replicas: i64,
}

impl ParticlesSpecArgs {
    /// The submission and its checked spec, or one line saying which value is wrong.
    pub fn checked(&self) -> Result<(ParticlesSubmission, ParticlesJobSpec), String> {
        let steps = match u64::try_from(self.steps) {
            Ok(steps) if steps >= 1 => steps,
            _ => {
                return Err(format!(
                    "particles: steps must be between 1 and {}, got {}",
                    gridwatch::particles::MAX_STEPS,
                    self.steps
                ))
            }
        };
        let submission = ParticlesSubmission {
            particles: count("particles", self.particles, MAX_PARTICLES)
                .map_err(|e| format!("particles: {e}"))?,
            steps,
            seed: self.seed,
            replicas: Some(
                count("replicas", self.replicas, MAX_REPLICAS)
                    .map_err(|e| format!("particles: {e}"))?,
            ),
        };
        let spec = submission
            .check(u64::MAX)
            .map_err(|e| format!("particles: {e}"))?;
        Ok((submission, spec))
    }

    /// The submission as a job request, checked before anything is sent.
    pub fn request(&self) -> Result<JobRequest, ClientError> {
        let (submission, _) = self.checked().map_err(ClientError::Usage)?;
        Ok(JobRequest {
            kind: PARTICLES_KIND,
            spec: serde_json::to_value(submission)
                .map_err(|e| ClientError::Usage(format!("particles spec: {e}")))?,
            upload: None,
            inputs: Vec::new(),
        })
    }
}

/// `gridwatch submit particles …`.
#[derive(Clone, Debug, clap::Args)]
pub struct ParticlesSubmitArgs {
    /// What to simulate.
    #[command(flatten)]
    pub spec: ParticlesSpecArgs,
    /// Flags of every submit.
    #[command(flatten)]
    pub common: SubmitCommon,
}

/// `gridwatch particles …`.
#[derive(Clone, Debug, clap::Args)]
pub struct ParticlesArgs {
    /// What to simulate.
    #[command(flatten)]
    pub spec: ParticlesSpecArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Threads, each running whole replicas (default: all cores).
    #[arg(long, env = "GRIDWATCH_THREADS")]
    pub threads: Option<usize>,
}

/// Runs `gridwatch particles`.
pub fn run(args: &ParticlesArgs) -> Result<(), ToolError> {
    let (_, spec) = args.spec.checked().map_err(ToolError::Usage)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let replicas = run_replicas(&spec, threads);
    let job = JobContext {
        job_id: None,
        seconds: started.elapsed().as_secs_f64(),
        tasks: spec.replicas,
    };
    let ensemble = Ensemble { spec, replicas };
    let format = if args.json { "json" } else { "text" };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    ignore_broken_pipe(
        write_ensemble(&ensemble, &job, format, &mut out).and_then(|()| out.flush()),
    )?;
    Ok(())
}

/// Every replica of `spec` on `threads` threads, each taking the next replica when it is free;
/// returned ordered by seed.
pub fn run_replicas(spec: &ParticlesJobSpec, threads: usize) -> Vec<Replica> {
    let next = AtomicU32::new(0);
    let mut done: Vec<(u32, Replica)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(spec.replicas as usize).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= spec.replicas {
                            return mine;
                        }
                        mine.push((index, Replica::run(&spec.replica(index))));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, replica)| replica).collect()
}
