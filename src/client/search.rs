//! `gridwatch search FILE… --pattern P …`: the kernel on all local cores, no servers.
//!
//! Parse arguments → read patterns → [`search_positioned`] per file ([`search_reader`] for `-`,
//! standard input, and pipes) → one [`SearchReport`] → printer. Every error a user can cause (missing file, empty or
//! binary input, bad pattern) is one line naming the input.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::client::tool_error::{ignore_broken_pipe, ToolError};
use gridwatch::jobs::search::printer::{write_report, OutputFormat, ReportHit, SearchReport};
use gridwatch::search::{
    search_positioned, search_reader, MismatchKernel, ParallelError, ParallelOptions, Pattern,
    PatternSet, RecordInfo, SearchOptions, SearchOutcome, StrandCounts, StrandMode,
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

/// The name `-` (standard input) goes by in errors, record names and a plain sequence's record.
const STDIN_NAME: &str = "stdin";

/// Arguments of `gridwatch search`.
#[derive(Clone, Debug, clap::Args)]
pub struct SearchArgs {
    /// FASTA (one or many records, any line width, \n or \r\n) or plain sequence; gzip is
    /// detected. `-` reads standard input. With several inputs, matches are listed input by
    /// input in the order given, then record by record; a record name found in more than one
    /// input is printed as INPUT:NAME (`stdin:NAME` for `-`) so every line says where it is.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// A pattern: A C G T (U) and IUPAC codes (N R Y S W K M B D H V). Repeat for several.
    #[arg(short, long = "pattern", value_name = "SEQ")]
    pub patterns: Vec<String>,
    /// A file of patterns: one sequence per line, `name<TAB>sequence` lines, or FASTA (`>name`
    /// then the sequence, on one or more lines; such lines come after any plain or TSV ones).
    /// Blank lines and lines starting with # are skipped.
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
    /// Strands to search. Forward by default, unlike `seqkit locate` (both): a count then means
    /// the pattern as written, the same on the grid and here; `--strand both` gives seqkit's.
    #[arg(long, value_enum, default_value_t = StrandArg::Forward)]
    pub strand: StrandArg,
    /// Lower-case bases match only lower-case pattern letters (default: case-insensitive).
    #[arg(long)]
    pub case_sensitive: bool,
    /// Case-insensitive matching: already the default, accepted as seqkit's `-i`.
    #[arg(short = 'i', long, conflicts_with = "case_sensitive")]
    pub ignore_case: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Count)]
    pub format: OutputFormat,
    /// Shorthand for --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(short = 'j', long, env = "GRIDWATCH_THREADS")]
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
    let outcome = search_inputs(&args.files, &set, &mut parallel)?;
    let report = build_report(&set, outcome);
    let stdout = io::stdout().lock();
    ignore_broken_pipe(write_report(format, &report, stdout))?;
    Ok(())
}

/// Searches every input in order (`-` is standard input, allowed once) as one outcome: records
/// and hits of each input follow the previous input's, counts add up. A record name that occurs
/// in more than one input is prefixed with its input's name, so no output line is ambiguous.
pub fn search_inputs(
    paths: &[PathBuf],
    set: &PatternSet,
    options: &mut ParallelOptions,
) -> Result<SearchOutcome, ToolError> {
    if paths.iter().filter(|path| is_stdin(path)).count() > 1 {
        return Err(ToolError::Usage(
            "standard input (-) given more than once: it can be read only once".into(),
        ));
    }
    let mut merged = SearchOutcome {
        counts: vec![StrandCounts::default(); set.patterns().len()],
        ..SearchOutcome::default()
    };
    // Per input: its shown name and the range of its records in `merged.records`.
    let mut spans: Vec<(String, std::ops::Range<usize>)> = Vec::with_capacity(paths.len());
    for path in paths {
        let outcome = search_input(path, set, options)?;
        let first = merged.records.len();
        let offset = u32::try_from(first)
            .map_err(|_| ToolError::Usage(format!("{}: too many records", shown_name(path))))?;
        merged
            .hits
            .extend(outcome.hits.into_iter().map(|mut located| {
                located.record += offset;
                located
            }));
        merged.records.extend(outcome.records);
        for (total, counts) in merged.counts.iter_mut().zip(&outcome.counts) {
            total.forward += counts.forward;
            total.reverse += counts.reverse;
        }
        merged.bytes_read += outcome.bytes_read;
        spans.push((shown_name(path), first..merged.records.len()));
    }
    name_ambiguous_records(&mut merged.records, &spans);
    Ok(merged)
}

/// Prefixes `INPUT:` to every record whose name occurs in more than one input.
fn name_ambiguous_records(records: &mut [RecordInfo], spans: &[(String, std::ops::Range<usize>)]) {
    let mut inputs_per_name: HashMap<String, usize> = HashMap::new();
    for (_, span) in spans {
        let mut names: Vec<&str> = records[span.clone()]
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            *inputs_per_name.entry(name.to_string()).or_default() += 1;
        }
    }
    for (input, span) in spans {
        for record in &mut records[span.clone()] {
            if inputs_per_name.get(&record.name).is_some_and(|&n| n > 1) {
                record.name = format!("{input}:{}", record.name);
            }
        }
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How an input is named in errors and prefixed records.
fn shown_name(path: &Path) -> String {
    if is_stdin(path) {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

/// Searches one input; errors name it.
fn search_input(
    path: &Path,
    set: &PatternSet,
    options: &mut ParallelOptions,
) -> Result<SearchOutcome, ToolError> {
    let shown = shown_name(path);
    let searched = if is_stdin(path) {
        options.plain_name = STDIN_NAME.to_string();
        search_reader(io::stdin().lock(), set, options, &mut |_| {})
    } else {
        let file =
            File::open(path).map_err(|e| ToolError::Usage(format!("{shown}: cannot open: {e}")))?;
        if let Some(name) = path.file_name() {
            options.plain_name = name.to_string_lossy().into_owned();
        }
        // A regular file is read at offsets by every thread; a pipe or device only in order, and
        // so is a file that says it is empty (files under /proc have content but no size).
        match file.metadata() {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {
                search_positioned(&file, set, options, &mut |_| {})
            }
            _ => search_reader(file, set, options, &mut |_| {}),
        }
    };
    searched.map_err(|error| match error {
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

/// Reads a patterns file: FASTA records, `name<TAB>sequence` lines, or one sequence per line.
pub fn read_patterns_file(path: &Path) -> Result<Vec<Pattern>, ToolError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|e| ToolError::Usage(format!("{shown}: cannot open patterns file: {e}")))?;
    parse_patterns_file(BufReader::new(file), &shown.to_string())
}

/// Parses a patterns file named `shown` in errors. A FASTA record is its `>name` line (the name
/// ends at the first space) and every line up to the next `>`, concatenated, since FASTA tools
/// wrap long sequences; so TSV and plain lines must come before the first header. Blank lines and
/// lines starting with `#` are skipped everywhere.
fn parse_patterns_file(reader: impl BufRead, shown: &str) -> Result<Vec<Pattern>, ToolError> {
    let mut patterns: Vec<Pattern> = Vec::new();
    // The FASTA record being read; its sequence grows line by line.
    let mut record: Option<Pattern> = None;
    for line in reader.lines() {
        let line =
            line.map_err(|e| ToolError::Usage(format!("{shown}: cannot read patterns file: {e}")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('>') {
            if let Some(done) = record.take() {
                patterns.push(finish_record(done, shown)?);
            }
            let name = header.split_whitespace().next().unwrap_or("").to_string();
            record = Some(Pattern {
                name,
                sequence: String::new(),
            });
            continue;
        }
        match (&mut record, line.split_once('\t')) {
            (Some(open), Some(_)) => {
                return Err(ToolError::Usage(format!(
                    "{shown}: a name<TAB>sequence line inside FASTA record {:?}: put such lines \
                     before the first '>' header",
                    open.name
                )))
            }
            (Some(open), None) => open.sequence.push_str(line),
            (None, Some((name, sequence))) => patterns.push(Pattern {
                name: name.trim().to_string(),
                sequence: sequence.trim().to_string(),
            }),
            (None, None) => patterns.push(Pattern {
                name: line.to_string(),
                sequence: line.to_string(),
            }),
        }
    }
    if let Some(done) = record {
        patterns.push(finish_record(done, shown)?);
    }
    if patterns.is_empty() {
        return Err(ToolError::Usage(format!(
            "{shown}: no patterns in the patterns file"
        )));
    }
    Ok(patterns)
}

/// A FASTA record read to its end: refused without a sequence; named after its sequence when
/// the header gives no name, as a plain line is.
fn finish_record(mut record: Pattern, shown: &str) -> Result<Pattern, ToolError> {
    if record.sequence.is_empty() {
        return Err(ToolError::Usage(format!(
            "{shown}: pattern {:?} has no sequence",
            record.name
        )));
    }
    if record.name.is_empty() {
        record.name = record.sequence.clone();
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
        parse_patterns_file(text.as_bytes(), "p.txt")
            .map(|patterns| patterns.into_iter().map(|p| (p.name, p.sequence)).collect())
            .map_err(|e| e.to_string())
    }

    fn named(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, sequence)| (name.to_string(), sequence.to_string()))
            .collect()
    }

    #[test]
    fn plain_tsv_and_multi_line_fasta_patterns_keep_their_names() {
        let text = "# sites\nGAATTC\nsmaI\tCCCGGG\r\n\n>bam two lines\nGGA\nTCC\n\
                    >three\r\nAC\n# a comment inside a record\n\nGT\nAA\n>\nTTTT\n";
        assert_eq!(
            parse(text),
            Ok(named(&[
                ("GAATTC", "GAATTC"),
                ("smaI", "CCCGGG"),
                ("bam", "GGATCC"),
                ("three", "ACGTAA"),
                ("TTTT", "TTTT"),
            ]))
        );
    }

    #[test]
    fn a_fasta_record_without_sequence_or_with_a_tsv_line_is_refused() {
        let empty = parse(">first\n>second\nACGT\n").unwrap_err();
        assert!(empty.contains("\"first\" has no sequence"), "{empty}");
        let last = parse(">only\n").unwrap_err();
        assert!(last.contains("\"only\" has no sequence"), "{last}");
        let tsv = parse(">site\nACGT\nname\tGGCC\n").unwrap_err();
        assert!(tsv.contains("before the first '>'"), "{tsv}");
        let nothing = parse("# only a comment\n\n").unwrap_err();
        assert!(nothing.contains("no patterns"), "{nothing}");
    }
}
