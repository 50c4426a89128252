//! The chunked kernel against a naive whole-sequence matcher written independently here: random
//! FASTA (line breaks, N runs, lower case, several records), random IUPAC patterns, random chunk
//! sizes and both strands. The union of per-chunk hits must equal the reference, without duplicates.

use gridwatch::search::{
    search_chunk, search_reader, Chunker, Hit, ParallelOptions, Pattern, PatternSet, SearchOptions,
    Strand, StrandMode,
};
use proptest::prelude::*;

fn reference_complement(code: u8) -> u8 {
    let upper = crate::support::iupac::complement(code);
    if code.is_ascii_lowercase() {
        upper.to_ascii_lowercase()
    } else {
        upper
    }
}

fn letter_ok(code: u8, base: u8, case_sensitive: bool) -> bool {
    if case_sensitive && code.is_ascii_lowercase() != base.is_ascii_lowercase() {
        return false;
    }
    crate::support::iupac::accepts(code, base)
}

/// Every (record, hit) of a naive scan of each whole record.
fn reference_hits(
    records: &[Vec<u8>],
    patterns: &[Vec<u8>],
    options: SearchOptions,
) -> Vec<(u32, Hit)> {
    let mut out = Vec::new();
    for (record_index, sequence) in records.iter().enumerate() {
        for (pattern_index, pattern) in patterns.iter().enumerate() {
            let pattern: Vec<u8> = if options.case_sensitive {
                pattern.clone()
            } else {
                pattern.to_ascii_uppercase()
            };
            let mut strands = vec![(Strand::Forward, pattern.clone())];
            if options.strand == StrandMode::Both {
                let reverse = pattern
                    .iter()
                    .rev()
                    .map(|&c| reference_complement(c))
                    .collect();
                strands.push((Strand::Reverse, reverse));
            }
            for (strand, needle) in strands {
                for start in 0..(sequence.len() + 1).saturating_sub(needle.len()) {
                    let window = &sequence[start..start + needle.len()];
                    let hit = window
                        .iter()
                        .zip(&needle)
                        .all(|(&b, &c)| letter_ok(c, b, options.case_sensitive));
                    if hit {
                        let hit = Hit {
                            start: start as u64,
                            pattern: pattern_index as u32,
                            strand,
                            mismatches: 0,
                        };
                        out.push((record_index as u32, hit));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Lays records out as FASTA with the given line width and line ending.
fn to_fasta(records: &[Vec<u8>], width: usize, crlf: bool) -> Vec<u8> {
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut text = Vec::new();
    for (index, sequence) in records.iter().enumerate() {
        text.extend_from_slice(format!(">r{index} some description").as_bytes());
        text.extend_from_slice(eol);
        for line in sequence.chunks(width) {
            text.extend_from_slice(line);
            text.extend_from_slice(eol);
        }
    }
    text
}

fn chunked_hits(text: &[u8], set: &PatternSet, chunk_len: usize, piece: usize) -> Vec<(u32, Hit)> {
    let mut chunker = Chunker::new(chunk_len, set.overlap());
    let mut out = Vec::new();
    let mut search = |chunk: gridwatch::search::SequenceChunk| {
        let mut hits = Vec::new();
        search_chunk(set, &chunk.as_chunk(), &mut hits);
        out.extend(hits.into_iter().map(|h| (chunk.record, h)));
    };
    for part in text.chunks(piece) {
        chunker.push(part, &mut search).expect("valid input");
    }
    chunker.finish(&mut search).expect("valid input");
    out.sort();
    out
}

fn sequence_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Mostly bases, some lower case, some N runs (as single letters and runs of four).
    let piece = prop_oneof![
        8 => prop::sample::select(b"ACGTacgt".to_vec()).prop_map(|b| vec![b]),
        1 => Just(b"NNNN".to_vec()),
        1 => prop::sample::select(b"Nn".to_vec()).prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 1..120).prop_map(|pieces| pieces.concat())
}

fn pattern_strategy() -> impl Strategy<Value = Vec<u8>> {
    let plain = prop::collection::vec(prop::sample::select(b"ACGTacgt".to_vec()), 1..7);
    let iupac = prop::collection::vec(
        prop::sample::select(b"ACGTURYSWKMBDHVNacgtn".to_vec()),
        1..7,
    );
    prop_oneof![plain, iupac]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn chunked_search_equals_naive_whole_sequence_search(
        records in prop::collection::vec(sequence_strategy(), 1..4),
        patterns in prop::collection::vec(pattern_strategy(), 1..4),
        both in any::<bool>(),
        case_sensitive in any::<bool>(),
        chunk_len in 1usize..40,
        width in 1usize..30,
        crlf in any::<bool>(),
        piece in 1usize..50,
    ) {
        let options = SearchOptions {
            strand: if both { StrandMode::Both } else { StrandMode::Forward },
            case_sensitive,
            ..SearchOptions::default()
        };
        let set = PatternSet::new(
            crate::support::patterns::named_by_letters(&patterns),
            options,
        )
        .expect("valid patterns");
        let text = to_fasta(&records, width, crlf);
        let found = chunked_hits(&text, &set, chunk_len, piece);
        let expected = reference_hits(&records, &patterns, options);
        let mut unique = found.clone();
        unique.dedup();
        prop_assert_eq!(unique.len(), found.len(), "duplicate hits");
        prop_assert_eq!(found, expected);
    }
}

#[test]
fn long_iupac_patterns_beyond_one_machine_word_are_exact() {
    // 70-letter patterns exceed the 64-bit shift-and word; they are filtered then verified.
    let unit = b"ACGTTGCAAGGCTTAACCGGTTAAGCTAGCTAGGATCCATGCATGCAAGCTTGGCCAATTGGCCAATTGGACT";
    let record: Vec<u8> = unit
        .iter()
        .chain(unit.iter())
        .chain(unit.iter())
        .copied()
        .collect();
    let mut pattern = unit[..70].to_vec();
    pattern[3] = b'N';
    pattern[69] = b'N';
    let options = SearchOptions {
        strand: StrandMode::Both,
        case_sensitive: false,
        ..SearchOptions::default()
    };
    let set = PatternSet::new(
        vec![Pattern {
            name: "long".into(),
            sequence: String::from_utf8(pattern.clone()).expect("ascii"),
        }],
        options,
    )
    .expect("valid pattern");
    let text = to_fasta(std::slice::from_ref(&record), 60, false);
    let expected = reference_hits(std::slice::from_ref(&record), &[pattern], options);
    assert!(expected.len() >= 3, "fixture must contain matches");
    assert_eq!(chunked_hits(&text, &set, 50, 17), expected);
}

/// The multi-threaded whole-input search (raw blocks cut at line starts, look-ahead carried to
/// the next block) with tiny blocks, so records, lines and matches straddle many block edges.
fn parallel_hits(
    text: &[u8],
    set: &PatternSet,
    block_bytes: usize,
    threads: usize,
) -> Vec<(u32, Hit)> {
    let options = ParallelOptions {
        threads,
        collect_hits: true,
        block_bytes,
        ..ParallelOptions::default()
    };
    let outcome = search_reader(text, set, &options, &mut |_| {}).expect("valid input");
    let hits: Vec<(u32, Hit)> = outcome.hits.iter().map(|h| (h.record, h.hit)).collect();
    let mut sorted = hits.clone();
    sorted.sort();
    assert_eq!(hits, sorted, "hits come out in record and position order");
    let counted: u64 = outcome.counts.iter().map(|c| c.total()).sum();
    assert_eq!(counted as usize, hits.len(), "counts agree with hits");
    hits
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parallel_search_equals_naive_whole_sequence_search(
        records in prop::collection::vec(sequence_strategy(), 1..4),
        patterns in prop::collection::vec(pattern_strategy(), 1..3),
        both in any::<bool>(),
        width in 1usize..30,
        crlf in any::<bool>(),
        block_bytes in 2usize..600,
        threads in 1usize..4,
    ) {
        let options = SearchOptions {
            strand: if both { StrandMode::Both } else { StrandMode::Forward },
            case_sensitive: false,
            ..SearchOptions::default()
        };
        let set = PatternSet::new(
            crate::support::patterns::named_by_letters(&patterns),
            options,
        )
        .expect("valid patterns");
        let text = to_fasta(&records, width, crlf);
        let found = parallel_hits(&text, &set, block_bytes, threads);
        let expected = reference_hits(&records, &patterns, options);
        prop_assert_eq!(found, expected);
    }
}

#[test]
fn parallel_search_reports_record_names_and_lengths() {
    let text = b">first one\nACGT\nAC\n>second\r\nGGGGG\r\n\n>empty\n>last\nT\n";
    let set = PatternSet::new(
        vec![Pattern {
            name: "G".into(),
            sequence: "G".into(),
        }],
        SearchOptions::default(),
    )
    .expect("valid pattern");
    let options = ParallelOptions {
        threads: 2,
        block_bytes: 8,
        ..ParallelOptions::default()
    };
    let outcome = search_reader(&text[..], &set, &options, &mut |_| {}).expect("valid input");
    let records: Vec<(&str, u64)> = outcome
        .records
        .iter()
        .map(|r| (r.name.as_str(), r.length))
        .collect();
    assert_eq!(
        records,
        vec![("first", 6), ("second", 5), ("empty", 0), ("last", 1)]
    );
    assert_eq!(outcome.counts[0].forward, 6);
}

#[test]
fn uniform_line_runs_and_their_irregularities_are_searched_exactly() {
    // Long records of 60-column lines (the fast path copies runs of such lines), broken by a short
    // line, a blank line, a CRLF line, a line with a stray \r inside and a header line exactly 60
    // bytes wide, each of which must fall back correctly.
    let mut state = 12345u64;
    let mut random_line = |width: usize| -> Vec<u8> {
        (0..width)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"ACGT"[(state >> 62) as usize]
            })
            .collect()
    };
    let mut text = Vec::new();
    let mut records: Vec<Vec<u8>> = Vec::new();
    for index in 0..3 {
        // A header of exactly 60 bytes, so it lines up with the sequence lines around it.
        let header = format!(">r{index} {}", "d".repeat(60 - 4));
        text.extend_from_slice(header.as_bytes());
        text.push(b'\n');
        let mut sequence = Vec::new();
        for line_no in 0..340 {
            let line = random_line(60);
            sequence.extend_from_slice(&line);
            match line_no {
                40 => {
                    text.extend_from_slice(&line[..25]);
                    text.push(b'\n');
                    text.extend_from_slice(&line[25..]);
                }
                90 => {
                    text.extend_from_slice(&line);
                    text.push(b'\r');
                }
                130 => {
                    text.push(b'\n');
                    text.extend_from_slice(&line);
                }
                170 => {
                    // 59 bases and a \r: as wide as its neighbours, one base shorter.
                    sequence.pop();
                    text.extend_from_slice(&line[..30]);
                    text.push(b'\r');
                    text.extend_from_slice(&line[30..59]);
                }
                _ => text.extend_from_slice(&line),
            }
            text.push(b'\n');
        }
        records.push(sequence);
    }
    let patterns = vec![b"ACGTA".to_vec(), b"GGNNCC".to_vec()];
    let options = SearchOptions {
        strand: StrandMode::Both,
        case_sensitive: false,
        ..SearchOptions::default()
    };
    let set = PatternSet::new(
        crate::support::patterns::named_by_letters(&patterns),
        options,
    )
    .expect("valid patterns");
    let expected = reference_hits(&records, &patterns, options);
    for block_bytes in [1000, 4096, 1 << 20] {
        assert_eq!(
            parallel_hits(&text, &set, block_bytes, 2),
            expected,
            "block size {block_bytes}"
        );
    }
}
