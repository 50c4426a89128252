//! A search job cut by genome range and by pattern group, run as the grid runs it: the registered
//! kind accepts the submission and its cutter cuts the streamed upload into chunk tasks, a worker
//! prepares once per pattern group and runs the tasks, and the stored results are merged by the
//! code `gridwatch results` uses. Compared with a naive Hamming scan over the whole pattern list:
//! every hit must come back once, with the job's pattern index, its matched bases and its
//! mismatches, and every pattern with its name and counts.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::iupac::{accepts, complement};
use gridwatch::jobs::search::{
    report_from_stored, SearchReport, SearchTaskSpec, PATTERNS_PER_TASK,
};
use gridwatch::jobs::{self, PlannedTask, PreparedTask, SubmitLimits, TaskSource};
use gridwatch::search::{MismatchKernel, Pattern, SearchOptions, StrandMode};
use proptest::prelude::*;

const LIMITS: SubmitLimits = SubmitLimits {
    max_upload: 1 << 24,
    max_frame: 1 << 24,
    default_chunk_size: 1000,
    work: jobs::WorkCaps::DEFAULT,
    max_positions: 1 << 20,
};

/// Matched bases as seqkit prints them on `-`: reversed, bases complemented, case kept, other
/// letters as they are.
fn reverse_complement_bases(window: &[u8]) -> String {
    window
        .iter()
        .rev()
        .map(|&b| match b {
            b'A' => 'T',
            b'a' => 't',
            b'C' => 'G',
            b'c' => 'g',
            b'G' => 'C',
            b'g' => 'c',
            b'T' | b'U' => 'A',
            b't' | b'u' => 'a',
            other => other as char,
        })
        .collect()
}

/// (record, start, pattern, strand '+'/'-', matched, mismatches).
type Found = (u32, u64, u32, char, String, u32);

/// Every window of every record within `k` of a pattern (or, with `both`, its reverse
/// complement), by brute force.
fn naive_hamming(records: &[Vec<u8>], patterns: &[Vec<u8>], both: bool, k: u32) -> Vec<Found> {
    let mut out = Vec::new();
    for (r, sequence) in records.iter().enumerate() {
        for (p, pattern) in patterns.iter().enumerate() {
            let mut strands = vec![('+', pattern.clone())];
            if both {
                let reverse = pattern.iter().rev().map(|&c| complement(c)).collect();
                strands.push(('-', reverse));
            }
            for (strand, needle) in strands {
                if needle.len() > sequence.len() {
                    continue;
                }
                for start in 0..=sequence.len() - needle.len() {
                    let window = &sequence[start..start + needle.len()];
                    let misses = window
                        .iter()
                        .zip(&needle)
                        .filter(|(&b, &c)| !accepts(c, b))
                        .count() as u32;
                    if misses <= k {
                        let matched = match strand {
                            '+' => String::from_utf8_lossy(window).into_owned(),
                            _ => reverse_complement_bases(window),
                        };
                        out.push((r as u32, start as u64, p as u32, strand, matched, misses));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

fn to_fasta(records: &[Vec<u8>], width: usize) -> Vec<u8> {
    let mut text = Vec::new();
    for (index, sequence) in records.iter().enumerate() {
        text.extend_from_slice(format!(">r{index}\n").as_bytes());
        for line in sequence.chunks(width) {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
    }
    text
}

/// Patterns named `p0`, `p1`, … so a name shows which index it came back under.
fn named(patterns: &[Vec<u8>]) -> Vec<Pattern> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| Pattern {
            name: format!("p{i}"),
            sequence: String::from_utf8_lossy(p).to_ascii_uppercase(),
        })
        .collect()
}

/// Submits a search job to the registered kind and feeds its cutter the upload in `piece`-byte
/// writes; returns the planned tasks and the stored job spec.
fn cut_job(
    patterns: &[Vec<u8>],
    options: SearchOptions,
    chunk_size: u64,
    upload: &[u8],
    piece: usize,
) -> (Vec<PlannedTask>, serde_json::Value) {
    let kind = jobs::require("search").expect("the search kind is registered");
    let submission = serde_json::json!({
        "filename": "g.fa",
        "patterns": named(patterns),
        "options": options,
        "chunk_size": chunk_size,
    });
    let spec = kind
        .accept(submission, Some(upload.len() as u64), &LIMITS)
        .expect("the job is accepted");
    let TaskSource::Upload(mut cutter) = kind.tasks(&spec).expect("the job is cut") else {
        panic!("a search uploads its input");
    };
    let mut tasks = Vec::new();
    for bytes in upload.chunks(piece.max(1)) {
        cutter
            .push(bytes, &mut |task| tasks.push(task))
            .expect("valid input");
    }
    let spec = cutter
        .finish(&mut |task| tasks.push(task))
        .expect("valid input");
    (tasks, spec)
}

/// Runs every task as a worker does, preparing once per pattern group (tasks of one group share
/// their compiled patterns), last task first since a grid finishes tasks in any order; then
/// merges the results as `gridwatch results` does.
fn run_and_merge(spec: &serde_json::Value, tasks: &[PlannedTask]) -> SearchReport {
    let kind = jobs::require("search").expect("the search kind is registered");
    let mut prepared: HashMap<u64, Arc<dyn PreparedTask>> = HashMap::new();
    let mut results = Vec::new();
    let mut claimed = 0;
    for task in tasks.iter().rev() {
        let group = task.spec["pattern_offset"].as_u64().unwrap_or(0);
        let worker = prepared
            .entry(group)
            .or_insert_with(|| kind.prepare(&task.spec).expect("the task prepares"));
        let outcome = worker.run(&task.spec, &task.data).expect("the task runs");
        claimed += outcome.matches;
        results.push(outcome.into_chunk_result(task.chunk, "w".into(), Default::default()));
    }
    let report = report_from_stored(spec, &results).expect("the results decode");
    assert_eq!(
        claimed,
        report.total(),
        "progress counts agree with the report"
    );
    report
}

/// The report's hits in the naive scan's form.
fn found(report: &SearchReport) -> Vec<Found> {
    let mut out: Vec<Found> = report
        .hits
        .iter()
        .map(|hit| {
            (
                hit.record,
                hit.start,
                hit.pattern,
                hit.strand.symbol(),
                hit.matched.clone(),
                hit.mismatches,
            )
        })
        .collect();
    out.sort();
    out
}

/// Per pattern, (forward, reverse) matches in `hits`.
fn counts_of(hits: &[Found], patterns: usize) -> Vec<(u64, u64)> {
    let mut counts = vec![(0u64, 0u64); patterns];
    for (_, _, pattern, strand, _, _) in hits {
        let count = &mut counts[*pattern as usize];
        match strand {
            '+' => count.0 += 1,
            _ => count.1 += 1,
        }
    }
    counts
}

/// Checks a merged report against the naive scan: names in order, counts, hits.
fn assert_report(report: &SearchReport, patterns: &[Vec<u8>], expected: &[Found]) {
    let names: Vec<&str> = report.patterns.iter().map(|p| p.name.as_str()).collect();
    let wanted: Vec<String> = (0..patterns.len()).map(|i| format!("p{i}")).collect();
    assert_eq!(names, wanted, "pattern names in the job's order");
    let counts: Vec<(u64, u64)> = report
        .counts
        .iter()
        .map(|c| (c.forward, c.reverse))
        .collect();
    assert_eq!(
        counts,
        counts_of(expected, patterns.len()),
        "per-pattern counts"
    );
    assert_eq!(found(report), expected, "hits");
}

/// Re-cuts each planned chunk task into one task per group: the group's slice of the patterns
/// with its offset in the job's list, numbered chunk-major as the job numbers them.
fn regroup(tasks: &[PlannedTask], groups: &[std::ops::Range<usize>]) -> Vec<PlannedTask> {
    let mut regrouped = Vec::new();
    for task in tasks {
        let whole: SearchTaskSpec =
            serde_json::from_value(task.spec.clone()).expect("a search task spec");
        assert_eq!(whole.pattern_offset, 0, "one group before regrouping");
        for (group, range) in groups.iter().enumerate() {
            let spec = SearchTaskSpec {
                patterns: whole.patterns[range.clone()].to_vec(),
                pattern_offset: range.start as u32,
                ..whole.clone()
            };
            let index = task.chunk as usize * groups.len() + group;
            let index = u32::try_from(index).expect("few tasks");
            regrouped.push(PlannedTask::new(index, &spec, task.data.clone()).expect("encodes"));
        }
    }
    regrouped
}

/// Splits `0..len` into consecutive groups, cutting after pattern `i` where `cuts[i]`.
fn groups_from_cuts(len: usize, cuts: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    for end in 1..=len {
        if end == len || cuts.get(end - 1).copied().unwrap_or(false) {
            groups.push(start..end);
            start = end;
        }
    }
    groups
}

fn sequence_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        12 => prop::sample::select(b"ACGTacgt".to_vec()).prop_map(|b| vec![b]),
        1 => Just(b"NNNNN".to_vec()),
        1 => prop::sample::select(b"NnU".to_vec()).prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 1..300).prop_map(|pieces| pieces.concat())
}

/// Plain A/C/G/T (seedable) or IUPAC patterns, long enough for K <= 4.
fn pattern_strategy() -> impl Strategy<Value = Vec<u8>> {
    let plain = prop::collection::vec(prop::sample::select(b"ACGT".to_vec()), 9..26);
    let iupac = prop::collection::vec(
        prop::sample::select(b"ACGTACGTACGTRYSWKMBDHVN".to_vec()),
        9..26,
    );
    prop_oneof![3 => plain, 1 => iupac]
}

proptest! {
    #[test]
    fn pattern_groups_over_chunks_merge_to_the_naive_scan_of_all_patterns(
        records in prop::collection::vec(sequence_strategy(), 1..3),
        patterns in prop::collection::vec(pattern_strategy(), 1..12),
        copies in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        cuts in prop::collection::vec(any::<bool>(), 11),
        both in any::<bool>(),
        k in 0u32..=4,
        kernel in prop::sample::select(vec![
            MismatchKernel::Auto,
            MismatchKernel::Bits,
            MismatchKernel::Seeds,
        ]),
        chunk_size in 1u64..100,
        width in 1usize..40,
        piece in 1usize..64,
    ) {
        // Some patterns are genome windows (N read as A), so most groups have hits at any K.
        let mut patterns = patterns;
        for (slot, at) in copies.iter().enumerate() {
            let index = slot % patterns.len();
            let len = patterns[index].len();
            if records[0].len() >= len {
                let start = at.index(records[0].len() - len + 1);
                patterns[index] = records[0][start..start + len]
                    .iter()
                    .map(|&b| match b.to_ascii_uppercase() {
                        b'N' => b'A',
                        b'U' => b'T',
                        other => other,
                    })
                    .collect();
            }
        }
        let options = SearchOptions {
            strand: if both { StrandMode::Both } else { StrandMode::Forward },
            max_mismatches: k,
            kernel,
            ..SearchOptions::default()
        };
        let text = to_fasta(&records, width);
        let (tasks, spec) = cut_job(&patterns, options, chunk_size, &text, piece);
        let groups = groups_from_cuts(patterns.len(), &cuts);
        let report = run_and_merge(&spec, &regroup(&tasks, &groups));
        assert_report(&report, &patterns, &naive_hamming(&records, &patterns, both, k));
    }
}

/// A small xorshift generator, so the large test below is the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Plain A/C/G/T patterns against a genome, by brute force with an early exit once a window
/// passes `k` mismatches; bytes compare upper-cased with U read as T, anything else never equal.
fn naive_plain(genome: &[u8], patterns: &[Vec<u8>], both: bool, k: u32) -> Vec<Found> {
    let bases: Vec<u8> = genome
        .iter()
        .map(|&b| match b.to_ascii_uppercase() {
            b'U' => b'T',
            b @ (b'A' | b'C' | b'G' | b'T') => b,
            _ => 0,
        })
        .collect();
    let mut out = Vec::new();
    for (p, pattern) in patterns.iter().enumerate() {
        let mut strands = vec![('+', pattern.clone())];
        if both {
            let reverse = pattern.iter().rev().map(|&c| complement(c)).collect();
            strands.push(('-', reverse));
        }
        for (strand, needle) in &strands {
            for start in 0..=bases.len().saturating_sub(needle.len()) {
                let window = &bases[start..start + needle.len()];
                let mut misses = 0;
                for (b, c) in window.iter().zip(needle) {
                    if b != c {
                        misses += 1;
                        if misses > k {
                            break;
                        }
                    }
                }
                if misses <= k {
                    let window = &genome[start..start + needle.len()];
                    let matched = match strand {
                        '+' => String::from_utf8_lossy(window).into_owned(),
                        _ => reverse_complement_bases(window),
                    };
                    out.push((0, start as u64, p as u32, *strand, matched, misses));
                }
            }
        }
    }
    out.sort();
    out
}

/// Ten thousand 20-mers, 700 copies of them planted (some reverse-complemented, with up to
/// two substitutions) in a 20,000-base genome with soft-masked and N stretches: the job cuts
/// them into 20 pattern groups of 500 and the genome into chunks, and the merged report must be
/// the naive scan's at K = 2 on both strands and K = 1 forward.
#[test]
fn ten_thousand_patterns_in_groups_find_every_planted_copy() {
    const PATTERNS: usize = 10_000;
    const LEN: usize = 20;
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut genome: Vec<u8> = (0..20_000).map(|_| b"ACGT"[rng.below(4)]).collect();
    let patterns: Vec<Vec<u8>> = (0..PATTERNS)
        .map(|_| (0..LEN).map(|_| b"ACGT"[rng.below(4)]).collect())
        .collect();
    // One copy per 25-base slot, so no copy overwrites another.
    for slot in 0..700 {
        let pattern = &patterns[rng.below(PATTERNS)];
        let mut copy: Vec<u8> = match rng.below(3) {
            0 => pattern.iter().rev().map(|&c| complement(c)).collect(),
            _ => pattern.clone(),
        };
        for _ in 0..rng.below(3) {
            let at = rng.below(LEN);
            copy[at] = b"ACGT"[rng.below(4)];
        }
        let at = slot * 25 + rng.below(5);
        genome[at..at + LEN].copy_from_slice(&copy);
    }
    genome[5_000..6_000].make_ascii_lowercase();
    genome[9_000..9_050].fill(b'N');
    let text = to_fasta(&[genome.clone()], 70);
    for (k, both) in [(2, true), (1, false)] {
        let options = SearchOptions {
            strand: if both {
                StrandMode::Both
            } else {
                StrandMode::Forward
            },
            max_mismatches: k,
            ..SearchOptions::default()
        };
        let (tasks, spec) = cut_job(&patterns, options, 6_000, &text, 1 << 12);
        let groups = PATTERNS.div_ceil(PATTERNS_PER_TASK);
        assert_eq!(groups, 20);
        assert_eq!(
            tasks.len(),
            4 * groups,
            "4 chunks of 6,000 bases, 20 groups each"
        );
        let report = run_and_merge(&spec, &tasks);
        let expected = naive_plain(&genome, &patterns, both, k);
        assert!(
            expected.len() > 200,
            "planted copies are found: {}",
            expected.len()
        );
        assert_report(&report, &patterns, &expected);
    }
}
