//! The `particles` job kind: an ensemble of independent simulations. Replica i of a job with seed
//! K runs the pure kernel ([`crate::particles::simulate`]) from seed K + i as task i, so the tasks' results, in task
//! order, are the replicas ordered by seed, whichever worker ran them and however often.
//!
//! Output formats: `text` (a table for people) and `json` (a `replicas` list ordered by seed;
//! `collisions` at the top level for one replica, their mean, standard deviation, minimum and
//! maximum for several).

use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{JobContext, JobKind, PlannedTask, Refusal, SubmitLimits, TaskError, TaskSource};
use crate::particles::{simulate_until, ParticleError, ParticleParams};
use crate::protocol::{ErrorCode, ProgressFigure};

/// The job kind name stored with each particle job.
pub const PARTICLES_KIND: &str = "particles";

/// Most replicas (tasks) in one job: each is a queue entry and a stored result of about 200 bytes.
pub const MAX_REPLICAS: u32 = 100_000;

/// What a client submits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticlesSubmission {
    /// Discs per simulation.
    pub particles: u32,
    /// Steps per simulation.
    pub steps: u64,
    /// Seed of the first replica; replica i uses `seed + i`.
    pub seed: u64,
    /// Independent simulations (default 1).
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// Why a particle submission is refused; one line naming the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParticlesSpecError {
    /// A parameter the kernel refuses.
    #[error(transparent)]
    Params(#[from] ParticleError),
    /// Zero replicas, or more than [`MAX_REPLICAS`].
    #[error("replicas must be between 1 and {MAX_REPLICAS}, got {0}")]
    Replicas(u32),
    /// More disc-steps than the master's cap allows one job.
    #[error(
        "{replicas} replicas × {particles} discs × {steps} steps = {work} disc-steps exceeds the \
         master's cap of {max} per job (--max-particle-work); lower the replicas, discs or steps"
    )]
    TooMuchWork {
        /// Replicas asked for.
        replicas: u32,
        /// Discs per simulation.
        particles: u32,
        /// Steps per simulation.
        steps: u64,
        /// Replicas × discs × steps.
        work: u64,
        /// The master's cap.
        max: u64,
    },
    /// Seeds K..K+R−1 that do not fit 64 bits.
    #[error(
        "seed {seed} + {replicas} replicas passes the largest seed, {}; lower the seed",
        u64::MAX
    )]
    SeedOverflow {
        /// The first seed.
        seed: u64,
        /// The replicas asked for.
        replicas: u32,
    },
}

impl ParticlesSubmission {
    /// Checks every limit, the job's work (replicas × discs × steps) against
    /// `max_disc_steps` among them; returns the job's spec with the kernel's defaults filled in.
    pub fn check(&self, max_disc_steps: u64) -> Result<ParticlesJobSpec, ParticlesSpecError> {
        let replicas = self.replicas.unwrap_or(1);
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(ParticlesSpecError::Replicas(replicas));
        }
        let work = u64::from(replicas)
            .saturating_mul(u64::from(self.particles))
            .saturating_mul(self.steps);
        if work > max_disc_steps {
            return Err(ParticlesSpecError::TooMuchWork {
                replicas,
                particles: self.particles,
                steps: self.steps,
                work,
                max: max_disc_steps,
            });
        }
        if self.seed.checked_add(u64::from(replicas) - 1).is_none() {
            return Err(ParticlesSpecError::SeedOverflow {
                seed: self.seed,
                replicas,
            });
        }
        let params = ParticleParams::new(self.particles, self.steps, self.seed);
        params.validate()?;
        Ok(ParticlesJobSpec { params, replicas })
    }
}

/// A particle job's stored spec: the first replica's parameters and the replica count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticlesJobSpec {
    /// Parameters of replica 0 (the others differ only by their seed).
    pub params: ParticleParams,
    /// Replicas, one task each.
    pub replicas: u32,
}

impl ParticlesJobSpec {
    /// The parameters of replica `index`: seed K + index.
    pub fn replica(&self, index: u32) -> ParticleParams {
        ParticleParams {
            seed: self.params.seed.wrapping_add(u64::from(index)),
            ..self.params
        }
    }
}

/// One replica's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The replica's seed.
    pub seed: u64,
    /// Disc–disc collisions.
    pub collisions: u64,
    /// Disc–wall bounces.
    pub wall_bounces: u64,
    /// Kinetic energy before the first step.
    pub kinetic_energy_start: f64,
    /// Kinetic energy after the last step.
    pub kinetic_energy_end: f64,
    /// Time the simulation took, in seconds (the one field that differs between runs).
    pub seconds: f64,
    /// Why the simulation could not run (a spec no master would accept); absent when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Replica {
    /// Runs the simulation of `params`, timing it.
    pub fn run(params: &ParticleParams) -> Replica {
        let never = AtomicBool::new(false);
        Self::run_until(params, &never).expect("never stopped")
    }

    /// [`Replica::run`] that gives up with `None` soon after `stop` is set.
    pub fn run_until(params: &ParticleParams, stop: &AtomicBool) -> Option<Replica> {
        let started = Instant::now();
        let outcome = simulate_until(params, stop);
        let seconds = started.elapsed().as_secs_f64();
        Some(match outcome {
            Ok(None) => return None,
            Ok(Some(outcome)) => Replica {
                seed: params.seed,
                collisions: outcome.collisions,
                wall_bounces: outcome.wall_bounces,
                kinetic_energy_start: outcome.kinetic_energy_start,
                kinetic_energy_end: outcome.kinetic_energy_end,
                seconds,
                error: None,
            },
            Err(err) => Replica {
                seed: params.seed,
                collisions: 0,
                wall_bounces: 0,
                kinetic_energy_start: 0.0,
                kinetic_energy_end: 0.0,
                seconds,
                error: Some(err.to_string()),
            },
        })
    }

    /// |E_end − E_start| / E_start (0 for a box at rest).
    pub fn relative_energy_drift(&self) -> f64 {
        let start = self.kinetic_energy_start;
        if start == 0.0 {
            return 0.0;
        }
        ((self.kinetic_energy_end - start) / start).abs()
    }
}

/// Mean, sample standard deviation (n − 1), minimum and maximum of the replicas' collisions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollisionStats {
    /// Mean collisions per replica.
    pub mean: f64,
    /// Sample standard deviation (divides by n − 1; 0 for one replica).
    pub std: f64,
    /// Fewest collisions of any replica.
    pub min: u64,
    /// Most collisions of any replica.
    pub max: u64,
}

impl CollisionStats {
    /// The statistics of `replicas`; `None` when there are none.
    pub fn of(replicas: &[Replica]) -> Option<Self> {
        let n = replicas.len();
        let min = replicas.iter().map(|r| r.collisions).min()?;
        let max = replicas.iter().map(|r| r.collisions).max()?;
        let mean = replicas.iter().map(|r| r.collisions as f64).sum::<f64>() / n as f64;
        let squares: f64 = replicas
            .iter()
            .map(|r| (r.collisions as f64 - mean).powi(2))
            .sum();
        let std = if n > 1 {
            (squares / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self {
            mean,
            std,
            min,
            max,
        })
    }
}

/// A whole ensemble: the job's spec and its replicas ordered by seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Ensemble {
    /// The job's spec.
    pub spec: ParticlesJobSpec,
    /// One result per replica, ordered by seed.
    pub replicas: Vec<Replica>,
}

/// The JSON printed by `results --json` and `gridwatch particles --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticlesReport {
    /// The job's id (absent for a local run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Always `particles`.
    pub kind: String,
    /// Discs per simulation.
    pub particles: u32,
    /// Steps per simulation.
    pub steps: u64,
    /// Seed of the first replica.
    pub seed: u64,
    /// Disc radius (box lengths).
    pub radius: f64,
    /// Duration of a step.
    pub dt: f64,
    /// Bound of each initial velocity component.
    pub max_speed: f64,
    /// Replicas asked for.
    pub replica_count: u32,
    /// Collisions of the only replica (one replica only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collisions: Option<u64>,
    /// Collision statistics over the replicas (several replicas only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_stats: Option<CollisionStats>,
    /// Largest |E_end − E_start| / E_start of any replica.
    pub max_relative_energy_drift: f64,
    /// Wall time of the job (or the local run), in seconds.
    pub seconds: f64,
    /// Tasks the job was cut into.
    pub tasks: u32,
    /// Every replica, ordered by seed.
    pub replicas: Vec<Replica>,
}

impl Ensemble {
    /// The report with `job`'s id, time and task count.
    pub fn report(&self, job: &JobContext) -> ParticlesReport {
        let p = &self.spec.params;
        let single = self.spec.replicas == 1;
        ParticlesReport {
            job_id: job.job_id.clone(),
            kind: PARTICLES_KIND.into(),
            particles: p.particles,
            steps: p.steps,
            seed: p.seed,
            radius: p.radius,
            dt: p.dt,
            max_speed: p.max_speed,
            replica_count: self.spec.replicas,
            collisions: single
                .then(|| self.replicas.first().map(|r| r.collisions))
                .flatten(),
            collision_stats: (!single)
                .then(|| CollisionStats::of(&self.replicas))
                .flatten(),
            max_relative_energy_drift: self
                .replicas
                .iter()
                .map(Replica::relative_energy_drift)
                .fold(0.0, f64::max),
            seconds: job.seconds,
            tasks: job.tasks,
            replicas: self.replicas.clone(),
        }
    }

    /// Fails unless there is one replica per seed K..K+R−1, in order, each of which ran.
    fn check_complete(&self) -> io::Result<()> {
        let seeds = (0..self.spec.replicas).map(|i| self.spec.replica(i).seed);
        if self.replicas.len() != self.spec.replicas as usize
            || !self.replicas.iter().map(|r| r.seed).eq(seeds)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} stored replicas, expected seeds {}..={} in order",
                    self.replicas.len(),
                    self.spec.params.seed,
                    self.spec.replica(self.spec.replicas.saturating_sub(1)).seed
                ),
            ));
        }
        if let Some(failed) = self.replicas.iter().find(|r| r.error.is_some()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "replica with seed {} did not run: {}",
                    failed.seed,
                    failed.error.as_deref().unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }
}

/// Prints `ensemble` in `format` (`text` or `json`).
pub fn write_ensemble(
    ensemble: &Ensemble,
    job: &JobContext,
    format: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    ensemble.check_complete()?;
    let report = ensemble.report(job);
    if format == "json" {
        serde_json::to_writer(&mut *out, &report)?;
        return writeln!(out);
    }
    if let Some(job) = &report.job_id {
        writeln!(out, "Job ID: {job}")?;
    }
    writeln!(
        out,
        "Particles: {} discs, {} steps, radius {:.6}, dt {:.6}, {} from seed {}",
        report.particles,
        report.steps,
        report.radius,
        report.dt,
        super::count_of(u64::from(report.replica_count), "replica"),
        report.seed
    )?;
    writeln!(
        out,
        "{:>20} {:>12} {:>12} {:>22} {:>22} {:>9}",
        "seed", "collisions", "wall_bounces", "energy_start", "energy_end", "seconds"
    )?;
    for r in &report.replicas {
        writeln!(
            out,
            "{:>20} {:>12} {:>12} {:>22.15} {:>22.15} {:>9.3}",
            r.seed,
            r.collisions,
            r.wall_bounces,
            r.kinetic_energy_start,
            r.kinetic_energy_end,
            r.seconds
        )?;
    }
    if let Some(collisions) = report.collisions {
        writeln!(out, "Collisions: {collisions}")?;
    }
    if let Some(stats) = report.collision_stats {
        writeln!(
            out,
            "Collisions: mean {:.2}, std {:.2}, min {}, max {}",
            stats.mean, stats.std, stats.min, stats.max
        )?;
    }
    writeln!(
        out,
        "Largest relative energy drift: {:.3e}",
        report.max_relative_energy_drift
    )?;
    writeln!(
        out,
        "Time: {:.3} s in {}",
        report.seconds,
        super::count_of(u64::from(report.tasks), "task")
    )
}

/// One replica's task: its parameters, seed included.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticlesTaskSpec {
    /// The replica's parameters.
    pub params: ParticleParams,
}

/// The particle kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParticlesKind;

impl JobKind for ParticlesKind {
    const NAME: &'static str = PARTICLES_KIND;
    const FORMATS: &'static [&'static str] = &["text", "json"];
    const SUMMARY_FORMAT: Option<&'static str> = Some("json");
    const PROGRESS_FIGURE: ProgressFigure = ProgressFigure::Collisions;
    type Submission = ParticlesSubmission;
    type Spec = ParticlesJobSpec;
    type TaskSpec = ParticlesTaskSpec;
    type Prepared = ();
    type TaskResult = Replica;
    type Output = Ensemble;

    fn accept(
        &self,
        submission: ParticlesSubmission,
        upload: Option<u64>,
        limits: &SubmitLimits,
    ) -> Result<ParticlesJobSpec, Refusal> {
        super::refuse_upload(PARTICLES_KIND, upload)?;
        submission
            .check(limits.work.particle_disc_steps)
            .map_err(|e| Refusal::new(ErrorCode::BadMessage, format!("particles: {e}")))
    }

    fn tasks(&self, spec: &ParticlesJobSpec) -> Result<TaskSource, Refusal> {
        let tasks = (0..spec.replicas)
            .map(|index| {
                let task = ParticlesTaskSpec {
                    params: spec.replica(index),
                };
                PlannedTask::new(index, &task, Bytes::new())
            })
            .collect::<Result<_, _>>()?;
        Ok(TaskSource::Planned(tasks))
    }

    fn prepare(&self, _task: &ParticlesTaskSpec) -> Result<(), TaskError> {
        Ok(())
    }

    fn run(&self, _prepared: &(), task: &ParticlesTaskSpec, _input: &[u8]) -> Replica {
        Replica::run(&task.params)
    }

    fn run_until(
        &self,
        _prepared: &(),
        task: &ParticlesTaskSpec,
        _input: &[u8],
        stop: &AtomicBool,
    ) -> Option<Replica> {
        Replica::run_until(&task.params, stop)
    }

    fn matches(&self, replica: &Replica) -> u64 {
        replica.collisions
    }

    /// Each step, every pair of discs collides at most once.
    fn max_matches(&self, task: &ParticlesTaskSpec, _input_len: usize) -> u64 {
        let discs = u64::from(task.params.particles);
        let pairs = discs.saturating_mul(discs.saturating_sub(1)) / 2;
        pairs.saturating_mul(task.params.steps)
    }

    /// A replica of the task's seed whose figures are finite and within what its discs and
    /// steps allow (each disc meets at most two walls a step).
    fn check_result(
        &self,
        task: &ParticlesTaskSpec,
        matches: u64,
        replica: &Replica,
    ) -> Result<(), String> {
        super::agree(matches, self.matches(replica))?;
        if replica.seed != task.params.seed {
            return Err(format!(
                "a replica of seed {}; the task's seed is {}",
                replica.seed, task.params.seed
            ));
        }
        let bounces = u64::from(task.params.particles)
            .saturating_mul(2)
            .saturating_mul(task.params.steps);
        if replica.wall_bounces > bounces {
            return Err(format!(
                "{} wall bounces; at most {bounces}",
                replica.wall_bounces
            ));
        }
        let figures = [
            replica.kinetic_energy_start,
            replica.kinetic_energy_end,
            replica.seconds,
        ];
        match figures.iter().all(|x| x.is_finite() && *x >= 0.0) {
            true => Ok(()),
            false => Err("an energy or time that is negative or not finite".to_string()),
        }
    }

    fn combine(&self, spec: &ParticlesJobSpec, results: Vec<(u32, Replica)>) -> Ensemble {
        Ensemble {
            spec: *spec,
            replicas: results.into_iter().map(|(_, replica)| replica).collect(),
        }
    }

    fn render(
        &self,
        ensemble: &Ensemble,
        job: &JobContext,
        format: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        write_ensemble(ensemble, job, format, out)
    }

    fn summary(&self, spec: &ParticlesJobSpec) -> String {
        let p = &spec.params;
        let seeds = match spec.replicas {
            1 => format!("seed {}", p.seed),
            r => format!(
                "{r} replicas, seeds {}–{}",
                p.seed,
                spec.replica(r - 1).seed
            ),
        };
        format!("{} discs × {} steps, {seeds}", p.particles, p.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs;

    const LIMITS: SubmitLimits = SubmitLimits {
        max_upload: 0,
        max_frame: 1 << 24,
        default_chunk_size: 1,
        work: jobs::WorkCaps::DEFAULT,
        max_positions: 1 << 20,
    };

    #[test]
    fn replicas_come_back_ordered_by_seed_whatever_order_they_finish_in() {
        let kind = jobs::require(PARTICLES_KIND).unwrap();
        let submission =
            serde_json::json!({ "particles": 30, "steps": 20, "seed": 7, "replicas": 4 });
        let spec = kind.accept(submission, None, &LIMITS).unwrap();
        let TaskSource::Planned(tasks) = kind.tasks(&spec).unwrap() else {
            panic!("a particles job uploads nothing");
        };
        let out = jobs::run_in_process(kind, &spec, &tasks, "json");
        let report: ParticlesReport = serde_json::from_slice(&out).unwrap();
        let seeds: Vec<u64> = report.replicas.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, [7, 8, 9, 10]);
        for replica in &report.replicas {
            let alone =
                crate::particles::simulate(&ParticleParams::new(30, 20, replica.seed)).unwrap();
            assert_eq!(replica.collisions, alone.collisions);
            assert_eq!(replica.kinetic_energy_end, alone.kinetic_energy_end);
        }
        assert_eq!(report.collisions, None);
        let stats = report.collision_stats.unwrap();
        assert!(stats.min as f64 <= stats.mean && stats.mean <= stats.max as f64);
    }

    #[test]
    fn statistics_are_checkable_by_hand() {
        let replica = |collisions| Replica {
            seed: 0,
            collisions,
            wall_bounces: 0,
            kinetic_energy_start: 1.0,
            kinetic_energy_end: 1.0,
            seconds: 0.0,
            error: None,
        };
        let stats = CollisionStats::of(&[replica(2), replica(4), replica(6)]).unwrap();
        assert_eq!(
            stats,
            CollisionStats {
                mean: 4.0,
                std: 2.0,
                min: 2,
                max: 6
            }
        );
        assert_eq!(CollisionStats::of(&[]), None);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_field_named() {
        let kind = jobs::require(PARTICLES_KIND).unwrap();
        let refuse = |value: serde_json::Value| kind.accept(value, None, &LIMITS).unwrap_err();
        let zero = refuse(serde_json::json!({ "particles": 0, "steps": 1, "seed": 1 }));
        assert_eq!(
            zero.message,
            "particles: particles must be between 1 and 1000000, got 0"
        );
        let replicas =
            refuse(serde_json::json!({ "particles": 5, "steps": 1, "seed": 1, "replicas": 0 }));
        assert!(replicas.message.contains("replicas must be between"));
        let overflow = refuse(
            serde_json::json!({ "particles": 5, "steps": 1, "seed": u64::MAX, "replicas": 2 }),
        );
        assert!(overflow.message.contains("lower the seed"));
        let work = refuse(serde_json::json!({ "particles": 1000000, "steps": 100000, "seed": 1 }));
        assert!(
            work.message.contains("exceeds the limit"),
            "{}",
            work.message
        );
    }
}
