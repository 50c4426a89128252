//! `gridwatch demo`: the whole story in one command. Starts a local grid (`up`), generates a
//! genome, submits it with a progress bar, prints the result, and checks it byte for byte against
//! local `gridwatch search`; exits non-zero if they differ.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::up::{Cluster, UpArgs};
use crate::client::connect::{ClientError, MasterAddr, MasterClient};
use crate::client::progress::JobProgress;
use crate::client::query::{fetch_report, wait_for_every, POLL_INTERVAL};
use crate::client::submit::{parse_patterns, upload, UploadRequest};
use gridwatch::backend::{JobStatus, Priority};
use gridwatch::jobs::search::printer::{write_report, OutputFormat, SearchReport};
use gridwatch::search::{SearchOptions, StrandMode};

/// `gridwatch demo` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Genome size (e.g. 200MiB, 50MB, 1GiB).
    #[arg(long, default_value = "200MiB", value_parser = crate::client::generate::parse_size)]
    pub size: u64,
    /// Pattern to search for.
    #[arg(long, default_value = "AGGTCCAT")]
    pub pattern: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Keep the working directory (genome, database, logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Working directory (default: a new directory under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Kill one worker (kill -9) mid-job and show the DEAD alert, the re-queue of its tasks and
    /// the still exact result.
    #[arg(long)]
    pub kill_worker: bool,
}

/// One search job run on a grid, as [`run_grid_job`] saw it.
pub struct GridJobRun {
    /// The job's results.
    pub report: SearchReport,
    /// Wall time from the first byte sent to the last result received.
    pub elapsed: Duration,
    /// Whether the master answered it from its result cache (no task ran).
    pub cached: bool,
}

/// Runs one search job on a grid and fetches its report, timed.
pub async fn run_grid_job(
    master: &str,
    path: &Path,
    patterns: &[String],
    chunk_size: Option<u64>,
    show_progress: bool,
) -> Result<GridJobRun, ClientError> {
    let addr = MasterAddr {
        master: Some(master.to_string()),
        auth: gridwatch::protocol::TokenArgs::default(),
        tls: gridwatch::protocol::TlsArgs::default(),
    };
    let request = UploadRequest {
        path: path.to_path_buf(),
        job_id: uuid::Uuid::new_v4().to_string(),
        patterns: parse_patterns(patterns, StrandMode::Forward, false)?,
        options: SearchOptions::default(),
        chunk_size,
        priority: Priority::Medium,
    };
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    let started = Instant::now();
    let mut client = MasterClient::connect(&addr).await?;
    let mut progress = JobProgress::new(show_progress, size);
    progress.message("uploading");
    upload(&mut client, &request).await?;
    // Without a bar to draw, poll often: the poll interval would otherwise blur the timing.
    let interval = if show_progress {
        POLL_INTERVAL
    } else {
        Duration::from_millis(20)
    };
    let view = wait_for_every(&mut client, &request.job_id, &mut progress, interval).await?;
    if view.status != JobStatus::Completed {
        return Err(ClientError::JobFailed(format!(
            "job {} ended {:?}: {}",
            request.job_id,
            view.status,
            view.error.unwrap_or_default()
        )));
    }
    let cached = view.input.as_ref().and_then(|input| input.cached) == Some(true);
    let report = fetch_report(&mut client, &request.job_id).await?;
    Ok(GridJobRun {
        report,
        elapsed: started.elapsed(),
        cached,
    })
}

/// Runs `gridwatch` itself with `args` (the local tools), returning stdout.
pub fn run_self(args: &[&str]) -> Result<Vec<u8>, ClientError> {
    let exe = std::env::current_exe()
        .map_err(|e| ClientError::Usage(format!("cannot find the gridwatch binary: {e}")))?;
    let output = Command::new(exe)
        .args(args)
        .output()
        .map_err(|e| ClientError::Usage(format!("cannot run gridwatch {}: {e}", args[0])))?;
    if !output.status.success() {
        return Err(ClientError::JobFailed(format!(
            "gridwatch {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

fn render(report: &SearchReport, format: OutputFormat) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    write_report(format, report, &mut out)?;
    Ok(out)
}

/// Runs `gridwatch demo`.
pub async fn demo(args: DemoArgs) -> Result<(), ClientError> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gridwatch-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)
        .map_err(|e| ClientError::Usage(format!("{}: {e}", dir.display())))?;
    let outcome = run_demo(&args, &dir).await;
    if args.keep {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

async fn run_demo(args: &DemoArgs, dir: &Path) -> Result<(), ClientError> {
    let genome = dir.join("genome.fa");
    let genome_arg = genome.display().to_string();
    eprintln!(
        "[1/4] generating a {} MiB genome",
        args.size / (1024 * 1024)
    );
    let size = args.size.to_string();
    run_self(&[
        "generate",
        "--size",
        &size,
        "--out",
        &genome_arg,
        "--records",
        "4",
    ])?;

    eprintln!(
        "[2/4] starting a master and {}",
        crate::client::count_of(args.workers as u64, "worker")
    );
    let up = UpArgs {
        drop_dir: Some("off".into()),
        allow_commands: false,
        workers: args.workers,
        threads: 1,
        listen: "127.0.0.1:0".into(),
        data_dir: dir.join("data"),
        master_flags: String::new(),
        http: "127.0.0.1:0".into(),
        backend: Default::default(),
        elastic: Default::default(),
    };
    let cluster = Cluster::start(&up).await?;
    cluster.describe();

    eprintln!("[3/4] submitting {genome_arg} for pattern {}", args.pattern);
    let patterns = [args.pattern.clone()];
    let job = run_grid_job(
        &cluster.master_addr,
        &genome,
        &patterns,
        None,
        !args.kill_worker,
    );
    let job = if args.kill_worker {
        // Progress bars and the watchman's story would interleave; the story wins.
        let (job, killed) = tokio::join!(job, super::demo_kill::kill_one_worker(&cluster, 2));
        killed?;
        job
    } else {
        job.await
    };
    cluster.stop().await;
    let GridJobRun {
        report,
        elapsed: grid_time,
        ..
    } = job?;
    let grid_count = render(&report, OutputFormat::Count)?;
    print!("{}", String::from_utf8_lossy(&grid_count));
    let mb = args.size as f64 / 1e6;
    eprintln!(
        "grid: {:.2} s end to end ({:.0} MB/s)",
        grid_time.as_secs_f64(),
        mb / grid_time.as_secs_f64()
    );

    eprintln!("[4/4] checking against local `gridwatch search`");
    let started = Instant::now();
    let local_count = run_self(&["search", &genome_arg, "-p", &args.pattern])?;
    let local_time = started.elapsed();
    let local_tsv = run_self(&[
        "search",
        &genome_arg,
        "-p",
        &args.pattern,
        "--format",
        "tsv",
    ])?;
    eprintln!("local search: {:.2} s", local_time.as_secs_f64());
    if grid_count != local_count || render(&report, OutputFormat::Tsv)? != local_tsv {
        return Err(ClientError::JobFailed(
            "MISMATCH: the grid's result differs from local search".into(),
        ));
    }
    eprintln!("OK: the grid's counts and positions equal local search");
    Ok(())
}
