//! Search with mismatches against a naive Hamming scan written here: random FASTA (N runs, lower
//! case, line breaks), random IUPAC patterns, K from 0 to 4, both strands, random chunk and block
//! sizes, and each kernel forced (the seed kernel also on patterns long enough that it is really
//! the one used). Every position within K must be reported once, with its count.

use crate::support::iupac::{accepts, complement};
use gridwatch::search::{
    search_chunk, search_reader, Chunker, KernelSplit, MismatchKernel, ParallelOptions,
    PatternError, PatternSet, SearchOptions, StrandMode,
};
use proptest::prelude::*;

/// (record, start, pattern, strand '+'/'-', mismatches) for every window within `k`.
type Found = (u32, u64, u32, char, u32);

fn naive_hamming(records: &[Vec<u8>], patterns: &[Vec<u8>], both: bool, k: u32) -> Vec<Found> {
    let mut out = Vec::new();
    for (r, sequence) in records.iter().enumerate() {
        for (p, pattern) in patterns.iter().enumerate() {
            let mut strands = vec![('+', pattern.clone())];
            if both {
                strands.push(('-', pattern.iter().rev().map(|&c| complement(c)).collect()));
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
                        out.push((r as u32, start as u64, p as u32, strand, misses));
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

fn pattern_set(
    patterns: &[Vec<u8>],
    both: bool,
    k: u32,
    kernel: MismatchKernel,
) -> Result<PatternSet, PatternError> {
    let options = SearchOptions {
        strand: if both {
            StrandMode::Both
        } else {
            StrandMode::Forward
        },
        max_mismatches: k,
        kernel,
        ..SearchOptions::default()
    };
    PatternSet::new(
        crate::support::patterns::named_by_letters(patterns),
        options,
    )
}

fn strand_char(strand: gridwatch::search::Strand) -> char {
    strand.symbol()
}

fn chunked(text: &[u8], set: &PatternSet, chunk_len: usize) -> Vec<Found> {
    let mut chunker = Chunker::new(chunk_len, set.overlap());
    let mut out = Vec::new();
    let mut search = |chunk: gridwatch::search::SequenceChunk| {
        let mut hits = Vec::new();
        search_chunk(set, &chunk.as_chunk(), &mut hits);
        out.extend(hits.into_iter().map(|h| {
            (
                chunk.record,
                h.start,
                h.pattern,
                strand_char(h.strand),
                h.mismatches,
            )
        }));
    };
    chunker.push(text, &mut search).expect("valid input");
    chunker.finish(&mut search).expect("valid input");
    out.sort();
    out
}

fn parallel(text: &[u8], set: &PatternSet, block_bytes: usize) -> Vec<Found> {
    let options = ParallelOptions {
        threads: 2,
        collect_hits: true,
        block_bytes,
        ..ParallelOptions::default()
    };
    let outcome = search_reader(text, set, &options, &mut |_| {}).expect("valid input");
    let counted: u64 = outcome.counts.iter().map(|c| c.total()).sum();
    assert_eq!(
        counted as usize,
        outcome.hits.len(),
        "counts agree with hits"
    );
    let mut out: Vec<Found> = outcome
        .hits
        .iter()
        .map(|h| {
            (
                h.record,
                h.hit.start,
                h.hit.pattern,
                strand_char(h.hit.strand),
                h.hit.mismatches,
            )
        })
        .collect();
    out.sort();
    out
}

fn sequence_strategy() -> impl Strategy<Value = Vec<u8>> {
    sequence_of(1..300)
}

/// Mostly A/C/G/T in both cases, with N runs and the odd U; `pieces` letters or runs.
fn sequence_of(pieces: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        12 => prop::sample::select(b"ACGTacgt".to_vec()).prop_map(|b| vec![b]),
        1 => Just(b"NNNNN".to_vec()),
        1 => prop::sample::select(b"NnU".to_vec()).prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, pieces).prop_map(|pieces| pieces.concat())
}

/// Patterns long enough for K: plain A/C/G/T (seedable), or with IUPAC codes and N.
fn pattern_strategy() -> impl Strategy<Value = Vec<u8>> {
    let plain = prop::collection::vec(prop::sample::select(b"ACGTacgt".to_vec()), 9..26);
    let iupac = prop::collection::vec(
        prop::sample::select(b"ACGTACGTACGTRYSWKMBDHVNacgt".to_vec()),
        9..26,
    );
    prop_oneof![3 => plain, 1 => iupac]
}

fn kernel_strategy() -> impl Strategy<Value = MismatchKernel> {
    prop::sample::select(vec![
        MismatchKernel::Auto,
        MismatchKernel::Bits,
        MismatchKernel::Seeds,
    ])
}

/// A copy of `len` bases of `sequence` from `start`, upper-cased with anything but A/C/G/T
/// made an A, then with `substitutions` applied: (position, 1..=3) turns that base into another.
fn mutated_window(
    sequence: &[u8],
    start: usize,
    len: usize,
    substitutions: &[(prop::sample::Index, u8)],
) -> Vec<u8> {
    const BASES: &[u8; 4] = b"ACGT";
    let mut window: Vec<u8> = sequence[start..start + len]
        .iter()
        .map(|&b| match b.to_ascii_uppercase() {
            b @ (b'A' | b'C' | b'G' | b'T') => b,
            _ => b'A',
        })
        .collect();
    for (at, shift) in substitutions {
        let at = at.index(len);
        let code = BASES.iter().position(|&b| b == window[at]).unwrap_or(0);
        window[at] = BASES[(code + usize::from(*shift)) % 4];
    }
    window
}

/// A genome copy to turn into a pattern: where, how long, and up to five substitutions.
type Copied = (prop::sample::Index, usize, Vec<(prop::sample::Index, u8)>);

fn copied_strategy() -> impl Strategy<Value = Copied> {
    (
        any::<prop::sample::Index>(),
        20usize..=40,
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=3), 0..=5),
    )
}

proptest! {
    /// Plain A/C/G/T patterns of 20 to 40 bases: at K = 4 each of the 5 seed parts still has 4
    /// letters, so forcing `Seeds` really puts every needle in the seed table (checked), and
    /// needles over 32 bases take the table's slow verification path. Half the patterns are
    /// genome windows with up to K (sometimes K + 1) substitutions, so there are hits at every K.
    #[test]
    fn forced_seed_kernel_equals_naive_hamming_scan(
        records in prop::collection::vec(sequence_of(60..400), 1..3),
        random in prop::collection::vec(
            prop::collection::vec(prop::sample::select(b"ACGTacgt".to_vec()), 20..=40),
            0..4,
        ),
        copied in prop::collection::vec(copied_strategy(), 1..4),
        both in any::<bool>(),
        k in 0u32..=4,
        chunk_len in 1usize..120,
        width in 1usize..40,
    ) {
        let genome = &records[0];
        let mut patterns = random;
        for (at, len, substitutions) in &copied {
            if genome.len() < *len {
                continue;
            }
            let start = at.index(genome.len() - len + 1);
            // Up to K substitutions keep a hit; one more (when drawn) probes the boundary.
            let kept = substitutions.len().min(k as usize + 1);
            patterns.push(mutated_window(genome, start, *len, &substitutions[..kept]));
        }
        prop_assume!(!patterns.is_empty());
        let set = pattern_set(&patterns, both, k, MismatchKernel::Seeds)
            .expect("patterns of 20+ bases allow K <= 4");
        let needles = patterns.len() * if both { 2 } else { 1 };
        let expected_split = (k > 0).then_some(KernelSplit { seeded: needles, bit_parallel: 0 });
        prop_assert_eq!(set.mismatch_kernels(), expected_split);
        let text = to_fasta(&records, width);
        prop_assert_eq!(
            chunked(&text, &set, chunk_len),
            naive_hamming(&records, &patterns, both, k)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunked_mismatch_search_equals_naive_hamming_scan(
        records in prop::collection::vec(sequence_strategy(), 1..3),
        patterns in prop::collection::vec(pattern_strategy(), 1..6),
        both in any::<bool>(),
        k in 0u32..5,
        kernel in kernel_strategy(),
        chunk_len in 1usize..80,
        width in 1usize..40,
        from_genome in prop::option::of(any::<prop::sample::Index>()),
    ) {
        // Half the time the first pattern is a window of the first record, so hits at 0 to K
        // mismatches (found through several seeds at once) are common, not rare.
        let mut patterns = patterns;
        if let Some(at) = from_genome {
            let len = patterns[0].len();
            if records[0].len() >= len {
                let start = at.index(records[0].len() - len + 1);
                patterns[0] = records[0][start..start + len].to_vec();
            }
        }
        let set = pattern_set(&patterns, both, k, kernel).expect("patterns of 9+ bases allow K <= 4");
        let text = to_fasta(&records, width);
        let found = chunked(&text, &set, chunk_len);
        let mut unique = found.clone();
        unique.dedup();
        prop_assert_eq!(unique.len(), found.len(), "duplicate hits");
        prop_assert_eq!(found, naive_hamming(&records, &patterns, both, k));
    }

    #[test]
    fn parallel_mismatch_search_equals_naive_hamming_scan(
        records in prop::collection::vec(sequence_strategy(), 1..3),
        patterns in prop::collection::vec(pattern_strategy(), 1..4),
        both in any::<bool>(),
        k in 1u32..5,
        kernel in kernel_strategy(),
        width in 1usize..40,
        block_bytes in 2usize..400,
    ) {
        let set = pattern_set(&patterns, both, k, kernel).expect("patterns of 9+ bases allow K <= 4");
        let text = to_fasta(&records, width);
        prop_assert_eq!(parallel(&text, &set, block_bytes), naive_hamming(&records, &patterns, both, k));
    }
}

/// Many patterns, so `Auto` picks the seed table for the plain ones and shift-and for the rest.
#[test]
fn many_patterns_mix_seeded_and_bit_parallel_needles_exactly() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let genome: Vec<u8> = (0..20_000)
        .map(|_| b"ACGTACGTACGTACGTNacgt"[(next() % 21) as usize])
        .collect();
    let mut patterns: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let at = (next() % 19_000) as usize;
            let mut p = genome[at..at + 12 + i % 9].to_ascii_uppercase();
            p.iter_mut().for_each(|b| {
                if *b == b'N' {
                    *b = b'A';
                }
            });
            p
        })
        .collect();
    patterns.push(b"ACGTNACGTRYACG".to_vec());
    for k in 1..=3 {
        let set = pattern_set(&patterns, true, k, MismatchKernel::Auto).expect("valid");
        let records = vec![genome.clone()];
        let text = to_fasta(&records, 61);
        assert_eq!(
            chunked(&text, &set, 997),
            naive_hamming(&records, &patterns, true, k),
            "K = {k}"
        );
    }
}

/// `Seeds` is only a request: parts under 4 letters (9 bases at K = 3) or an `N` cannot be
/// seeded, and those needles fall back to shift-and, which the set reports.
#[test]
fn needles_that_cannot_be_seeded_are_reported_as_bit_parallel() {
    let twenty = b"ACGTTGCAACGGTACCATGA".to_vec();
    let split = |patterns: &[Vec<u8>], k| {
        pattern_set(patterns, true, k, MismatchKernel::Seeds)
            .expect("valid")
            .mismatch_kernels()
    };
    let seeded = |seeded, bit_parallel| {
        Some(KernelSplit {
            seeded,
            bit_parallel,
        })
    };
    assert_eq!(split(std::slice::from_ref(&twenty), 4), seeded(2, 0));
    assert_eq!(
        split(&[twenty.clone(), b"ACGTTGCAA".to_vec()], 3),
        seeded(0, 4)
    );
    assert_eq!(
        split(&[twenty.clone(), b"ACGTTNCAACGGTACCATGA".to_vec()], 2),
        seeded(2, 2)
    );
    assert_eq!(split(std::slice::from_ref(&twenty), 0), None);
    let bits = pattern_set(&[twenty], false, 2, MismatchKernel::Bits).expect("valid");
    assert_eq!(bits.mismatch_kernels(), seeded(0, 1));
}

#[test]
fn mismatches_of_half_the_pattern_length_are_refused() {
    let error = pattern_set(&[b"ACGTAC".to_vec()], false, 3, MismatchKernel::Auto)
        .expect_err("K = 3 of 6 bases");
    let message = error.to_string();
    assert!(message.contains("every position would match"), "{message}");
    assert!(message.contains("at most 2"), "{message}");
    assert!(pattern_set(&[b"ACGTAC".to_vec()], false, 2, MismatchKernel::Auto).is_ok());
}
