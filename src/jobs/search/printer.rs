//! Printers for search results: counts, TSV (seqkit locate's columns), BED and JSON. They know
//! nothing of the command line (as ripgrep keeps its printer out of its CLI).
//!
//! `gridwatch search` (local) builds a [`SearchReport`] and hands it to [`write_report`]; the
//! grid's results are printed as they arrive by `stream`, through the same per-line writers, so
//! both print identical bytes for the same input.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

pub use crate::search::StrandCounts;
use crate::search::{Pattern, RecordInfo, Strand};

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Matches per pattern and the total.
    #[default]
    Count,
    /// One line per match, seqkit locate's columns (1-based inclusive coordinates).
    Tsv,
    /// One line per match, BED6 (0-based half-open coordinates).
    Bed,
    /// The whole report as one JSON object.
    Json,
}

impl OutputFormat {
    /// The format a name on the command line or the wire stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "count" => Some(OutputFormat::Count),
            "tsv" => Some(OutputFormat::Tsv),
            "bed" => Some(OutputFormat::Bed),
            "json" => Some(OutputFormat::Json),
            _ => None,
        }
    }

    /// Whether this format lists individual matches (so the search must collect positions).
    pub fn needs_hits(self) -> bool {
        !matches!(self, OutputFormat::Count)
    }
}

/// One match, located in a record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReportHit {
    /// Index into [`SearchReport::records`].
    pub record: u32,
    /// 0-based position of the match's leftmost base in the record.
    pub start: u64,
    /// Index into [`SearchReport::patterns`].
    pub pattern: u32,
    /// `+` or `-`.
    pub strand: Strand,
    /// The matched bases; on `-` the reverse complement of the record's bases, as seqkit prints.
    pub matched: String,
    /// Substitutions between the pattern and `matched`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mismatches: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Everything a printer needs: what was searched, for what, and what was found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchReport {
    /// Most mismatches a match could have; when above 0 the TSV and JSON gain a `mismatches`
    /// column (exact searches print as they always did).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_mismatches: u32,
    /// The input's records, in input order.
    pub records: Vec<RecordInfo>,
    /// The patterns, in the order given.
    pub patterns: Vec<Pattern>,
    /// Per pattern (same order), the number of matches.
    pub counts: Vec<StrandCounts>,
    /// Individual matches ordered by record, start, pattern, strand; empty for a count-only search.
    pub hits: Vec<ReportHit>,
}

impl SearchReport {
    /// Matches of all patterns on all strands.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .map(StrandCounts::total)
            .fold(0, u64::saturating_add)
    }
}

/// Prints `report` in `format`.
pub fn write_report(
    format: OutputFormat,
    report: &SearchReport,
    out: impl Write,
) -> io::Result<()> {
    match format {
        OutputFormat::Count => write_count(report, out),
        OutputFormat::Tsv => write_tsv(report, out),
        OutputFormat::Bed => write_bed(report, out),
        OutputFormat::Json => write_json(report, out),
    }
}

/// Counts as TSV: `patternName pattern count` per pattern, then a `total` line.
pub fn write_count(report: &SearchReport, mut out: impl Write) -> io::Result<()> {
    writeln!(out, "patternName\tpattern\tcount")?;
    for (pattern, counts) in report.patterns.iter().zip(&report.counts) {
        writeln!(
            out,
            "{}\t{}\t{}",
            pattern.name,
            pattern.sequence,
            counts.total()
        )?;
    }
    writeln!(out, "total\t\t{}", report.total())?;
    out.flush()
}

/// A match as the printers take it: a [`ReportHit`] or a stored hit read in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HitRef<'a> {
    /// Index into the report's records.
    pub record: u32,
    /// 0-based position of the match's leftmost base in the record.
    pub start: u64,
    /// Index into the report's patterns.
    pub pattern: u32,
    /// `+` or `-`.
    pub strand: Strand,
    /// The matched bases.
    pub matched: &'a str,
    /// Substitutions between the pattern and `matched`.
    pub mismatches: u32,
}

impl<'a> From<&'a ReportHit> for HitRef<'a> {
    fn from(hit: &'a ReportHit) -> Self {
        HitRef {
            record: hit.record,
            start: hit.start,
            pattern: hit.pattern,
            strand: hit.strand,
            matched: &hit.matched,
            mismatches: hit.mismatches,
        }
    }
}

/// The record and pattern a hit refers to; an error (not a panic) when the hit names one the
/// lists do not hold, as a hit read from stored results may.
pub fn resolve<'r>(
    records: &'r [RecordInfo],
    patterns: &'r [Pattern],
    hit: HitRef<'_>,
) -> io::Result<(&'r RecordInfo, &'r Pattern)> {
    let record = records.get(hit.record as usize);
    let pattern = patterns.get(hit.pattern as usize);
    record.zip(pattern).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "result refers to record {} / pattern {} that the report does not list",
                hit.record, hit.pattern
            ),
        )
    })
}

/// The TSV's header line; `approximate` adds the `mismatches` column.
pub fn write_tsv_header(approximate: bool, mut out: impl Write) -> io::Result<()> {
    write!(
        out,
        "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched"
    )?;
    writeln!(out, "{}", if approximate { "\tmismatches" } else { "" })
}

/// One match as a TSV line (1-based, inclusive).
pub fn write_tsv_line(
    record: &RecordInfo,
    pattern: &Pattern,
    hit: HitRef<'_>,
    approximate: bool,
    mut out: impl Write,
) -> io::Result<()> {
    let end = hit.start + pattern.sequence.len() as u64;
    write!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        record.name,
        pattern.name,
        pattern.sequence,
        hit.strand.symbol(),
        hit.start + 1,
        end,
        hit.matched
    )?;
    if approximate {
        writeln!(out, "\t{}", hit.mismatches)
    } else {
        writeln!(out)
    }
}

/// One match as a BED6 line (0-based, half-open, score 0).
pub fn write_bed_line(
    record: &RecordInfo,
    pattern: &Pattern,
    hit: HitRef<'_>,
    mut out: impl Write,
) -> io::Result<()> {
    let end = hit.start + pattern.sequence.len() as u64;
    writeln!(
        out,
        "{}\t{}\t{}\t{}\t0\t{}",
        record.name,
        hit.start,
        end,
        pattern.name,
        hit.strand.symbol()
    )
}

/// Matches with seqkit locate's columns: seqID, patternName, pattern, strand, start, end, matched
/// (1-based, inclusive), then `mismatches` when the search allowed any.
pub fn write_tsv(report: &SearchReport, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let approximate = report.max_mismatches > 0;
    write_tsv_header(approximate, &mut out)?;
    for hit in &report.hits {
        let hit = HitRef::from(hit);
        let (record, pattern) = resolve(&report.records, &report.patterns, hit)?;
        write_tsv_line(record, pattern, hit, approximate, &mut out)?;
    }
    out.flush()
}

/// Matches as BED6: chrom, chromStart, chromEnd (0-based, half-open), name, score 0, strand.
pub fn write_bed(report: &SearchReport, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    for hit in &report.hits {
        let hit = HitRef::from(hit);
        let (record, pattern) = resolve(&report.records, &report.patterns, hit)?;
        write_bed_line(record, pattern, hit, &mut out)?;
    }
    out.flush()
}

/// One pattern's line in the JSON output.
#[derive(Serialize)]
pub(super) struct JsonPattern<'a> {
    name: &'a str,
    pattern: &'a str,
    forward: u64,
    reverse: u64,
    count: u64,
}

/// One match in the JSON output, with the TSV's names and coordinates (1-based inclusive).
#[derive(Serialize)]
pub(super) struct JsonHit<'a> {
    #[serde(rename = "seqID")]
    seq_id: &'a str,
    #[serde(rename = "patternName")]
    pattern_name: &'a str,
    pattern: &'a str,
    strand: Strand,
    start: u64,
    end: u64,
    matched: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatches: Option<u32>,
}

impl<'a> JsonHit<'a> {
    /// The hit as the JSON output lists it.
    pub(super) fn new(
        record: &'a RecordInfo,
        pattern: &'a Pattern,
        hit: HitRef<'a>,
        approximate: bool,
    ) -> Self {
        JsonHit {
            seq_id: &record.name,
            pattern_name: &pattern.name,
            pattern: &pattern.sequence,
            strand: hit.strand,
            start: hit.start + 1,
            end: hit.start + pattern.sequence.len() as u64,
            matched: hit.matched,
            mismatches: approximate.then_some(hit.mismatches),
        }
    }
}

/// A [`JsonHit`] with its keys in alphabetical order, as a JSON map prints them (the output
/// with a job id added is printed that way).
#[derive(Serialize)]
pub(super) struct TaggedHit<'a> {
    end: u64,
    matched: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatches: Option<u32>,
    pattern: &'a str,
    #[serde(rename = "patternName")]
    pattern_name: &'a str,
    #[serde(rename = "seqID")]
    seq_id: &'a str,
    start: u64,
    strand: Strand,
}

impl<'a> From<JsonHit<'a>> for TaggedHit<'a> {
    fn from(hit: JsonHit<'a>) -> Self {
        TaggedHit {
            end: hit.end,
            matched: hit.matched,
            mismatches: hit.mismatches,
            pattern: hit.pattern,
            pattern_name: hit.pattern_name,
            seq_id: hit.seq_id,
            start: hit.start,
            strand: hit.strand,
        }
    }
}

/// The patterns' lines of the JSON output, with their counts.
pub(super) fn json_patterns<'a>(
    patterns: &'a [Pattern],
    counts: &[StrandCounts],
) -> Vec<JsonPattern<'a>> {
    patterns
        .iter()
        .zip(counts)
        .map(|(pattern, counts)| JsonPattern {
            name: &pattern.name,
            pattern: &pattern.sequence,
            forward: counts.forward,
            reverse: counts.reverse,
            count: counts.total(),
        })
        .collect()
}

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_mismatches: Option<u32>,
    total: u64,
    patterns: Vec<JsonPattern<'a>>,
    records: &'a [RecordInfo],
    hits: Vec<JsonHit<'a>>,
}

/// The report as one JSON object: `total`, `patterns` (with per-strand counts), `records` and
/// `hits` (seqkit's column names, 1-based inclusive coordinates).
pub fn write_json(report: &SearchReport, mut out: impl Write) -> io::Result<()> {
    let patterns = json_patterns(&report.patterns, &report.counts);
    let approximate = report.max_mismatches > 0;
    let mut hits = Vec::with_capacity(report.hits.len());
    for hit in &report.hits {
        let hit = HitRef::from(hit);
        let (record, pattern) = resolve(&report.records, &report.patterns, hit)?;
        hits.push(JsonHit::new(record, pattern, hit, approximate));
    }
    let json = JsonReport {
        max_mismatches: approximate.then_some(report.max_mismatches),
        total: report.total(),
        patterns,
        records: &report.records,
        hits,
    };
    serde_json::to_writer_pretty(&mut out, &json)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SearchReport {
        SearchReport {
            max_mismatches: 0,
            records: vec![RecordInfo {
                name: "chr1".into(),
                length: 10,
            }],
            patterns: vec![Pattern {
                name: "p".into(),
                sequence: "ACG".into(),
            }],
            counts: vec![StrandCounts {
                forward: 1,
                reverse: 1,
            }],
            hits: vec![
                ReportHit {
                    record: 0,
                    start: 0,
                    pattern: 0,
                    strand: Strand::Forward,
                    matched: "ACG".into(),
                    mismatches: 0,
                },
                ReportHit {
                    record: 0,
                    start: 6,
                    pattern: 0,
                    strand: Strand::Reverse,
                    matched: "ACG".into(),
                    mismatches: 0,
                },
            ],
        }
    }

    fn print(format: OutputFormat) -> String {
        let mut out = Vec::new();
        write_report(format, &report(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tsv_is_one_based_inclusive() {
        assert_eq!(
            print(OutputFormat::Tsv),
            "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n\
             chr1\tp\tACG\t+\t1\t3\tACG\nchr1\tp\tACG\t-\t7\t9\tACG\n"
        );
    }

    #[test]
    fn bed_is_zero_based_half_open() {
        assert_eq!(
            print(OutputFormat::Bed),
            "chr1\t0\t3\tp\t0\t+\nchr1\t6\t9\tp\t0\t-\n"
        );
    }

    #[test]
    fn count_lists_patterns_and_total() {
        assert_eq!(
            print(OutputFormat::Count),
            "patternName\tpattern\tcount\np\tACG\t2\ntotal\t\t2\n"
        );
    }

    #[test]
    fn json_carries_totals_and_hits() {
        let value: serde_json::Value = serde_json::from_str(&print(OutputFormat::Json)).unwrap();
        assert_eq!(value["total"], 2);
        assert_eq!(value["patterns"][0]["reverse"], 1);
        assert_eq!(value["hits"][1]["start"], 7);
        assert_eq!(value["hits"][1]["strand"], "-");
    }
}
