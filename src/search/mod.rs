//! The DNA pattern-search kernel: pure functions over bytes, no I/O beyond readers it is handed,
//! no networking, no async. Workers, `gridwatch search` and the benchmarks call the same code.
//!
//! Invariant of the chunk API: a chunk owns `[0, owned_len)` of the bases it is given and carries
//! `PatternSet::overlap()` more bases after it; only matches that *start* in the owned range are
//! reported, so a union over chunks equals a whole-sequence search with no duplicates.

mod input;
mod pattern;

pub use input::{Chunker, InputError, RecordInfo, SequenceChunk, DEFAULT_PLAIN_NAME};
pub use pattern::{Pattern, PatternError, PatternSet, SearchOptions, Strand, StrandMode};

/// One match, in the coordinates of its record's sequence (line breaks removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hit {
    /// 0-based position of the leftmost base of the match in the record.
    pub start: u64,
    /// Index of the pattern in its `PatternSet`.
    pub pattern: u32,
    /// Strand the match was found on (`Reverse` = the reverse complement of the pattern matched).
    pub strand: Strand,
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
    let owned = chunk.owned_len.min(chunk.bases.len());
    for start in 0..owned {
        for (index, pattern) in set.patterns().iter().enumerate() {
            for strand in set.strands() {
                if set.matches_at(index, *strand, chunk.bases, start) {
                    hits.push(Hit {
                        start: chunk.record_offset + start as u64,
                        pattern: index as u32,
                        strand: *strand,
                    });
                }
            }
            let _ = pattern;
        }
    }
    hits[before..].sort_unstable();
}
