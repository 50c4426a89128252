//! `gridwatch search FILE --pattern P …`: the kernel on all local cores, no servers.
//!
//! Parse arguments → read patterns → [`search_reader`] → [`SearchReport`] → printer. Every error a
//! user can cause (missing file, empty or binary input, bad pattern) is one line naming the input.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::client::tool_error::{ignore_broken_pipe, ToolError};
use crate::jobs::search::printer::{write_report, OutputFormat, ReportHit, SearchReport};
use crate::search::{
    search_reader, MismatchKernel, ParallelError, ParallelOptions, Pattern, PatternSet,
    SearchOptions, SearchOutcome, StrandMode,
};

/// Which strands to search, as typed on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StrandArg {
    /// The patterns as written.
    #[default]
    Forward,
    /// The patterns and their reverse complements (reported on strand `-`).
    Both,
}

/// The mismatch kernel, as typed on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelArg {
    /// Shift-and for few patterns, seeds for many.
    #[default]
    Auto,
    /// Bit-parallel shift-and for every pattern.
    Bits,
    /// Pigeonhole seeds for every pattern that allows them.
    Seeds,
}

/// Arguments of `gridwatch search`.
#[derive(Clone, Debug, clap::Args)]
pub struct SearchArgs {
    /// FASTA (one or many records, any line width, \n or \r\n) or plain sequence; gzip is detected.
    pub file: PathBuf,
    /// A pattern: A C G T (U) and IUPAC codes (N R Y S W K M B D H V). Repeat for several.
    #[arg(short, long = "pattern", value_name = "SEQ")]
    pub patterns: Vec<String>,
    /// A file of patterns: FASTA (`>name` then the sequence), `name<TAB>sequence` lines, or one
    /// sequence per line (blank lines and lines starting with # are skipped).
    #[arg(long = "patterns", value_name = "FILE")]
    pub patterns_file: Option<PathBuf>,
    /// Most substitutions a match may have (Hamming distance, as `seqkit locate -m`); must be
    /// less than half of every pattern's length. A sequence N counts as a mismatch against any
    /// pattern letter but N.
    #[arg(short = 'm', long, default_value_t = 0)]
    pub max_mismatches: u32,
    /// The matcher for searches with mismatches (for benchmarks comparing the kernels; the
    /// result is the same): auto, bits or seeds.
    #[arg(long, hide = true, value_enum, default_value_t = KernelArg::Auto)]
    pub mismatch_kernel: KernelArg,
    /// Strands to search.
    #[arg(long, value_enum, default_value_t = StrandArg::Forward)]
    pub strand: StrandArg,
    /// Lower-case bases match only lower-case pattern letters (default: case-insensitive).
    #[arg(long)]
    pub case_sensitive: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Count)]
    pub format: OutputFormat,
    /// Shorthand for --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long, env = "GRIDWATCH_THREADS")]
    pub threads: Option<usize>,
}

/// Runs `gridwatch search`.
pub fn run(args: &SearchArgs) -> Result<(), ToolError> {
    let format = if args.json {
        OutputFormat::Json
    } else {
        args.format
    };
    let patterns = collect_patterns(&args.patterns, args.patterns_file.as_deref())?;
    let options = SearchOptions {
        strand: match args.strand {
            StrandArg::Forward => StrandMode::Forward,
            StrandArg::Both => StrandMode::Both,
        },
        case_sensitive: args.case_sensitive,
        max_mismatches: args.max_mismatches,
        kernel: match args.mismatch_kernel {
            KernelArg::Auto => MismatchKernel::Auto,
            KernelArg::Bits => MismatchKernel::Bits,
            KernelArg::Seeds => MismatchKernel::Seeds,
        },
    };
    let set = PatternSet::new(patterns, options).map_err(|e| ToolError::Usage(e.to_string()))?;
    let mut parallel = ParallelOptions {
        collect_hits: format.needs_hits(),
        ..ParallelOptions::default()
    };
    if let Some(threads) = args.threads {
        parallel.threads = threads.max(1);
    }
    let outcome = search_file(&args.file, &set, &mut parallel)?;
    let report = build_report(&set, outcome);
    let stdout = io::stdout().lock();
    ignore_broken_pipe(write_report(format, &report, stdout))?;
    Ok(())
}

/// Searches one file; errors name the file.
pub fn search_file(
    path: &Path,
    set: &PatternSet,
    options: &mut ParallelOptions,
) -> Result<SearchOutcome, ToolError> {
    let shown = path.display();
    let file =
        File::open(path).map_err(|e| ToolError::Usage(format!("{shown}: cannot open: {e}")))?;
    if let Some(name) = path.file_name() {
        options.plain_name = name.to_string_lossy().into_owned();
    }
    search_reader(file, set, options, &mut |_| {}).map_err(|error| match error {
        ParallelError::Input(input) => ToolError::Usage(format!("{shown}: {input}")),
        ParallelError::Io(io) => ToolError::Usage(format!("{shown}: cannot read: {io}")),
    })
}

/// Turns the kernel's outcome into what the printers take.
pub fn build_report(set: &PatternSet, outcome: SearchOutcome) -> SearchReport {
    let hits = outcome
        .hits
        .into_iter()
        .map(|located| ReportHit {
            record: located.record,
            start: located.hit.start,
            pattern: located.hit.pattern,
            strand: located.hit.strand,
            matched: String::from_utf8_lossy(&located.matched).into_owned(),
            mismatches: located.hit.mismatches,
        })
        .collect();
    SearchReport {
        max_mismatches: set.options().max_mismatches,
        records: outcome.records,
        patterns: set.patterns().to_vec(),
        counts: outcome.counts,
        hits,
    }
}

/// The patterns from `--pattern` (named after themselves) then from `--patterns FILE`.
pub fn collect_patterns(inline: &[String], file: Option<&Path>) -> Result<Vec<Pattern>, ToolError> {
    let mut patterns: Vec<Pattern> = inline
        .iter()
        .map(|sequence| Pattern {
            name: sequence.clone(),
            sequence: sequence.clone(),
        })
        .collect();
    if let Some(path) = file {
        patterns.extend(read_patterns_file(path)?);
    }
    Ok(patterns)
}

/// Reads a patterns file: FASTA, or one sequence per line.
pub fn read_patterns_file(path: &Path) -> Result<Vec<Pattern>, ToolError> {
    let shown = path.display();
    let usage = |what: &str, e: io::Error| ToolError::Usage(format!("{shown}: {what}: {e}"));
    let file = File::open(path).map_err(|e| usage("cannot open patterns file", e))?;
    let mut patterns: Vec<Pattern> = Vec::new();
    let mut pending_name: Option<String> = None;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| usage("cannot read patterns file", e))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('>') {
            if let Some(name) = pending_name.take() {
                return Err(ToolError::Usage(format!(
                    "{shown}: pattern {name:?} has no sequence"
                )));
            }
            pending_name = Some(header.split_whitespace().next().unwrap_or("").to_string());
            continue;
        }
        let (name, sequence) = match line.split_once('\t') {
            Some((name, sequence)) if pending_name.is_none() => {
                (name.trim().to_string(), sequence.trim().to_string())
            }
            _ => {
                let sequence = line.to_string();
                (
                    pending_name.take().unwrap_or_else(|| sequence.clone()),
                    sequence,
                )
            }
        };
        patterns.push(Pattern { name, sequence });
    }
    if let Some(name) = pending_name {
        return Err(ToolError::Usage(format!(
            "{shown}: pattern {name:?} has no sequence"
        )));
    }
    if patterns.is_empty() {
        return Err(ToolError::Usage(format!(
            "{shown}: no patterns in the patterns file"
        )));
    }
    Ok(patterns)
}
