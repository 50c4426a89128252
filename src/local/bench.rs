//! `gridwatch bench search`: times `gridwatch search` against grep, ripgrep and (optionally)
//! seqkit on the same generated genome in one run, and prints a table of MB/s and ratios.
//!
//! Runs are interleaved (tool A, B, C, then A, B, C again …) and the best of each is kept, so a
//! busy machine slows every tool alike. Peak RSS comes from `/usr/bin/time` when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::generate::{self, GenerateArgs};
use crate::client::tool_error::ToolError;

/// Benchmarks.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Time `gridwatch search` against grep, ripgrep and seqkit on a generated genome.
    Search(BenchSearchArgs),
    /// Time a job end to end on a local grid against grep and ripgrep, sweeping chunk sizes.
    Grid(super::bench_grid::BenchGridArgs),
    /// The Julia kind: grid against local against Python, sweeping bands.
    Julia(super::bench_kinds::BenchJuliaArgs),
    /// The particles kind: grid against local against Python, sweeping replicas.
    Particles(super::bench_kinds::BenchParticlesArgs),
}

/// Arguments of `gridwatch bench search`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchSearchArgs {
    /// Search this file instead of generating one.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Size of the generated genome.
    #[arg(long, default_value = "200MiB", value_parser = generate::parse_size)]
    pub size: u64,
    /// The pattern searched.
    #[arg(long, default_value = "AGGTCCAT")]
    pub pattern: String,
    /// Runs per tool; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also time seqkit locate (exact but slow: several seconds per run on 200 MiB).
    #[arg(long)]
    pub seqkit: bool,
    /// Benchmark search with mismatches instead: one 20-mer at K = 1, 2, 3 against
    /// `seqkit locate -i -m K` (on `--slice`), and `--guides` random 20-mers at K = 3.
    #[arg(long)]
    pub mismatches: bool,
    /// With --mismatches: size of the genome seqkit searches (it runs at about 1 MB/s).
    #[arg(long, default_value = "20MiB", value_parser = generate::parse_size)]
    pub slice: u64,
    /// With --mismatches: how many random 20-mers the many-guides row searches for.
    #[arg(long, default_value_t = 1000)]
    pub guides: usize,
    /// With --mismatches: also run every row on a local grid of 1 and of this many workers (one
    /// task slot each), to show how the compute-bound searches spread; 0 skips the grid.
    #[arg(long, default_value_t = 2)]
    pub grid_workers: usize,
}

/// One tool under test: a shell command whose output ends with the match count.
struct Contender {
    name: String,
    command: String,
    best: Option<Duration>,
    count: Option<u64>,
    peak_rss_kib: Option<u64>,
}

/// Runs `gridwatch bench <what>`.
pub fn run(command: &BenchCommand) -> Result<(), ToolError> {
    match command {
        BenchCommand::Search(args) => bench_search(args),
        BenchCommand::Grid(args) => super::bench_grid::run(args),
        BenchCommand::Julia(args) => super::bench_kinds::run_julia(args),
        BenchCommand::Particles(args) => super::bench_kinds::run_particles(args),
    }
}

fn bench_search(args: &BenchSearchArgs) -> Result<(), ToolError> {
    if args.mismatches {
        return super::bench_mismatch::run(args);
    }
    if !args.pattern.bytes().all(|b| b"ACGTacgt".contains(&b)) || args.pattern.is_empty() {
        return Err(ToolError::Usage(format!(
            "--pattern {:?}: the benchmark compares exact-string tools, so use A, C, G and T only",
            args.pattern
        )));
    }
    let scratch = std::env::temp_dir().join(format!("gridwatch-bench-{}", std::process::id()));
    let file = match &args.file {
        Some(file) => file.clone(),
        None => generate_genome(&scratch, args.size)?,
    };
    let result = run_contenders(&file, &scratch, args);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn generate_genome(dir: &Path, size: u64) -> Result<PathBuf, ToolError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ToolError::Failed(format!("{}: cannot create: {e}", dir.display())))?;
    let out = dir.join("genome.fa");
    eprintln!("generating {size} bases into {} …", out.display());
    generate::run(&GenerateArgs {
        size,
        out: out.clone(),
        seed: 42,
        line_width: 60,
        records: 1,
        plant: Vec::new(),
    })?;
    Ok(out)
}

fn run_contenders(file: &Path, scratch: &Path, args: &BenchSearchArgs) -> Result<(), ToolError> {
    let exe = std::env::current_exe()
        .map_err(|e| ToolError::Failed(format!("cannot find the gridwatch binary: {e}")))?;
    let file_arg = shell_quote(&file.to_string_lossy());
    let pattern = shell_quote(&args.pattern);
    let gridwatch = format!(
        "{} search {file_arg} -p {pattern}",
        shell_quote(&exe.to_string_lossy())
    );
    let mut contenders = vec![
        contender(
            "gridwatch search",
            format!("{gridwatch} | tail -n 1 | cut -f 3"),
        ),
        contender(
            "gridwatch search --threads 1",
            format!("{gridwatch} --threads 1 | tail -n 1 | cut -f 3"),
        ),
    ];
    if installed("rg") {
        contenders.push(contender(
            "rg -o -F | wc -l",
            format!("rg -o -F {pattern} {file_arg} | wc -l"),
        ));
    }
    contenders.push(contender(
        "grep -o -F | wc -l",
        format!("grep -o -F {pattern} {file_arg} | wc -l"),
    ));
    if args.seqkit && installed("seqkit") {
        let seqkit = format!("seqkit locate -P -p {pattern} {file_arg} | tail -n +2 | wc -l");
        contenders.push(contender("seqkit locate -P", seqkit));
    }
    std::fs::create_dir_all(scratch)
        .map_err(|e| ToolError::Failed(format!("{}: cannot create: {e}", scratch.display())))?;
    let rss_file = scratch.join("rss");
    for _ in 0..args.runs.max(1) {
        for contender in &mut contenders {
            time_once(contender, &rss_file)?;
        }
    }
    let bytes = std::fs::metadata(file)
        .map_err(|e| ToolError::Usage(format!("{}: {e}", file.display())))?
        .len();
    print_table(&contenders, bytes, file);
    Ok(())
}

fn contender(name: &str, command: String) -> Contender {
    Contender {
        name: name.to_string(),
        command,
        best: None,
        count: None,
        peak_rss_kib: None,
    }
}

/// Runs a contender once (under `/usr/bin/time` when available) and keeps its best time.
fn time_once(contender: &mut Contender, rss_file: &Path) -> Result<(), ToolError> {
    let timed = Path::new("/usr/bin/time").exists();
    let command = if timed {
        // Times the first command of the pipeline: the search tool itself.
        format!(
            "/usr/bin/time -f %M -o {} {}",
            shell_quote(&rss_file.to_string_lossy()),
            contender.command
        )
    } else {
        contender.command.clone()
    };
    let started = Instant::now();
    let output = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .output()
        .map_err(|e| ToolError::Failed(format!("cannot run sh: {e}")))?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let count = stdout.trim().parse::<u64>().map_err(|_| {
        ToolError::Failed(format!(
            "{}: unexpected output {:?} ({})",
            contender.name,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })?;
    contender.count = Some(count);
    contender.best = Some(contender.best.map_or(elapsed, |best| best.min(elapsed)));
    if timed {
        let rss = std::fs::read_to_string(rss_file).ok();
        if let Some(kib) = rss.and_then(|text| text.trim().lines().last()?.trim().parse().ok()) {
            contender.peak_rss_kib =
                Some(contender.peak_rss_kib.map_or(kib, |old: u64| old.max(kib)));
        }
    }
    Ok(())
}

fn print_table(contenders: &[Contender], bytes: u64, file: &Path) {
    let reference = contenders.first().and_then(|c| c.best).unwrap_or_default();
    let exact = contenders.first().and_then(|c| c.count).unwrap_or(0);
    println!(
        "file: {} ({:.1} MiB), best of each tool, cores: {}",
        file.display(),
        bytes as f64 / 1048576.0,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<30} {:>10} {:>9} {:>9} {:>10} {:>12} {:>12}",
        "tool", "count", "missed", "time s", "MB/s", "time ratio", "peak RSS MiB"
    );
    for contender in contenders {
        let seconds = contender.best.unwrap_or_default().as_secs_f64();
        let count = contender.count.unwrap_or(0);
        let missed = if exact == 0 {
            0.0
        } else {
            100.0 * (exact as f64 - count as f64) / exact as f64
        };
        let ratio = seconds / reference.as_secs_f64().max(1e-9);
        let rss = contender
            .peak_rss_kib
            .map_or("-".to_string(), |kib| format!("{:.1}", kib as f64 / 1024.0));
        println!(
            "{:<30} {:>10} {:>8.1}% {:>9.3} {:>10.0} {:>11.2}x {:>12}",
            contender.name,
            count,
            missed,
            seconds,
            bytes as f64 / 1e6 / seconds.max(1e-9),
            ratio,
            rss
        );
    }
    println!("time ratio = tool time / gridwatch search time (above 1: slower than gridwatch)");
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Quotes a string for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
