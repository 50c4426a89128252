//! The fast exact paths (per-base bit masks for IUPAC needles, Teddy plus masks for large mixed
//! sets) against a naive matcher written here: every position, every pattern, every strand,
//! letter by letter. Genomes have N runs, lower case, U, other letters, lines of varying width,
//! CRLF and gzip; the search runs with tiny blocks so matches straddle block and 64-base edges.

use std::io::Write;

use crate::support::iupac::{accepts, complement};
use gridwatch::search::{search_reader, ParallelOptions, PatternSet, SearchOptions, StrandMode};
use proptest::prelude::*;

fn reverse_complement(pattern: &[u8]) -> Vec<u8> {
    pattern.iter().rev().map(|&code| complement(code)).collect()
}

/// (record, start, pattern, strand is reverse), sorted.
fn naive(records: &[Vec<u8>], patterns: &[Vec<u8>], both: bool) -> Vec<(u32, u64, u32, bool)> {
    let mut hits = Vec::new();
    for (record, bases) in records.iter().enumerate() {
        for start in 0..bases.len() {
            for (index, pattern) in patterns.iter().enumerate() {
                let mut strands = vec![(pattern.clone(), false)];
                if both {
                    strands.push((reverse_complement(pattern), true));
                }
                for (needle, reverse) in strands {
                    let Some(window) = bases.get(start..start + needle.len()) else {
                        continue;
                    };
                    if window.iter().zip(&needle).all(|(&b, &c)| accepts(c, b)) {
                        hits.push((record as u32, start as u64, index as u32, reverse));
                    }
                }
            }
        }
    }
    hits.sort();
    hits
}

/// FASTA with line widths taken in turn from `widths` (0 = rest of the record on one line).
fn to_fasta(records: &[Vec<u8>], widths: &[usize], crlf: bool) -> Vec<u8> {
    let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut text = Vec::new();
    let mut turn = 0;
    for (index, bases) in records.iter().enumerate() {
        text.extend_from_slice(format!(">r{index} description").as_bytes());
        text.extend_from_slice(newline);
        let mut rest = &bases[..];
        while !rest.is_empty() {
            let width = match widths[turn % widths.len()] {
                0 => rest.len(),
                width => width.min(rest.len()),
            };
            turn += 1;
            text.extend_from_slice(&rest[..width]);
            text.extend_from_slice(newline);
            rest = &rest[width..];
        }
    }
    text
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text).expect("in memory");
    encoder.finish().expect("in memory")
}

fn search(
    text: &[u8],
    patterns: &[Vec<u8>],
    both: bool,
    block_bytes: usize,
    threads: usize,
) -> Vec<(u32, u64, u32, bool)> {
    let options = SearchOptions {
        strand: if both {
            StrandMode::Both
        } else {
            StrandMode::Forward
        },
        ..SearchOptions::default()
    };
    let set = PatternSet::new(
        crate::support::patterns::named_by_letters(patterns),
        options,
    )
    .expect("valid patterns");
    let parallel = ParallelOptions {
        threads,
        collect_hits: true,
        block_bytes,
        ..ParallelOptions::default()
    };
    let outcome = search_reader(text, &set, &parallel, &mut |_| {}).expect("valid input");
    let counted: u64 = outcome.counts.iter().map(|c| c.total()).sum();
    assert_eq!(
        counted as usize,
        outcome.hits.len(),
        "counts agree with hits"
    );
    // Counting alone takes another path (a population count per block): same counts per
    // pattern and strand as the hits listed.
    let counting = ParallelOptions {
        collect_hits: false,
        ..parallel
    };
    let counts_only = search_reader(text, &set, &counting, &mut |_| {}).expect("valid input");
    let mut from_hits = vec![(0u64, 0u64); patterns.len()];
    for hit in &outcome.hits {
        let entry = &mut from_hits[hit.hit.pattern as usize];
        match hit.hit.strand {
            gridwatch::search::Strand::Forward => entry.0 += 1,
            gridwatch::search::Strand::Reverse => entry.1 += 1,
        }
    }
    let counted: Vec<(u64, u64)> = counts_only
        .counts
        .iter()
        .map(|c| (c.forward, c.reverse))
        .collect();
    assert_eq!(counted, from_hits, "counting alone agrees with the hits");
    outcome
        .hits
        .iter()
        .map(|h| {
            (
                h.record,
                h.hit.start,
                h.hit.pattern,
                h.hit.strand == gridwatch::search::Strand::Reverse,
            )
        })
        .collect()
}

/// Mostly bases of both cases, with N runs, U and letters that are no base at all.
fn genome() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        40 => prop::sample::select(b"ACGTacgt".to_vec()).prop_map(|b| vec![b]),
        2 => Just(b"NNNNNNNN".to_vec()),
        2 => prop::sample::select(b"NnUuXx-*".to_vec()).prop_map(|b| vec![b]),
        // Repeats make overlapping and dense matches of short patterns likely.
        3 => Just(b"GGACCGGTCCggcccGGGCC".to_vec()),
    ];
    prop::collection::vec(piece, 1..500).prop_map(|pieces| pieces.concat())
}

fn iupac_pattern(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let plain = prop::collection::vec(prop::sample::select(b"ACGTacgt".to_vec()), 1..max_len);
    let iupac = prop::collection::vec(
        prop::sample::select(b"ACGTACGTURYSWKMBDHVNacgtn".to_vec()),
        1..max_len,
    );
    prop_oneof![plain, iupac]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]

    #[test]
    fn mask_paths_equal_naive_search(
        records in prop::collection::vec(genome(), 1..4),
        patterns in prop::collection::vec(iupac_pattern(10), 1..5),
        both in any::<bool>(),
        widths in prop::collection::vec(0usize..90, 1..4),
        crlf in any::<bool>(),
        compressed in any::<bool>(),
        block_bytes in 64usize..3000,
        threads in 1usize..3,
    ) {
        let text = to_fasta(&records, &widths, crlf);
        let text = if compressed { gzip(&text) } else { text };
        let found = search(&text, &patterns, both, block_bytes, threads);
        prop_assert_eq!(found, naive(&records, &patterns, both));
    }

    /// More distinct needles than the mask engine takes: plain ones go to Teddy, IUPAC ones to
    /// masks (or everything to shift-and when the IUPAC ones are too many as well).
    #[test]
    fn many_mixed_patterns_equal_naive_search(
        records in prop::collection::vec(genome(), 1..3),
        patterns in prop::collection::vec(iupac_pattern(9), 9..24),
        both in any::<bool>(),
        widths in prop::collection::vec(1usize..80, 1..3),
        block_bytes in 64usize..3000,
    ) {
        let text = to_fasta(&records, &widths, false);
        let found = search(&text, &patterns, both, block_bytes, 2);
        prop_assert_eq!(found, naive(&records, &patterns, both));
    }

    /// Needles longer than one 64-bit mask: the filter checks 64 letters, the rest is verified.
    #[test]
    fn long_iupac_patterns_equal_naive_search(
        unit in prop::collection::vec(prop::sample::select(b"ACGTacgt".to_vec()), 80..140),
        copies in 1usize..4,
        cut in 60usize..70,
        holes in prop::collection::vec((0usize..70, prop::sample::select(b"NRYSW".to_vec())), 0..4),
        both in any::<bool>(),
    ) {
        let record: Vec<u8> = unit.iter().cycle().take(unit.len() * copies + 10).copied().collect();
        let mut pattern: Vec<u8> = unit[..cut + 5].iter().map(u8::to_ascii_uppercase).collect();
        for (at, code) in holes {
            let at = at % pattern.len();
            if accepts(code, pattern[at]) {
                pattern[at] = code;
            }
        }
        let records = vec![record];
        let patterns = vec![pattern, b"GGNCC".to_vec()];
        let text = to_fasta(&records, &[61], false);
        let expected = naive(&records, &patterns, both);
        prop_assert!(expected.iter().any(|hit| hit.2 == 0), "the long pattern must occur");
        prop_assert_eq!(search(&text, &patterns, both, 200, 2), expected);
    }
}

/// A hand-counted fixture: GGNCC in `GGACCgGtCCNGGNCC` on both strands. GGNCC is its own
/// reverse complement, so every match is reported once per strand; `GGNCC` in the sequence
/// matches too (pattern N accepts the sequence's N), and nothing spans the record boundary.
#[test]
fn palindromic_iupac_pattern_counts_on_both_strands() {
    let text = b">a\nGGAC\nCgGtCCNG\nGNCC\n>b\nGG\n>c\nCCA\n";
    let found = search(text, &[b"GGNCC".to_vec()], true, 64, 1);
    let expected = vec![
        (0, 0, 0, false),
        (0, 0, 0, true),
        (0, 5, 0, false),
        (0, 5, 0, true),
        (0, 11, 0, false),
        (0, 11, 0, true),
    ];
    assert_eq!(found, expected);
}
