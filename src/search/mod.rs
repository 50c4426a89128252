//! The DNA pattern-search kernel: pure functions over bytes, no I/O beyond readers it is handed,
//! no networking, no async. Workers, `gridwatch search` and the benchmarks call the same code.
//! Exact and mismatch (Hamming) searches share it: an approximate match is exactly as long as its
//! pattern, so the overlap below covers it too.
//!
//! Invariant of the chunk API: a chunk owns `[0, owned_len)` of the bases it is given and carries
//! `PatternSet::overlap()` more bases after it; only matches that *start* in the owned range are
//! reported, so a union over chunks equals a whole-sequence search with no duplicates.

mod approx;
mod block;
mod decode;
pub mod generate;
mod input;
mod masks;
mod matcher;
mod needle;
mod parallel;
mod pattern;
mod positioned;
pub mod twobit;

pub use input::{Chunker, InputError, RecordInfo, SequenceChunk, DEFAULT_PLAIN_NAME};
pub use parallel::{search_reader, LocatedHit, ParallelError, ParallelOptions, SearchOutcome};
pub use pattern::{
    KernelSplit, MismatchKernel, Pattern, PatternError, PatternSet, SearchOptions, Strand,
    StrandMode, MAX_MISMATCHES,
};
pub use positioned::{search_positioned, PositionedInput, MAX_LINE_OVERRUN};

/// Matches of one pattern, split by strand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StrandCounts {
    /// Matches of the pattern as written (`+`).
    pub forward: u64,
    /// Matches of its reverse complement (`-`).
    pub reverse: u64,
}

impl StrandCounts {
    /// Matches on both strands (saturating: counts read back from a store may be anything).
    pub fn total(&self) -> u64 {
        self.forward.saturating_add(self.reverse)
    }

    /// Counts one match on `strand`.
    pub fn add(&mut self, strand: Strand) {
        match strand {
            Strand::Forward => self.forward += 1,
            Strand::Reverse => self.reverse += 1,
        }
    }
}

/// One match, in the coordinates of its record's sequence (line breaks removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hit {
    /// 0-based position of the leftmost base of the match in the record.
    pub start: u64,
    /// Index of the pattern in its `PatternSet`.
    pub pattern: u32,
    /// Strand the match was found on (`Reverse` = the reverse complement of the pattern matched).
    pub strand: Strand,
    /// Substitutions between the pattern and the matched bases (0 for an exact search).
    pub mismatches: u32,
}

/// A piece of one record's sequence handed to the kernel.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// Owned bases followed by up to `overlap()` bases of look-ahead; no line breaks.
    pub bases: &'a [u8],
    /// How many of `bases` this chunk owns; matches must start before this index.
    pub owned_len: usize,
    /// Position of `bases[0]` in its record, added to every reported `Hit::start`.
    pub record_offset: u64,
}

/// Searches one chunk and appends its hits (only those starting in the owned range) to `hits`,
/// ordered by start position, then pattern, then strand.
pub fn search_chunk(set: &PatternSet, chunk: &Chunk<'_>, hits: &mut Vec<Hit>) {
    let before = hits.len();
    search_chunk_with(set, chunk, &mut |hit| hits.push(hit));
    hits[before..].sort_unstable();
}

thread_local! {
    /// Normalised bases, for engines that need them; one buffer per thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Adds the matches starting in one chunk's owned range to `counts` (indexed by pattern): the
/// totals `search_chunk_with` would report, without a call per match where the engine allows.
pub fn count_chunk(set: &PatternSet, chunk: &Chunk<'_>, counts: &mut [StrandCounts]) {
    with_kernel(set, chunk, |owned, verify, scratch| {
        matcher::count(
            set.engine(),
            chunk.bases,
            owned,
            verify,
            scratch,
            &mut |pattern, strand, found| {
                if let Some(total) = counts.get_mut(pattern as usize) {
                    match strand {
                        Strand::Forward => total.forward += found,
                        Strand::Reverse => total.reverse += found,
                    }
                }
            },
        );
    });
}

/// Runs `search` over the chunk's owned range with the set's verifier and this thread's scratch
/// buffer; nothing when the chunk owns no base.
fn with_kernel(
    set: &PatternSet,
    chunk: &Chunk<'_>,
    search: impl FnOnce(usize, &approx::Verify<'_>, &mut Vec<u8>),
) {
    let owned = chunk.owned_len.min(chunk.bases.len());
    if owned == 0 {
        return;
    }
    let verify = |needle: &needle::Needle, start: usize, limit: u32| {
        set.mismatches_at(
            needle.pattern as usize,
            needle.strand,
            chunk.bases,
            start,
            limit,
        )
    };
    SCRATCH.with(|scratch| search(owned, &verify, &mut scratch.borrow_mut()));
}

/// Searches one chunk and calls `on_hit` for each hit starting in the owned range, in no
/// particular order. Use this to count without collecting.
pub fn search_chunk_with(set: &PatternSet, chunk: &Chunk<'_>, on_hit: &mut dyn FnMut(Hit)) {
    with_kernel(set, chunk, |owned, verify, scratch| {
        matcher::run(
            set.engine(),
            chunk.bases,
            owned,
            verify,
            scratch,
            &mut |start, pattern, strand, mismatches| {
                on_hit(matcher::hit(
                    chunk.record_offset,
                    start,
                    pattern,
                    strand,
                    mismatches,
                ))
            },
        );
    });
}
