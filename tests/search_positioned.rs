//! The search that reads a file at offsets on every thread, against a naive FASTA reading and a
//! naive matcher written here, and against the streaming search (the same records, counts, hits
//! and errors). Inputs have irregular line widths, CRLF, blank lines, long headers, sequence
//! before any header and lines longer than a block; blocks are tiny, so block edges fall on
//! every kind of byte.

use std::io::Write;

use crate::support::iupac::{accepts, complement};
use gridwatch::search::{
    search_positioned, search_reader, ParallelOptions, PatternSet, SearchOptions, SearchOutcome,
    Strand, StrandMode, MAX_LINE_OVERRUN,
};
use proptest::prelude::*;

/// A record as the naive reading sees it: its name and bases.
type NaiveRecord = (String, Vec<u8>);

/// Reads FASTA line by line: `\r` dropped everywhere, blank lines skipped, a line starting with
/// `>` names a record up to its first whitespace, sequence before any header is `plain_name`.
fn naive_records(text: &[u8], plain_name: &str) -> Vec<NaiveRecord> {
    let mut records: Vec<NaiveRecord> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line: Vec<u8> = line.iter().copied().filter(|&b| b != b'\r').collect();
        if line.is_empty() {
            continue;
        }
        if line[0] == b'>' {
            let name: Vec<u8> = line[1..]
                .iter()
                .copied()
                .take_while(|b| !b.is_ascii_whitespace())
                .collect();
            records.push((String::from_utf8_lossy(&name).into_owned(), Vec::new()));
        } else {
            if records.is_empty() {
                records.push((plain_name.to_string(), Vec::new()));
            }
            if let Some(last) = records.last_mut() {
                last.1.extend_from_slice(&line);
            }
        }
    }
    records
}

/// (record, start, pattern, strand is reverse), sorted: every position, pattern and strand.
fn naive_hits(records: &[NaiveRecord], patterns: &[Vec<u8>]) -> Vec<(u32, u64, u32, bool)> {
    let mut hits = Vec::new();
    for (record, (_, bases)) in records.iter().enumerate() {
        for (index, pattern) in patterns.iter().enumerate() {
            let forward = pattern.to_ascii_uppercase();
            let reverse: Vec<u8> = forward.iter().rev().map(|&c| complement(c)).collect();
            for (needle, is_reverse) in [(&forward, false), (&reverse, true)] {
                for start in 0..bases.len() {
                    let Some(window) = bases.get(start..start + needle.len()) else {
                        break;
                    };
                    if window.iter().zip(needle).all(|(&b, &c)| accepts(c, b)) {
                        hits.push((record as u32, start as u64, index as u32, is_reverse));
                    }
                }
            }
        }
    }
    hits.sort();
    hits
}

fn pattern_set(patterns: &[Vec<u8>]) -> PatternSet {
    let patterns = crate::support::patterns::named_by_letters(patterns);
    let options = SearchOptions {
        strand: StrandMode::Both,
        ..SearchOptions::default()
    };
    PatternSet::new(patterns, options).expect("valid patterns")
}

fn options(block_bytes: usize, threads: usize, collect_hits: bool) -> ParallelOptions {
    ParallelOptions {
        threads,
        collect_hits,
        block_bytes,
        plain_name: "plain".into(),
    }
}

fn hits_of(outcome: &SearchOutcome) -> Vec<(u32, u64, u32, bool)> {
    outcome
        .hits
        .iter()
        .map(|h| {
            (
                h.record,
                h.hit.start,
                h.hit.pattern,
                h.hit.strand == Strand::Reverse,
            )
        })
        .collect()
}

/// Searches `text` both ways and checks the positioned search against the naive reading and
/// matcher and against the streaming search, listing hits and counting only.
fn check(text: &[u8], patterns: &[Vec<u8>], block_bytes: usize, threads: usize) {
    let set = pattern_set(patterns);
    let listing = options(block_bytes, threads, true);
    let streamed = match search_reader(text, &set, &listing, &mut |_| {}) {
        Ok(outcome) => outcome,
        Err(refused) => {
            // Input the streaming search refuses (text that is not DNA) is refused alike.
            let positioned = search_positioned(text, &set, &listing, &mut |_| {});
            assert_eq!(
                positioned.map(|_| ()).map_err(|e| e.to_string()),
                Err(refused.to_string())
            );
            return;
        }
    };
    let positioned = search_positioned(text, &set, &listing, &mut |_| {}).expect("valid input");
    let records = naive_records(text, "plain");
    let names: Vec<(String, u64)> = records
        .iter()
        .map(|(name, bases)| (name.clone(), bases.len() as u64))
        .collect();
    let found: Vec<(String, u64)> = positioned
        .records
        .iter()
        .map(|r| (r.name.clone(), r.length))
        .collect();
    assert_eq!(found, names, "records");
    assert_eq!(hits_of(&positioned), naive_hits(&records, patterns), "hits");
    assert_eq!(positioned.bytes_read, text.len() as u64);

    assert_eq!(positioned.hits, streamed.hits, "hits and matched bases");
    assert_eq!(positioned.counts, streamed.counts);
    assert_eq!(positioned.records, streamed.records);

    let counting = options(block_bytes, threads, false);
    let counted = search_positioned(text, &set, &counting, &mut |_| {}).expect("valid input");
    assert_eq!(counted.counts, streamed.counts, "counting alone");
    assert_eq!(counted.records, streamed.records);
}

/// FASTA-like text: records with headers of any length, line widths taken in turn from
/// `widths` (0 = the rest on one line), CRLF or LF, blank lines between records, and maybe
/// sequence before the first header.
fn layout(
    records: &[Vec<u8>],
    widths: &[usize],
    crlf: bool,
    header_pad: usize,
    plain_first: bool,
) -> Vec<u8> {
    let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut text = Vec::new();
    let mut turn = 0;
    for (index, bases) in records.iter().enumerate() {
        if index > 0 || !plain_first {
            let header = format!(">r{index} {}", "d".repeat(header_pad * (index % 3)));
            text.extend_from_slice(header.as_bytes());
            text.extend_from_slice(newline);
        }
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
        if index % 2 == 1 {
            text.extend_from_slice(newline);
        }
    }
    text
}

fn bases() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        40 => prop::sample::select(b"ACGTacgt".to_vec()).prop_map(|b| vec![b]),
        2 => Just(b"NNNNN".to_vec()),
        1 => prop::sample::select(b"NnUuX".to_vec()).prop_map(|b| vec![b]),
        4 => Just(b"GGACCGGTCCggcccGGGCC".to_vec()),
    ];
    prop::collection::vec(piece, 0..300).prop_map(|pieces| pieces.concat())
}

fn pattern() -> impl Strategy<Value = Vec<u8>> {
    let plain = prop::collection::vec(prop::sample::select(b"ACGTacgt".to_vec()), 1..9);
    let iupac = prop::collection::vec(prop::sample::select(b"ACGTNRYacgt".to_vec()), 1..9);
    prop_oneof![3 => plain, 1 => iupac]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn positioned_search_equals_naive_and_streaming_search(
        records in prop::collection::vec(bases(), 1..5),
        widths in prop::collection::vec(0usize..90, 1..4),
        crlf in any::<bool>(),
        header_pad in 0usize..200,
        plain_first in any::<bool>(),
        patterns in prop::collection::vec(pattern(), 1..4),
        block_bytes in 2usize..400,
        threads in 1usize..4,
    ) {
        let text = layout(&records, &widths, crlf, header_pad, plain_first);
        prop_assume!(naive_records(&text, "plain").iter().any(|(_, b)| !b.is_empty()));
        check(&text, &patterns, block_bytes, threads);
    }
}

#[test]
fn a_file_is_searched_at_offsets_with_the_same_outcome() {
    let records = vec![
        b"ACGTAGGTCCATacgtaggtccatNNNN".repeat(500),
        b"GGACCGGTCCggcccGGGCC".repeat(300),
    ];
    let text = layout(&records, &[60, 61, 7], false, 30, false);
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&text).expect("write");
    let set = pattern_set(&[b"AGGTCCAT".to_vec(), b"GGNCC".to_vec()]);
    let listing = options(1000, 2, true);
    let from_file =
        search_positioned(file.as_file(), &set, &listing, &mut |_| {}).expect("valid input");
    let naive = naive_hits(
        &naive_records(&text, "plain"),
        &[b"AGGTCCAT".to_vec(), b"GGNCC".to_vec()],
    );
    assert_eq!(hits_of(&from_file), naive);
    assert_eq!(from_file.bytes_read, text.len() as u64);
}

#[test]
fn a_line_longer_than_the_overrun_is_searched_by_streaming_with_the_same_counts() {
    // One sequence line past the overrun limit, then a record of short lines.
    let mut long = b"ACGTTGCA".repeat(MAX_LINE_OVERRUN / 8 + 4000);
    long.extend_from_slice(b"AGGTCCAT");
    let records = vec![long, b"CCAGGTCCATGG".repeat(100)];
    let text = layout(&records, &[0, 60], false, 10, true);
    check(
        &text,
        &[b"AGGTCCAT".to_vec(), b"GCAACG".to_vec()],
        1 << 16,
        2,
    );
}

#[test]
fn gzip_input_is_searched_by_streaming_with_the_same_outcome() {
    let records = vec![b"ACGTAGGTCCATacgtaggtccat".repeat(300)];
    let text = layout(&records, &[60], true, 5, false);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&text).expect("in memory");
    let gzipped = encoder.finish().expect("in memory");
    let set = pattern_set(&[b"AGGTCCAT".to_vec()]);
    let listing = options(512, 2, true);
    let outcome = search_positioned(&gzipped[..], &set, &listing, &mut |_| {}).expect("gzip");
    let naive = naive_hits(&naive_records(&text, "plain"), &[b"AGGTCCAT".to_vec()]);
    assert_eq!(hits_of(&outcome), naive);
}

#[test]
fn refused_inputs_get_the_streaming_search_errors() {
    let set = pattern_set(&[b"ACGT".to_vec()]);
    let listing = options(64, 2, false);
    let long_header = format!(">{}\n", "x".repeat(300));
    let inputs: [&[u8]; 5] = [
        b"",
        b"\n\n\r\n",
        b">only a header\n",
        b"ACGT\0ACGT\n",
        long_header.as_bytes(),
    ];
    for input in inputs {
        let positioned = search_positioned(input, &set, &listing, &mut |_| {})
            .map(|_| ())
            .map_err(|e| e.to_string());
        let streamed = search_reader(input, &set, &listing, &mut |_| {})
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(positioned.is_err(), "{input:?} is refused");
        assert_eq!(positioned, streamed, "{input:?}");
    }
    let prose = "The quick brown fox jumps over the lazy dog; ".repeat(3000);
    let positioned = search_positioned(prose.as_bytes(), &set, &listing, &mut |_| {});
    let streamed = search_reader(prose.as_bytes(), &set, &listing, &mut |_| {});
    assert_eq!(
        positioned.map(|_| ()).map_err(|e| e.to_string()),
        streamed.map(|_| ()).map_err(|e| e.to_string())
    );
}
