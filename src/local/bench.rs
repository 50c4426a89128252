//! `gridwatch bench search`: times `gridwatch search` against grep, ripgrep and (optionally)
//! seqkit on the same generated genome in one run, and prints a table of MB/s and ratios to rg.
//! Jobs: one plain pattern forward, the same on both strands, an IUPAC pattern on both strands,
//! and mixed patterns on both strands; rg gets the equivalent case-insensitive regex. Every
//! gridwatch count is checked against a naive count of the same file made in this process.
//!
//! Runs are interleaved (tool A, B, C, then A, B, C again …) and the best of each is kept, so a
//! busy machine slows every tool alike. Peak RSS comes from `/usr/bin/time` when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::bench_args::{BenchJob, BenchSearchArgs};
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
    /// Command tasks on a local grid against GNU parallel: `true` many times, and particle
    /// simulations with different seeds, outputs compared.
    Commands(super::bench_commands::BenchCommandsArgs),
}

/// One tool under test: a shell command whose output ends with the match count.
struct Contender {
    name: String,
    command: String,
    /// What the count means when it is not gridwatch's.
    note: String,
    /// A gridwatch row, checked against the naive count.
    checked: bool,
    /// An rg row: ratios are taken against the fastest.
    reference: bool,
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
        BenchCommand::Commands(args) => super::bench_commands::run(args),
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
        format: None,
    })?;
    Ok(out)
}

/// One job of the benchmark: the same search done by gridwatch and by the other tools.
struct Job {
    title: String,
    /// The exact count, from a naive scan of the file in this process.
    expected: u64,
    contenders: Vec<Contender>,
}

fn run_contenders(file: &Path, scratch: &Path, args: &BenchSearchArgs) -> Result<(), ToolError> {
    let exe = std::env::current_exe()
        .map_err(|e| ToolError::Failed(format!("cannot find the gridwatch binary: {e}")))?;
    let exe = shell_quote(&exe.to_string_lossy());
    let file_arg = shell_quote(&file.to_string_lossy());
    let rg = installed("rg");
    let mut jobs = Vec::new();
    let wanted = |job: BenchJob| args.job.is_none() || args.job == Some(job);
    eprintln!("counting every job's matches with a naive scan …");
    let genome = NaiveGenome::read(file)?;
    if wanted(BenchJob::Plain) {
        jobs.push(plain_job(&exe, &file_arg, args, rg, &genome));
    }
    let mixed: Vec<String> = args.mixed.split(',').map(str::to_string).collect();
    for (job, patterns) in [
        (BenchJob::Both, vec![args.pattern.clone()]),
        (BenchJob::Iupac, vec![args.iupac.clone()]),
        (BenchJob::Mixed, mixed),
    ] {
        if wanted(job) {
            jobs.push(both_strands_job(&exe, &file_arg, &patterns, rg, &genome)?);
        }
    }
    drop(genome);
    std::fs::create_dir_all(scratch)
        .map_err(|e| ToolError::Failed(format!("{}: cannot create: {e}", scratch.display())))?;
    let rss_file = scratch.join("rss");
    for run in 0..args.runs.max(1) {
        eprintln!("run {}/{} …", run + 1, args.runs.max(1));
        for job in &mut jobs {
            for contender in &mut job.contenders {
                time_once(contender, &rss_file)?;
            }
        }
    }
    let bytes = std::fs::metadata(file)
        .map_err(|e| ToolError::Usage(format!("{}: {e}", file.display())))?
        .len();
    println!(
        "file: {} ({:.1} MiB), best of {} runs of each tool, cores: {}",
        file.display(),
        bytes as f64 / 1048576.0,
        args.runs.max(1),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for job in &jobs {
        print_table(job, bytes);
    }
    println!(
        "check: a gridwatch count against the naive count of this run (overlapping matches, line \
         breaks removed, per strand). rg counts what its note says, so its count may differ.\n\
         vs rg = tool time / time of the fastest rg row of the job (below 1: faster than rg)."
    );
    if let Some(bad) = jobs.iter().find(|job| {
        job.contenders
            .iter()
            .any(|c| c.checked && c.count != Some(job.expected))
    }) {
        return Err(ToolError::Failed(format!(
            "{}: a gridwatch count differs from the naive count {}",
            bad.title, bad.expected
        )));
    }
    Ok(())
}

/// The original job: one pattern, forward strand, against rg, grep and seqkit.
fn plain_job(
    exe: &str,
    file_arg: &str,
    args: &BenchSearchArgs,
    rg: bool,
    genome: &NaiveGenome,
) -> Job {
    let pattern = shell_quote(&args.pattern);
    let gridwatch = format!("{exe} search {file_arg} -p {pattern}");
    let mut contenders = vec![
        checked(
            "gridwatch search",
            format!("{gridwatch} | tail -n 1 | cut -f 3"),
        ),
        checked(
            "gridwatch search --threads 1",
            format!("{gridwatch} --threads 1 | tail -n 1 | cut -f 3"),
        ),
    ];
    let note = "per line, non-overlapping";
    if rg {
        contenders.push(reference(
            "rg -o -F | wc -l",
            format!("rg -o -F {pattern} {file_arg} | wc -l"),
            note,
        ));
        contenders.push(reference(
            "rg -c -F",
            format!("rg -c -F {pattern} {file_arg}"),
            "lines with a match",
        ));
    }
    contenders.push(other(
        "grep -o -F | wc -l",
        format!("grep -o -F {pattern} {file_arg} | wc -l"),
        note,
    ));
    if args.seqkit && installed("seqkit") {
        let seqkit = format!("seqkit locate -P -p {pattern} {file_arg} | tail -n +2 | wc -l");
        contenders.push(other("seqkit locate -P", seqkit, "exact"));
    }
    Job {
        title: format!("{} (forward strand)", args.pattern),
        expected: genome.count(&[args.pattern.as_bytes()], false),
        contenders,
    }
}

/// `patterns` on both strands, against rg with an equivalent case-insensitive regex (each
/// pattern and its reverse complement, IUPAC codes as classes).
fn both_strands_job(
    exe: &str,
    file_arg: &str,
    patterns: &[String],
    rg: bool,
    genome: &NaiveGenome,
) -> Result<Job, ToolError> {
    for pattern in patterns {
        if pattern.is_empty() || !pattern.bytes().all(|b| iupac_class(b).is_some()) {
            return Err(ToolError::Usage(format!(
                "pattern {pattern:?}: use A, C, G, T and IUPAC codes only"
            )));
        }
    }
    let flags: String = patterns
        .iter()
        .map(|p| format!(" -p {}", shell_quote(p)))
        .collect();
    let gridwatch = format!("{exe} search {file_arg}{flags} --strand both");
    let mut contenders = vec![
        checked(
            "gridwatch search",
            format!("{gridwatch} | tail -n 1 | cut -f 3"),
        ),
        checked(
            "gridwatch search --threads 1",
            format!("{gridwatch} --threads 1 | tail -n 1 | cut -f 3"),
        ),
    ];
    let mut needles: Vec<String> = Vec::new();
    for pattern in patterns {
        for needle in [pattern.clone(), reverse_complement(pattern)] {
            if !needles.contains(&needle) {
                needles.push(needle);
            }
        }
    }
    let regex = needles
        .iter()
        .map(|n| n.bytes().filter_map(iupac_class).collect::<String>())
        .collect::<Vec<_>>()
        .join("|");
    let palindromes = patterns
        .iter()
        .filter(|p| reverse_complement(p) == **p)
        .count();
    let note = if palindromes > 0 {
        "per line, non-overlapping; a palindrome once, not once per strand"
    } else {
        "per line, non-overlapping"
    };
    if rg {
        let regex = shell_quote(&regex);
        contenders.push(reference(
            "rg -o -i REGEX | wc -l",
            format!("rg -o -i {regex} {file_arg} | wc -l"),
            note,
        ));
        contenders.push(reference(
            "rg -c -i REGEX",
            format!("rg -c -i {regex} {file_arg}"),
            "lines with a match",
        ));
    }
    let needle_bytes: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
    Ok(Job {
        title: format!("{} (both strands; rg regex {regex})", patterns.join(" + ")),
        expected: genome.count(&needle_bytes, true),
        contenders,
    })
}

/// A gridwatch row: its count must equal the naive count.
fn checked(name: &str, command: String) -> Contender {
    Contender {
        checked: true,
        ..contender(name, command, "")
    }
}

/// An rg row: the job's ratios are taken against the fastest of them.
fn reference(name: &str, command: String, note: &str) -> Contender {
    Contender {
        reference: true,
        ..contender(name, command, note)
    }
}

fn other(name: &str, command: String, note: &str) -> Contender {
    contender(name, command, note)
}

fn contender(name: &str, command: String, note: &str) -> Contender {
    Contender {
        name: name.to_string(),
        command,
        note: note.to_string(),
        checked: false,
        reference: false,
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

fn print_table(job: &Job, bytes: u64) {
    let fastest_rg = job
        .contenders
        .iter()
        .filter(|c| c.reference)
        .filter_map(|c| c.best)
        .min();
    println!();
    println!("{}: exact count {}", job.title, job.expected);
    println!(
        "{:<30} {:>10} {:>9} {:>9} {:>8} {:>9} {:>8}  note",
        "tool", "count", "check", "time s", "MB/s", "vs rg", "RSS MiB"
    );
    for contender in &job.contenders {
        let seconds = contender.best.unwrap_or_default().as_secs_f64();
        let count = contender.count.unwrap_or(0);
        let check = match (contender.checked, count == job.expected) {
            (false, _) => "-",
            (true, true) => "exact",
            (true, false) => "WRONG",
        };
        let ratio = fastest_rg.map_or("-".to_string(), |rg| {
            format!("{:.2}x", seconds / rg.as_secs_f64().max(1e-9))
        });
        let rss = contender
            .peak_rss_kib
            .map_or("-".to_string(), |kib| format!("{:.1}", kib as f64 / 1024.0));
        println!(
            "{:<30} {:>10} {:>9} {:>9.3} {:>8.0} {:>9} {:>8}  {}",
            contender.name,
            count,
            check,
            seconds,
            bytes as f64 / 1e6 / seconds.max(1e-9),
            ratio,
            rss,
            contender.note
        );
    }
}

/// The regex class of an IUPAC code (upper case; rg runs with `-i`).
fn iupac_class(code: u8) -> Option<&'static str> {
    Some(match code.to_ascii_uppercase() {
        b'A' => "A",
        b'C' => "C",
        b'G' => "G",
        b'T' | b'U' => "T",
        b'R' => "[AG]",
        b'Y' => "[CT]",
        b'S' => "[CG]",
        b'W' => "[AT]",
        b'K' => "[GT]",
        b'M' => "[AC]",
        b'B' => "[CGT]",
        b'D' => "[AGT]",
        b'H' => "[ACT]",
        b'V' => "[ACG]",
        // gridwatch's N accepts any sequence letter; `.` does too (and never a line break).
        b'N' => ".",
        _ => return None,
    })
}

/// The reverse complement of an IUPAC pattern, written out here rather than taken from the
/// kernel so that the check stays independent of it.
fn reverse_complement(pattern: &str) -> String {
    pattern
        .bytes()
        .rev()
        .map(|code| match code.to_ascii_uppercase() {
            b'A' => 'T',
            b'C' => 'G',
            b'G' => 'C',
            b'T' | b'U' => 'A',
            b'R' => 'Y',
            b'Y' => 'R',
            b'K' => 'M',
            b'M' => 'K',
            b'B' => 'V',
            b'V' => 'B',
            b'D' => 'H',
            b'H' => 'D',
            other => other as char,
        })
        .collect()
}

/// The records of a FASTA (or plain sequence) file with line breaks removed, for naive counts.
struct NaiveGenome {
    records: Vec<Vec<u8>>,
}

impl NaiveGenome {
    fn read(file: &Path) -> Result<Self, ToolError> {
        let raw = std::fs::read(file)
            .map_err(|e| ToolError::Usage(format!("{}: cannot read: {e}", file.display())))?;
        let mut records: Vec<Vec<u8>> = vec![Vec::new()];
        for line in raw.split(|&b| b == b'\n') {
            if line.starts_with(b">") {
                records.push(Vec::new());
            } else if let Some(record) = records.last_mut() {
                record.extend(line.iter().filter(|&&b| b != b'\r'));
            }
        }
        Ok(Self { records })
    }

    /// Overlapping matches of `patterns` (and, if `both`, their reverse complements), one per
    /// position, pattern and strand, case ignored: position by position, letter by letter.
    fn count(&self, patterns: &[&[u8]], both: bool) -> u64 {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for pattern in patterns {
            needles.push(pattern.to_ascii_uppercase());
            if both {
                let text = String::from_utf8_lossy(pattern);
                needles.push(reverse_complement(&text).into_bytes());
            }
        }
        let accepts = |code: u8, base: u8| -> bool {
            let base = match base.to_ascii_uppercase() {
                b'U' => b'T',
                other => other,
            };
            match iupac_class(code) {
                Some(".") => true,
                Some(class) => {
                    matches!(base, b'A' | b'C' | b'G' | b'T') && class.as_bytes().contains(&base)
                }
                None => false,
            }
        };
        let mut total = 0u64;
        for record in &self.records {
            for needle in &needles {
                if needle.len() > record.len() {
                    continue;
                }
                total += record
                    .windows(needle.len())
                    .filter(|window| window.iter().zip(needle).all(|(&b, &c)| accepts(c, b)))
                    .count() as u64;
            }
        }
        total
    }
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
