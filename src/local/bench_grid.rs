//! `gridwatch bench grid`: submit → result on a local grid (`up --workers 2`), on each backend
//! and at each genome size, against `rg -c` on the same file in the same run. Three rows per
//! backend: a first upload (the grid has never seen the genome), a repeat search of the same
//! genome with another pattern, and a cached repeat (the first search submitted again, answered
//! from the master's result cache). Runs are interleaved and the best of each kept, so a busy
//! machine slows every contender alike; every grid count is checked against a local search.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::demo::{run_grid_job, run_self};
use super::up::{Cluster, UpArgs};
use crate::client::connect::ClientError;
use crate::client::tool_error::ToolError;

/// `gridwatch bench grid` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchGridArgs {
    /// Search this file instead of generating genomes (then `--sizes` is ignored). The file's
    /// first line is rewritten in place between runs (same length, same record name) so that
    /// each first upload is of a genome the grid has never seen.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Sizes of the generated genomes, comma-separated.
    #[arg(
        long,
        default_value = "50MiB,200MiB,1GiB",
        value_delimiter = ',',
        value_parser = crate::client::generate::parse_size
    )]
    pub sizes: Vec<u64>,
    /// Backends, comma-separated: `embedded`, `redis` (a redis-server is started on a free port
    /// for the run; the row is skipped when redis-server is not installed).
    #[arg(long, default_value = "embedded,redis", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// The pattern of the first upload.
    #[arg(long, default_value = "AGGTCCAT")]
    pub pattern: String,
    /// The pattern of the repeat search (a new search of the stored genome).
    #[arg(long, default_value = "TTAGGCAC")]
    pub repeat_pattern: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Task slots per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Bases per chunk (the master's default when absent).
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Runs per contender; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One line of the table.
struct Row {
    size: String,
    bytes: u64,
    backend: String,
    name: String,
    /// Which `rg -c` time the row is compared with: the first pattern's or the repeat's.
    repeat: bool,
    best: Option<Duration>,
    count: Option<u64>,
    /// Every count this row produced equals the local search's.
    exact: bool,
    /// For a cached-repeat row: every run was answered from the result cache.
    cached: Option<bool>,
}

impl Row {
    fn new((size, bytes): (&str, u64), backend: &str, name: &str, repeat: bool) -> Self {
        Self {
            size: size.into(),
            bytes,
            backend: backend.into(),
            name: name.into(),
            repeat,
            best: None,
            count: None,
            exact: true,
            cached: None,
        }
    }

    fn record(&mut self, elapsed: Duration, count: u64, reference: Option<u64>) {
        self.best = Some(self.best.map_or(elapsed, |b| b.min(elapsed)));
        self.count = Some(count);
        if let Some(reference) = reference {
            self.exact &= count == reference;
        }
    }
}

/// Peak resident memory of a cluster's processes, in KiB.
struct PeakRss {
    size: String,
    backend: String,
    master: Option<u64>,
    worker: Option<u64>,
    redis: Option<u64>,
}

/// Runs `gridwatch bench grid`.
pub fn run(args: &BenchGridArgs) -> Result<(), ToolError> {
    let scratch = std::env::temp_dir().join(format!("gridwatch-bench-grid-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ToolError::Failed(format!("{}: {e}", scratch.display())))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| ToolError::Failed(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(bench(args, &scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn bench(args: &BenchGridArgs, scratch: &Path) -> Result<(), ToolError> {
    let failed = |e: ClientError| ToolError::Failed(e.to_string());
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    let inputs: Vec<(PathBuf, bool)> = match &args.file {
        Some(file) => vec![(file.clone(), false)],
        None => args
            .sizes
            .iter()
            .map(|size| (scratch.join(format!("genome-{size}.fa")), true))
            .collect(),
    };
    for ((file, generated), size) in inputs.iter().zip(&args.sizes) {
        if *generated {
            let (size, path) = (size.to_string(), file.display().to_string());
            eprintln!("generating {size} bases into {path} …");
            run_self(&["generate", "--size", &size, "--out", &path]).map_err(failed)?;
        }
        let bytes = std::fs::metadata(file)
            .map_err(|e| ToolError::Usage(format!("{}: {e}", file.display())))?
            .len();
        let label = human(bytes);
        let file_arg = file.display().to_string();
        let reference = local_count(&file_arg, &args.pattern).map_err(failed)?;
        let repeat_reference = local_count(&file_arg, &args.repeat_pattern).map_err(failed)?;
        let mut rg = Row::new((&label, bytes), "-", "rg -c (counts lines)", false);
        let mut rg_repeat = Row::new((&label, bytes), "-", "rg -c, repeat pattern", true);
        let mut local = Row::new((&label, bytes), "-", "gridwatch search (local)", false);
        for _ in 0..args.runs.max(1) {
            if let Some((elapsed, count)) = time_tool("rg", &args.pattern, file) {
                rg.record(elapsed, count, None);
            }
            if let Some((elapsed, count)) = time_tool("rg", &args.repeat_pattern, file) {
                rg_repeat.record(elapsed, count, None);
            }
            let started = Instant::now();
            let count = local_count(&file_arg, &args.pattern).map_err(failed)?;
            local.record(started.elapsed(), count, Some(reference));
        }
        rows.extend([rg, rg_repeat, local]);
        for backend in &args.backends {
            let data_dir = scratch.join(format!("data-{bytes}-{backend}"));
            let outcome = on_backend(
                args,
                backend,
                &data_dir,
                file,
                (&label, bytes),
                (reference, repeat_reference),
            )
            .await;
            let _ = std::fs::remove_dir_all(&data_dir);
            match outcome? {
                Some((backend_rows, peak)) => {
                    rows.extend(backend_rows);
                    peaks.push(peak);
                }
                None => eprintln!("{backend}: skipped (redis-server is not installed)"),
            }
        }
        if *generated {
            let _ = std::fs::remove_file(file);
        }
    }
    print_table(args, &rows, &peaks);
    Ok(())
}

/// Starts a grid on `backend`, times a first upload and a repeat search `runs` times; `None`
/// when the backend's server is not installed.
async fn on_backend(
    args: &BenchGridArgs,
    backend: &str,
    data_dir: &Path,
    file: &Path,
    (label, bytes): (&str, u64),
    (reference, repeat_reference): (u64, u64),
) -> Result<Option<(Vec<Row>, PeakRss)>, ToolError> {
    let failed = |e: ClientError| ToolError::Failed(e.to_string());
    let redis = match backend {
        "embedded" => None,
        "redis" => match BenchRedis::start(data_dir)? {
            Some(redis) => Some(redis),
            None => return Ok(None),
        },
        other => {
            return Err(ToolError::Usage(format!(
                "unknown backend {other:?}: use embedded or redis"
            )))
        }
    };
    let mut up = UpArgs {
        drop_dir: Some("off".into()),
        allow_commands: false,
        workers: args.workers,
        threads: args.threads,
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        // Every run is a job: lift the per-client rate limit for the benchmark's own master.
        master_flags: "--jobs-per-minute 100000".into(),
        http: "off".into(),
        backend: Default::default(),
        elastic: Default::default(),
    };
    if let Some(redis) = &redis {
        up.backend.backend = Some(format!("redis://127.0.0.1:{}/0", redis.port));
    }
    let cluster = Cluster::start(&up).await.map_err(failed)?;
    let mut first = Row::new((label, bytes), backend, "grid, first upload", false);
    let mut repeat = Row::new((label, bytes), backend, "grid, repeat search", true);
    let mut cached = Row::new((label, bytes), backend, "grid, cached repeat", false);
    cached.cached = Some(true);
    let mut outcome = Ok(());
    for run in 1..=args.runs.max(1) {
        eprintln!("{label} on {backend}: run {run}/{} …", args.runs.max(1));
        // A genome the grid has never seen: only the description on the header line changes.
        if let Err(err) = mark_header(file, &format!("bench {backend} {run}")) {
            outcome = Err(err);
            break;
        }
        // The cached repeat is the first search again, identical: the master copies its answer.
        for (row, pattern, expected) in [
            (&mut first, &args.pattern, reference),
            (&mut repeat, &args.repeat_pattern, repeat_reference),
            (&mut cached, &args.pattern, reference),
        ] {
            let patterns = [pattern.clone()];
            match run_grid_job(
                &cluster.master_addr,
                file,
                &patterns,
                args.chunk_size,
                false,
            )
            .await
            {
                Ok(run) => {
                    row.record(run.elapsed, run.report.total(), Some(expected));
                    if let Some(all_cached) = &mut row.cached {
                        *all_cached &= run.cached;
                    }
                }
                Err(err) => outcome = Err(failed(err)),
            }
        }
        if outcome.is_err() {
            break;
        }
    }
    let peak = PeakRss {
        size: label.to_string(),
        backend: backend.to_string(),
        master: cluster.master_pid().and_then(peak_rss_kib),
        worker: cluster
            .worker_pids()
            .iter()
            .filter_map(|(_, pid)| pid.and_then(peak_rss_kib))
            .max(),
        redis: redis.as_ref().and_then(|r| peak_rss_kib(r.child.id())),
    };
    cluster.stop().await;
    drop(redis);
    outcome?;
    Ok(Some((vec![first, repeat, cached], peak)))
}

/// Count of `pattern` by the local search (the reference every grid row is checked against).
fn local_count(file: &str, pattern: &str) -> Result<u64, ClientError> {
    let out = run_self(&["search", file, "-p", pattern])?;
    Ok(total_of(&String::from_utf8_lossy(&out)))
}

/// Rewrites the description on the file's first (header) line in place, keeping its length and
/// the record name, so the bytes (and their hash) change but not a base or a name.
fn mark_header(file: &Path, mark: &str) -> Result<(), ToolError> {
    let io = |e: std::io::Error| ToolError::Failed(format!("{}: {e}", file.display()));
    let mut handle = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(io)?;
    let mut header = String::new();
    std::io::BufReader::new((&mut handle).take(4096))
        .read_line(&mut header)
        .map_err(io)?;
    let line = header.trim_end_matches(['\n', '\r']);
    let name_end = line.find(char::is_whitespace).unwrap_or(line.len());
    let room = line.len() - name_end;
    if !line.starts_with('>') || room < 2 {
        return Err(ToolError::Usage(format!(
            "{}: the first line must be a FASTA header with a description to rewrite (like \
             `>chr1 generated`), so each run uploads a genome the grid has not seen",
            file.display()
        )));
    }
    let mut description = format!(" {mark}");
    description.truncate(room);
    let rewritten = format!("{}{description:<room$}", &line[..name_end]);
    handle.seek(SeekFrom::Start(0)).map_err(io)?;
    handle.write_all(rewritten.as_bytes()).map_err(io)?;
    Ok(())
}

/// Peak resident set of a running process, from `/proc` (Linux), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A `redis-server` for one backend's runs: memory only, on a free loopback port, killed on drop.
struct BenchRedis {
    child: Child,
    port: u16,
}

impl BenchRedis {
    /// `None` when redis-server is not installed.
    fn start(dir: &Path) -> Result<Option<Self>, ToolError> {
        let failed = |what: String| ToolError::Failed(what);
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| failed(format!("cannot find a free port for redis-server: {e}")))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(format!("cannot start redis-server: {e}"))),
        };
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers() {
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "redis-server did not answer on port {port} within 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(redis))
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{} MiB", b >> 20),
    }
}

fn print_table(args: &BenchGridArgs, rows: &[Row], peaks: &[PeakRss]) {
    println!(
        "patterns {} (first upload, then again as the cached repeat) and {} (repeat search), {} \
         workers × {} slots, best of {} runs",
        args.pattern,
        args.repeat_pattern,
        args.workers,
        args.threads,
        args.runs.max(1)
    );
    println!(
        "{:<9} {:<9} {:<28} {:>9} {:>9} {:>7} {:>10} {:>6}",
        "genome", "backend", "contender", "seconds", "MB/s", "× rg", "count", "exact"
    );
    for row in rows {
        let rg = rows
            .iter()
            .find(|r| r.size == row.size && r.backend == "-" && r.repeat == row.repeat)
            .and_then(|r| r.best);
        let Some(best) = row.best else {
            println!(
                "{:<9} {:<9} {:<28} {:>9}",
                row.size, row.backend, row.name, "not run"
            );
            continue;
        };
        let secs = best.as_secs_f64();
        let ratio = rg.map_or("-".to_string(), |r| {
            format!("{:.2}", secs / r.as_secs_f64())
        });
        let exact = match (row.name.starts_with("rg"), row.exact) {
            (true, _) => "-",
            (false, true) => "yes",
            (false, false) => "NO",
        };
        println!(
            "{:<9} {:<9} {:<28} {:>9.3} {:>9.0} {:>7} {:>10} {:>6}",
            row.size,
            row.backend,
            row.name,
            secs,
            row.bytes as f64 / 1e6 / secs,
            ratio,
            row.count.unwrap_or(0),
            exact
        );
    }
    let mib = |kib: Option<u64>| kib.map_or("-".to_string(), |k| format!("{} MiB", k / 1024));
    for peak in peaks {
        println!(
            "peak RSS, {} on {}: master {}, largest worker {}{}",
            peak.size,
            peak.backend,
            mib(peak.master),
            mib(peak.worker),
            peak.redis
                .map(|k| format!(", redis-server {} MiB", k / 1024))
                .unwrap_or_default()
        );
    }
    let exact = rows.iter().all(|r| r.exact);
    println!(
        "grid counts exact (against local gridwatch search): {}",
        if exact { "yes" } else { "NO" }
    );
    if rows.iter().any(|r| r.cached.is_some()) {
        let cached = rows.iter().all(|r| r.cached != Some(false));
        println!(
            "cached repeats answered from the result cache (status: cached): {}",
            if cached { "yes" } else { "NO" }
        );
    }
}
