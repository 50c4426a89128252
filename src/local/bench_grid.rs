//! `gridwatch bench grid`: 200 MiB submit → result on a local grid (`up --workers 2`), against
//! ripgrep and grep on the same file in the same run, over a sweep of chunk sizes. Runs are
//! interleaved and the best of each kept, so a busy machine slows every contender alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::demo::{run_grid_job, run_self};
use super::up::{Cluster, UpArgs};
use crate::client::connect::ClientError;
use crate::client::tool_error::ToolError;

/// `gridwatch bench grid` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchGridArgs {
    /// Search this file instead of generating one.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Size of the generated genome.
    #[arg(long, default_value = "200MiB", value_parser = crate::client::generate::parse_size)]
    pub size: u64,
    /// The pattern searched.
    #[arg(long, default_value = "AGGTCCAT")]
    pub pattern: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Task slots per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Chunk sizes (bases) to sweep, comma-separated.
    #[arg(
        long,
        default_value = "51200,262144,1048576,4194304",
        value_delimiter = ','
    )]
    pub chunk_sizes: Vec<u64>,
    /// Runs per contender; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One line of the table.
struct Contender {
    name: String,
    best: Option<Duration>,
    count: Option<u64>,
}

impl Contender {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            best: None,
            count: None,
        }
    }

    fn record(&mut self, elapsed: Duration, count: u64) {
        self.best = Some(self.best.map_or(elapsed, |b| b.min(elapsed)));
        self.count = Some(count);
    }
}

/// Runs `gridwatch bench grid`.
pub fn run(args: &BenchGridArgs) -> Result<(), ToolError> {
    let failed = |e: ClientError| ToolError::Failed(e.to_string());
    let scratch = std::env::temp_dir().join(format!("gridwatch-bench-grid-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ToolError::Failed(format!("{}: {e}", scratch.display())))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| ToolError::Failed(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(bench(args, &scratch)).map_err(failed);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn bench(args: &BenchGridArgs, scratch: &Path) -> Result<(), ClientError> {
    let file = match &args.file {
        Some(file) => file.clone(),
        None => {
            let out = scratch.join("genome.fa");
            let (size, path) = (args.size.to_string(), out.display().to_string());
            eprintln!("generating {} bytes into {path} …", args.size);
            run_self(&["generate", "--size", &size, "--out", &path])?;
            out
        }
    };
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let up = UpArgs {
        drop_dir: Some("off".into()),
        workers: args.workers,
        threads: args.threads,
        listen: "127.0.0.1:0".into(),
        data_dir: scratch.join("data"),
        // Every run is a job: lift the per-client rate limit for the benchmark's own master.
        master_flags: "--jobs-per-minute 100000".into(),
        http: "off".into(),
        backend: Default::default(),
    };
    let cluster = Cluster::start(&up).await?;
    let outcome = sweep(args, &cluster.master_addr, &file).await;
    cluster.stop().await;
    let (contenders, reference) = outcome?;
    print_table(&contenders, bytes, args, reference);
    Ok(())
}

/// Interleaves every contender `runs` times; returns them and the local search's count.
async fn sweep(
    args: &BenchGridArgs,
    master: &str,
    file: &Path,
) -> Result<(Vec<Contender>, u64), ClientError> {
    let file_arg = file.display().to_string();
    let local = run_self(&["search", &file_arg, "-p", &args.pattern])?;
    let reference = total_of(&String::from_utf8_lossy(&local));
    let mut grid: Vec<Contender> = args
        .chunk_sizes
        .iter()
        .map(|size| Contender::new(format!("gridwatch grid, chunk {}", human(*size))))
        .collect();
    let mut rg = Contender::new("ripgrep (rg -c, misses line-spanning matches)");
    let mut grep = Contender::new("grep -c (misses line-spanning matches)");
    let patterns = [args.pattern.clone()];
    for run in 1..=args.runs.max(1) {
        eprintln!("run {run}/{} …", args.runs.max(1));
        for (contender, size) in grid.iter_mut().zip(&args.chunk_sizes) {
            let (report, elapsed) =
                run_grid_job(master, file, &patterns, Some(*size), false).await?;
            contender.record(elapsed, report.total());
        }
        for (contender, tool) in [(&mut rg, "rg"), (&mut grep, "grep")] {
            if let Some((elapsed, count)) = time_tool(tool, &args.pattern, file) {
                contender.record(elapsed, count);
            }
        }
    }
    grid.push(rg);
    grid.push(grep);
    Ok((grid, reference))
}

/// Times `tool -c PATTERN FILE`; `None` when the tool is not installed.
fn time_tool(tool: &str, pattern: &str, file: &Path) -> Option<(Duration, u64)> {
    let started = Instant::now();
    let output = Command::new(tool)
        .arg("-c")
        .arg(pattern)
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let elapsed = started.elapsed();
    let count = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    Some((elapsed, count))
}

fn total_of(count_output: &str) -> u64 {
    count_output
        .lines()
        .find(|l| l.starts_with("total"))
        .and_then(|l| l.split('\t').next_back())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn human(bases: u64) -> String {
    match bases {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn print_table(contenders: &[Contender], bytes: u64, args: &BenchGridArgs, reference: u64) {
    let rg = contenders
        .iter()
        .find(|c| c.name.starts_with("ripgrep"))
        .and_then(|c| c.best);
    println!(
        "{} MiB, pattern {}, {} workers × {} slots, best of {} runs",
        bytes >> 20,
        args.pattern,
        args.workers,
        args.threads,
        args.runs
    );
    println!(
        "{:<48} {:>9} {:>9} {:>9} {:>8}",
        "contender", "seconds", "MB/s", "× rg", "count"
    );
    for contender in contenders {
        let Some(best) = contender.best else {
            println!("{:<48} {:>9}", contender.name, "not installed");
            continue;
        };
        let secs = best.as_secs_f64();
        let ratio = rg.map_or("-".to_string(), |r| {
            format!("{:.2}", secs / r.as_secs_f64())
        });
        println!(
            "{:<48} {:>9.3} {:>9.0} {:>9} {:>8}",
            contender.name,
            secs,
            bytes as f64 / 1e6 / secs,
            ratio,
            contender.count.unwrap_or(0)
        );
    }
    println!("exact count (local gridwatch search): {reference}");
    let exact = contenders
        .iter()
        .filter(|c| c.name.starts_with("gridwatch"))
        .all(|c| c.count == Some(reference));
    println!("grid counts exact: {}", if exact { "yes" } else { "NO" });
}
