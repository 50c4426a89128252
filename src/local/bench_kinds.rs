//! `gridwatch bench julia` and `gridwatch bench particles`: one table per run. The grid (a local
//! grid the bench starts, as `bench grid` does) against the local kernel on all cores, the local
//! kernel against the Python implementations beside the benches (`benches/python/`, numpy variant
//! when numpy imports), and a sweep of task counts showing how the grid scales with tasks. Every
//! row is checked against the local answer: every pixel, or every replica's collisions, wall
//! bounces and energies to the bit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::connect::{ClientError, MasterAddr, MasterClient};
use crate::client::fetch::fetch_results;
use crate::client::progress::JobProgress;
use crate::client::query::wait_for_every;
use crate::client::submit::{send_job, JobRequest};
use crate::client::tool_error::ToolError;
use crate::local::up::{Cluster, UpArgs};
use gridwatch::jobs::julia::{JuliaBand, JuliaSubmission, JULIA_KIND};
use gridwatch::jobs::particles::{ParticlesSubmission, Replica, PARTICLES_KIND};
use gridwatch::julia::{render_with_threads, JuliaGrid};
use gridwatch::particles::ParticleParams;

/// Where the Python implementations live in the source tree.
const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python");

/// Flags every kind's bench takes.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchGridFlags {
    /// Worker processes of the local grid.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Task slots per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Runs per contender; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Python interpreter for the Python contenders (skipped when it does not run).
    #[arg(long, env = "GRIDWATCH_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Directory of the Python implementations.
    #[arg(long, default_value = PYTHON_DIR)]
    pub python_dir: PathBuf,
}

/// `gridwatch bench julia`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchJuliaArgs {
    /// Columns (and rows) of the classic benchmark's image.
    #[arg(long, default_value_t = 1000)]
    pub width: u32,
    /// Iteration limit per pixel.
    #[arg(long, default_value_t = 300)]
    pub iterations: u32,
    /// Bands (tasks) to sweep on the grid, comma-separated.
    #[arg(long, default_value = "1,2,4,8,32", value_delimiter = ',')]
    pub bands: Vec<u32>,
    /// Grid and Python flags.
    #[command(flatten)]
    pub grid: BenchGridFlags,
}

/// `gridwatch bench particles`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchParticlesArgs {
    /// Discs per simulation.
    #[arg(long, default_value_t = 1000)]
    pub particles: u32,
    /// Steps per simulation.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Seed of the first replica.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replica counts (tasks) to sweep, comma-separated.
    #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
    pub replicas: Vec<u32>,
    /// Grid and Python flags.
    #[command(flatten)]
    pub grid: BenchGridFlags,
}

/// One line of a table.
struct Row {
    name: String,
    seconds: Option<f64>,
    /// Tasks (replicas) the row ran, for throughput.
    tasks: u32,
    answer: String,
    exact: Option<bool>,
    note: String,
}

impl Row {
    fn new(name: impl Into<String>, tasks: u32) -> Self {
        Self {
            name: name.into(),
            seconds: None,
            tasks,
            answer: String::new(),
            exact: None,
            note: String::new(),
        }
    }

    /// Keeps the best time; the answer must be exact on every run.
    fn record(&mut self, elapsed: Duration, answer: String, exact: bool) {
        let secs = elapsed.as_secs_f64();
        self.seconds = Some(self.seconds.map_or(secs, |best| best.min(secs)));
        self.answer = answer;
        self.exact = Some(self.exact.unwrap_or(true) && exact);
    }

    fn skipped(name: impl Into<String>, note: impl Into<String>) -> Self {
        Self {
            note: note.into(),
            ..Self::new(name, 0)
        }
    }
}

/// Runs `gridwatch bench julia`.
pub fn run_julia(args: &BenchJuliaArgs) -> Result<(), ToolError> {
    let submission = JuliaSubmission {
        width: args.width,
        height: None,
        iterations: Some(args.iterations),
        c: None,
        region: None,
        bands: None,
    };
    let spec = submission
        .check(usize::MAX, u64::MAX)
        .map_err(|e| ToolError::Usage(format!("julia: {e}")))?;
    for &bands in &args.bands {
        if bands == 0 || bands > spec.height {
            return Err(ToolError::Usage(format!(
                "--bands {bands}: must be between 1 and {} for this image",
                spec.height
            )));
        }
    }
    let grid = JuliaGrid::new(spec.params).map_err(|e| ToolError::Usage(e.to_string()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = args.grid.runs.max(1);
    let expected = render_with_threads(&grid, cores);
    let sum = |counts: &[u32]| counts.iter().map(|&c| u64::from(c)).sum::<u64>();
    let answer = |counts: &[u32]| format!("sum {}", sum(counts));

    let mut rows = Vec::new();
    for threads in [cores, 1] {
        let mut row = Row::new(format!("local kernel, {threads} thread(s)"), 1);
        for _ in 0..runs {
            let started = Instant::now();
            let counts = render_with_threads(&grid, threads);
            row.record(started.elapsed(), answer(&counts), counts == expected);
        }
        rows.push(row);
    }
    for variant in ["python", "numpy"] {
        rows.push(python_julia(args, variant, &expected));
    }
    let grid_rows = with_grid(&args.grid, "julia", |master| async move {
        let mut rows: Vec<Row> = args
            .bands
            .iter()
            .map(|b| Row::new(format!("grid, {b} bands"), *b))
            .collect();
        for _ in 0..runs {
            for (row, &bands) in rows.iter_mut().zip(&args.bands) {
                let submission = JuliaSubmission {
                    bands: Some(bands),
                    ..submission.clone()
                };
                let spec = serde_json::to_value(&submission)
                    .map_err(|e| ClientError::Usage(e.to_string()))?;
                let (elapsed, results) = grid_job(&master, JULIA_KIND, spec).await?;
                let mut bands: Vec<(u32, JuliaBand)> = Vec::new();
                for result in results {
                    let band = serde_json::from_value(result.payload)
                        .map_err(|e| ClientError::JobFailed(format!("julia band: {e}")))?;
                    bands.push((result.chunk, band));
                }
                bands.sort_by_key(|(chunk, _)| *chunk);
                let counts: Vec<u32> = bands.into_iter().flat_map(|(_, b)| b.counts).collect();
                row.record(elapsed, answer(&counts), counts == expected);
            }
        }
        Ok(rows)
    })?;
    rows.extend(grid_rows);
    let title = format!(
        "Julia {}×{} (asked {}×{}), {} iterations; {} workers × {} slots; best of {runs}; cores {cores}",
        spec.width, spec.height, args.width, args.width, args.iterations, args.grid.workers, args.grid.threads
    );
    print_table(&title, &rows, "local kernel", "tasks/s")
}

/// The Python implementation of the classic benchmark, its every pixel compared.
fn python_julia(args: &BenchJuliaArgs, variant: &str, expected: &[u32]) -> Row {
    let name = format!("Python ({variant})");
    let script = args.grid.python_dir.join("julia.py");
    let script_args = [
        "--width".to_string(),
        args.width.to_string(),
        "--iterations".into(),
        args.iterations.to_string(),
        format!("--variant={variant}"),
        "--counts".into(),
    ];
    let json = match run_python(&args.grid.python, &script, &script_args) {
        Ok(json) => json,
        Err(reason) => return Row::skipped(name, reason),
    };
    let counts: Vec<u32> = json["counts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_u64())
                .map(|c| c as u32)
                .collect()
        })
        .unwrap_or_default();
    let mut row = Row::new(name, 1);
    let seconds = json["seconds"].as_f64().unwrap_or(f64::NAN);
    row.record(
        Duration::from_secs_f64(seconds.max(0.0)),
        format!("sum {}", json["iterations_sum"]),
        counts == expected,
    );
    row.note = "calculation only".into();
    row
}

/// Runs `gridwatch bench particles`.
pub fn run_particles(args: &BenchParticlesArgs) -> Result<(), ToolError> {
    let largest = args.replicas.iter().copied().max().unwrap_or(1);
    let submission = |replicas: u32| ParticlesSubmission {
        particles: args.particles,
        steps: args.steps,
        seed: args.seed,
        replicas: Some(replicas),
    };
    let spec = submission(largest)
        .check(u64::MAX)
        .map_err(|e| ToolError::Usage(format!("particles: {e}")))?;
    if args.replicas.contains(&0) {
        return Err(ToolError::Usage("--replicas: counts start at 1".into()));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = args.grid.runs.max(1);
    let expected = crate::client::particles::run_replicas(&spec, cores);
    if let Some(failed) = expected.iter().find(|r| r.error.is_some()) {
        return Err(ToolError::Failed(failed.error.clone().unwrap_or_default()));
    }
    let same = |got: &[Replica]| {
        got.len() <= expected.len() && got.iter().zip(&expected).all(|(a, b)| same_physics(a, b))
    };
    let answer = |got: &[Replica]| {
        let collisions: u64 = got.iter().map(|r| r.collisions).sum();
        format!("{collisions} collisions")
    };

    let mut rows = Vec::new();
    let mut one = Row::new("local kernel, 1 replica", 1);
    for _ in 0..runs {
        let started = Instant::now();
        let replica = Replica::run(&spec.replica(0));
        one.record(
            started.elapsed(),
            answer(std::slice::from_ref(&replica)),
            same(&[replica]),
        );
    }
    rows.push(one);
    for variant in ["python", "numpy"] {
        rows.push(python_particles(args, variant, &expected[0]));
    }
    for &replicas in &args.replicas {
        let mut row = Row::new(
            format!("local, {replicas} replicas on {cores} cores"),
            replicas,
        );
        let spec = submission(replicas)
            .check(u64::MAX)
            .map_err(|e| ToolError::Usage(e.to_string()))?;
        for _ in 0..runs {
            let started = Instant::now();
            let got = crate::client::particles::run_replicas(&spec, cores);
            row.record(
                started.elapsed(),
                answer(&got),
                same(&got) && got.len() == replicas as usize,
            );
        }
        rows.push(row);
    }
    let grid_rows = with_grid(&args.grid, "particles", |master| async move {
        let mut rows: Vec<Row> = args
            .replicas
            .iter()
            .map(|r| Row::new(format!("grid, {r} replicas"), *r))
            .collect();
        for _ in 0..runs {
            for (row, &replicas) in rows.iter_mut().zip(&args.replicas) {
                let spec = serde_json::to_value(submission(replicas))
                    .map_err(|e| ClientError::Usage(e.to_string()))?;
                let (elapsed, results) = grid_job(&master, PARTICLES_KIND, spec).await?;
                let mut got: Vec<(u32, Replica)> = Vec::new();
                for result in results {
                    let replica = serde_json::from_value(result.payload)
                        .map_err(|e| ClientError::JobFailed(format!("replica: {e}")))?;
                    got.push((result.chunk, replica));
                }
                got.sort_by_key(|(chunk, _)| *chunk);
                let got: Vec<Replica> = got.into_iter().map(|(_, r)| r).collect();
                row.record(
                    elapsed,
                    answer(&got),
                    same(&got) && got.len() == replicas as usize,
                );
            }
        }
        Ok(rows)
    })?;
    rows.extend(grid_rows);
    let title = format!(
        "Particles: {} discs × {} steps from seed {}; {} workers × {} slots; best of {runs}; cores {cores}",
        args.particles, args.steps, args.seed, args.grid.workers, args.grid.threads
    );
    print_table(&title, &rows, "local kernel", "replicas/s")
}

/// Collisions, wall bounces and both energies equal to the bit (timings aside).
fn same_physics(a: &Replica, b: &Replica) -> bool {
    a.seed == b.seed
        && a.collisions == b.collisions
        && a.wall_bounces == b.wall_bounces
        && a.kinetic_energy_start.to_bits() == b.kinetic_energy_start.to_bits()
        && a.kinetic_energy_end.to_bits() == b.kinetic_energy_end.to_bits()
        && a.error.is_none()
}

/// The Python particle simulation of the first seed (pure, or stepping numpy arrays), compared
/// to the bit.
fn python_particles(args: &BenchParticlesArgs, variant: &str, expected: &Replica) -> Row {
    let name = format!("Python ({variant}), 1 replica");
    let script = args.grid.python_dir.join("particles.py");
    let params = ParticleParams::new(args.particles, args.steps, args.seed);
    let script_args = [
        "--particles".to_string(),
        args.particles.to_string(),
        "--steps".into(),
        args.steps.to_string(),
        "--seed".into(),
        args.seed.to_string(),
        format!("--variant={variant}"),
    ];
    let json = match run_python(&args.grid.python, &script, &script_args) {
        Ok(json) => json,
        Err(reason) => return Row::skipped(name, reason),
    };
    let bits = |key: &str| json[key].as_u64().map(f64::from_bits).unwrap_or(f64::NAN);
    let replica = Replica {
        seed: params.seed,
        collisions: json["collisions"].as_u64().unwrap_or(u64::MAX),
        wall_bounces: json["wall_bounces"].as_u64().unwrap_or(u64::MAX),
        kinetic_energy_start: bits("kinetic_energy_start_bits"),
        kinetic_energy_end: bits("kinetic_energy_end_bits"),
        seconds: json["seconds"].as_f64().unwrap_or(f64::NAN),
        error: None,
    };
    let mut row = Row::new(name, 1);
    row.record(
        Duration::from_secs_f64(replica.seconds.max(0.0)),
        format!("{} collisions", replica.collisions),
        same_physics(&replica, expected),
    );
    row.note = "stepping only".into();
    row
}

/// Runs a Python script that prints one JSON object; the reason it could not, otherwise.
fn run_python(python: &str, script: &Path, args: &[String]) -> Result<serde_json::Value, String> {
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("{python} not available: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.trim().lines().last().unwrap_or("failed").to_string();
        return Err(reason);
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("unreadable output: {e}"))
}

/// Starts a local grid, runs `work` against its master, stops the grid.
fn with_grid<F, Fut>(flags: &BenchGridFlags, name: &str, work: F) -> Result<Vec<Row>, ToolError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Row>, ClientError>>,
{
    with_grid_allowing(flags, name, false, work)
}

/// Starts a local grid (its workers running command tasks when `allow_commands`), runs `work`
/// against its master, stops the grid.
pub(super) fn with_grid_allowing<R, F, Fut>(
    flags: &BenchGridFlags,
    name: &str,
    allow_commands: bool,
    work: F,
) -> Result<Vec<R>, ToolError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<R>, ClientError>>,
{
    let scratch =
        std::env::temp_dir().join(format!("gridwatch-bench-{name}-{}", std::process::id()));
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| ToolError::Failed(format!("cannot start the async runtime: {e}")))?;
    let up = UpArgs {
        drop_dir: Some("off".into()),
        allow_commands,
        workers: flags.workers,
        threads: flags.threads,
        listen: "127.0.0.1:0".into(),
        data_dir: scratch.join("data"),
        // Every run is a job: lift the per-client rate limit for the benchmark's own master.
        master_flags: "--jobs-per-minute 100000".into(),
        http: "off".into(),
        backend: Default::default(),
        elastic: Default::default(),
    };
    let result = runtime.block_on(async {
        let cluster = Cluster::start(&up).await?;
        let rows = work(cluster.master_addr.clone()).await;
        cluster.stop().await;
        rows
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result.map_err(|e| ToolError::Failed(e.to_string()))
}

/// Submits one job and waits for it; returns the time from submit to results fetched.
pub(super) async fn grid_job(
    master: &str,
    kind: &'static str,
    spec: serde_json::Value,
) -> Result<(Duration, Vec<gridwatch::backend::ChunkResult>), ClientError> {
    let addr = MasterAddr {
        master: Some(master.to_string()),
        auth: gridwatch::protocol::TokenArgs::default(),
        tls: gridwatch::protocol::TlsArgs::default(),
    };
    let job_id = uuid::Uuid::new_v4().to_string();
    let request = JobRequest {
        kind,
        spec,
        upload: None,
        inputs: Vec::new(),
    };
    let started = Instant::now();
    let mut client = MasterClient::connect(&addr).await?;
    send_job(&mut client, &job_id, &request, Default::default()).await?;
    let mut progress = JobProgress::new(false, None);
    let view = wait_for_every(
        &mut client,
        &job_id,
        &mut progress,
        Duration::from_millis(5),
    )
    .await?;
    if view.status != gridwatch::backend::JobStatus::Completed {
        return Err(ClientError::JobFailed(format!(
            "job {job_id} ended {}: {}",
            view.status.as_str(),
            view.error.unwrap_or_default()
        )));
    }
    let fetched = fetch_results(&mut client, &job_id).await?;
    Ok((started.elapsed(), fetched.results))
}

fn print_table(title: &str, rows: &[Row], reference: &str, rate: &str) -> Result<(), ToolError> {
    let base = rows
        .iter()
        .find(|r| r.name.starts_with(reference))
        .and_then(|r| r.seconds);
    println!("{title}");
    println!(
        "{:<36} {:>9} {:>9} {:>11} {:>20} {:>6}  note",
        "contender", "seconds", "× local", rate, "answer", "exact"
    );
    for row in rows {
        let Some(secs) = row.seconds else {
            println!("{:<36} {:>9}  {}", row.name, "-", row.note);
            continue;
        };
        let ratio = base.map_or("-".into(), |b| format!("{:.2}", secs / b.max(1e-9)));
        let rate = f64::from(row.tasks) / secs.max(1e-9);
        let exact = match row.exact {
            Some(true) => "yes",
            _ => "NO",
        };
        println!(
            "{:<36} {:>9.3} {:>9} {:>11.1} {:>20} {:>6}  {}",
            row.name, secs, ratio, rate, row.answer, exact, row.note
        );
    }
    println!("× local = seconds / the first local kernel row's seconds; exact = every pixel (or every replica's figures, to the bit) equals the local kernel's");
    if rows
        .iter()
        .any(|r| r.seconds.is_some() && r.exact != Some(true))
    {
        return Err(ToolError::Failed(
            "some contender disagrees with the local kernel".into(),
        ));
    }
    Ok(())
}
