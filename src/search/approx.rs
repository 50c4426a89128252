//! Matchers for searches with up to K substitutions (Hamming distance), chosen per needle.
//!
//! - [`ApproxBits`]: bit-parallel shift-and with K+1 state words (Baeza-Yates–Gonnet extended to
//!   substitutions): word `j` holds the prefixes matched with at most `j` mismatches, so one byte
//!   costs about 3(K+1) word operations per 64 needle letters whatever the pattern says. Used for
//!   few patterns, needles with an `N` (an exact seed of one would also have to match non-bases),
//!   and case-sensitive searches.
//! - [`SeedIndex`]: pigeonhole seeds for many patterns. A needle split into K+1 disjoint parts
//!   has at most K mismatches only if some part matches exactly, so every part's first `q` letters
//!   (IUPAC codes expanded to A/C/G/T) go into one table indexed by their 2-bit code; a rolling
//!   code over the sequence finds the candidates, which are verified letter by letter. A hit
//!   found through several parts is reported only through its lowest exact part. Why not Teddy or
//!   Aho-Corasick for the seeds: parts are short (a 20-mer at K = 3 has 5-base parts) and number
//!   in the thousands, so nearly every position matches some seed, and a direct table lookup per
//!   position is what that density needs; Teddy holds only a few dozen needles.
//!
//! Both report every start position within K, overlapping ones included, with its mismatch count.

use super::needle::{iupac_bases, pack_words, Needle, Strand, Word};

/// Longest seed indexed: the table has 4^10 heads (4 MiB) at most.
const MAX_SEED: usize = 10;

/// Shortest seed worth indexing: shorter seeds match too many positions to filter anything.
pub(crate) const MIN_SEED: usize = 4;

/// Most A/C/G/T spellings one seed of an IUPAC needle may expand to.
const MAX_SEED_SPELLINGS: usize = 64;

/// How many mismatches `needle` has against `bases` at `start`, if at most `limit`.
pub(crate) type Verify<'a> = dyn Fn(&Needle, usize, u32) -> Option<u32> + 'a;

/// Receives (start, pattern, strand, mismatches).
pub(crate) type Sink<'a> = dyn FnMut(usize, u32, Strand, u32) + 'a;

/// Shift-and with mismatch levels for any IUPAC needles.
#[derive(Clone, Debug)]
pub(crate) struct ApproxBits {
    needles: Vec<Needle>,
    words: Vec<Word>,
    max_mismatches: u32,
}

impl ApproxBits {
    pub fn new(
        needles: Vec<Needle>,
        max_mismatches: u32,
        matches: &dyn Fn(u8, u8) -> bool,
    ) -> Self {
        let words = pack_words(&needles, matches);
        Self {
            needles,
            words,
            max_mismatches,
        }
    }

    /// Whether this matcher holds no needle.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// How many needles this matcher holds.
    pub fn needle_count(&self) -> usize {
        self.needles.len()
    }

    pub fn search(&self, bases: &[u8], owned: usize, verify: &Verify<'_>, sink: &mut Sink<'_>) {
        let levels = self.max_mismatches as usize + 1;
        let mut states = vec![0u64; levels];
        for word in &self.words {
            states.iter_mut().for_each(|s| *s = 0);
            for (at, &byte) in bases.iter().enumerate() {
                let accept = word.table[byte as usize];
                let mut below = states[0];
                states[0] = ((below << 1) | word.starts) & accept;
                let mut any_end = states[0];
                for state in states.iter_mut().skip(1) {
                    let old = *state;
                    // Extend with a matching letter at this level, or spend one mismatch on a
                    // prefix one level below.
                    *state = (((old << 1) | word.starts) & accept) | (below << 1) | word.starts;
                    below = old;
                    any_end |= *state;
                }
                if any_end & word.ends == 0 {
                    continue;
                }
                self.report(word, &states, at, owned, verify, sink);
            }
        }
    }

    fn report(
        &self,
        word: &Word,
        states: &[u64],
        at: usize,
        owned: usize,
        verify: &Verify<'_>,
        sink: &mut Sink<'_>,
    ) {
        for &(end_bit, prefix_len, index) in &word.members {
            let bit = 1u64 << end_bit;
            let Some(level) = states.iter().position(|s| s & bit != 0) else {
                continue;
            };
            let start = at + 1 - prefix_len;
            if start >= owned {
                continue;
            }
            let needle = &self.needles[index];
            let mismatches = if needle.letters.len() == prefix_len {
                Some(level as u32)
            } else {
                verify(needle, start, self.max_mismatches)
            };
            if let Some(mismatches) = mismatches {
                sink(start, needle.pattern, needle.strand, mismatches);
            }
        }
    }
}

/// 2-bit code of a sequence byte (A, C, G, T/U in either case), 4 for anything else.
const fn base_codes() -> [u8; 256] {
    let mut table = [4u8; 256];
    table[b'A' as usize] = 0;
    table[b'a' as usize] = 0;
    table[b'C' as usize] = 1;
    table[b'c' as usize] = 1;
    table[b'G' as usize] = 2;
    table[b'g' as usize] = 2;
    table[b'T' as usize] = 3;
    table[b't' as usize] = 3;
    table[b'U' as usize] = 3;
    table[b'u' as usize] = 3;
    table
}

static BASE_CODES: [u8; 256] = base_codes();

/// One seeded needle: where its parts start.
#[derive(Clone, Debug)]
struct SeededNeedle {
    needle: Needle,
    /// Per letter, the bases it accepts (A=1, C=2, G=4, T=8).
    masks: Vec<u8>,
    /// Offset of each part's seed in the needle.
    part_offsets: Vec<usize>,
}

/// One seed of one needle, with what a candidate check needs in one cache line.
#[derive(Clone, Copy, Debug)]
struct SeedEntry {
    needle: u32,
    part: u32,
    /// Offset of the seed in the needle.
    seed_offset: u32,
    /// Needle length.
    len: u32,
    /// The needle's letters as 2-bit codes (letter `i` at bits `2i`), when it is plain A/C/G/T
    /// of at most 32 letters (see `fast`).
    packed: u64,
    /// Whether `packed` is valid.
    fast: bool,
}

/// Pigeonhole seed table for case-insensitive needles without `N`.
#[derive(Clone, Debug)]
pub(crate) struct SeedIndex {
    needles: Vec<SeededNeedle>,
    /// Seed length in letters (the same for every needle).
    seed_len: usize,
    /// `heads[code]..heads[code + 1]` indexes `entries` for a seed spelled `code`.
    heads: Vec<u32>,
    /// One per (seed spelling, needle, part), grouped by spelling.
    entries: Vec<SeedEntry>,
    max_mismatches: u32,
}

/// Seed length for needles of `shortest` letters at K mismatches: each of the K+1 parts is at
/// least `shortest / (K + 1)` letters long.
pub(crate) fn seed_len(shortest: usize, max_mismatches: u32) -> usize {
    (shortest / (max_mismatches as usize + 1)).min(MAX_SEED)
}

/// Whether a needle can be found through exact seeds: its letters must only accept real bases
/// (not `N`, which also accepts non-bases) and each seed must have few A/C/G/T spellings.
pub(crate) fn seedable(needle: &Needle, seed_len: usize, max_mismatches: u32) -> bool {
    if seed_len < MIN_SEED || needle.letters.iter().any(|&c| iupac_bases(c) == 15) {
        return false;
    }
    part_offsets(needle.letters.len(), max_mismatches)
        .iter()
        .all(|&offset| spellings(&needle.letters[offset..offset + seed_len]) <= MAX_SEED_SPELLINGS)
}

/// Start of each of the K+1 near-equal parts of a needle of `len` letters.
fn part_offsets(len: usize, max_mismatches: u32) -> Vec<usize> {
    let parts = max_mismatches as usize + 1;
    (0..parts).map(|part| part * len / parts).collect()
}

fn spellings(letters: &[u8]) -> usize {
    letters
        .iter()
        .map(|&c| iupac_bases(c).count_ones() as usize)
        .fold(1usize, |a, b| a.saturating_mul(b))
}

impl SeedIndex {
    /// Builds the table; every needle must pass [`seedable`] with `seed_len`.
    pub fn new(needles: Vec<Needle>, seed_len: usize, max_mismatches: u32) -> Self {
        let mut pairs: Vec<(u32, u32, u8)> = Vec::new();
        let mut seeded = Vec::with_capacity(needles.len());
        for (index, needle) in needles.into_iter().enumerate() {
            let offsets = part_offsets(needle.letters.len(), max_mismatches);
            for (part, &offset) in offsets.iter().enumerate() {
                for code in spell(&needle.letters[offset..offset + seed_len]) {
                    pairs.push((code, index as u32, part as u8));
                }
            }
            seeded.push(SeededNeedle {
                masks: needle.letters.iter().map(|&c| iupac_bases(c)).collect(),
                needle,
                part_offsets: offsets,
            });
        }
        pairs.sort_unstable();
        pairs.dedup();
        let codes = 1usize << (2 * seed_len);
        let mut heads = vec![0u32; codes + 1];
        for &(code, _, _) in &pairs {
            heads[code as usize + 1] += 1;
        }
        for i in 0..codes {
            heads[i + 1] += heads[i];
        }
        let entries = pairs
            .into_iter()
            .map(|(_, needle, part)| {
                let seeded = &seeded[needle as usize];
                let packed = pack_needle(&seeded.masks);
                SeedEntry {
                    needle,
                    part: part as u32,
                    seed_offset: seeded.part_offsets[part as usize] as u32,
                    len: seeded.masks.len() as u32,
                    packed: packed.unwrap_or(u64::MAX),
                    fast: packed.is_some(),
                }
            })
            .collect();
        Self {
            needles: seeded,
            seed_len,
            heads,
            entries,
            max_mismatches,
        }
    }

    /// How many needles the table holds.
    pub fn needle_count(&self) -> usize {
        self.needles.len()
    }

    pub fn search(&self, bases: &[u8], owned: usize, sink: &mut Sink<'_>) {
        let packed = PackedBases::new(bases);
        let q = self.seed_len;
        let mask = (1u32 << (2 * q)) - 1;
        let mut code = 0u32;
        let mut valid = 0usize;
        for (at, &byte) in bases.iter().enumerate() {
            let base = BASE_CODES[byte as usize];
            if base > 3 {
                valid = 0;
                continue;
            }
            code = ((code << 2) | base as u32) & mask;
            valid += 1;
            if valid < q {
                continue;
            }
            let seed_start = at + 1 - q;
            let (from, to) = (self.heads[code as usize], self.heads[code as usize + 1]);
            for entry in &self.entries[from as usize..to as usize] {
                let Some(start) = seed_start.checked_sub(entry.seed_offset as usize) else {
                    continue;
                };
                let end = start + entry.len as usize;
                if start >= owned || end > bases.len() {
                    continue;
                }
                let mismatches = if entry.fast && packed.all_bases(start, entry.len) {
                    let differing = packed.differences(start, entry.len, entry.packed);
                    if differing > self.max_mismatches {
                        continue;
                    }
                    differing
                } else {
                    let seeded = &self.needles[entry.needle as usize];
                    match masked_hamming(&seeded.masks, &bases[start..end], self.max_mismatches) {
                        Some(mismatches) => mismatches,
                        None => continue,
                    }
                };
                let seeded = &self.needles[entry.needle as usize];
                if self.found_earlier(seeded, entry.part as usize, &bases[start..end]) {
                    continue;
                }
                sink(
                    start,
                    seeded.needle.pattern,
                    seeded.needle.strand,
                    mismatches,
                );
            }
        }
    }

    /// Whether a part before `part` also matches exactly (the hit is reported through that one).
    fn found_earlier(&self, seeded: &SeededNeedle, part: usize, window: &[u8]) -> bool {
        seeded.part_offsets[..part].iter().any(|&offset| {
            let seed = offset..offset + self.seed_len;
            masked_hamming(&seeded.masks[seed.clone()], &window[seed], 0).is_some()
        })
    }
}

/// A needle of plain bases, at most 32, as 2-bit codes (letter `i` at bits `2i`).
fn pack_needle(masks: &[u8]) -> Option<u64> {
    if masks.len() > 32 {
        return None;
    }
    let mut packed = 0u64;
    for (i, &mask) in masks.iter().enumerate() {
        if mask.count_ones() != 1 {
            return None;
        }
        packed |= u64::from(mask.trailing_zeros()) << (2 * i);
    }
    Some(packed)
}

/// A chunk's bases as 2-bit codes, 32 to a word, and a bit per base that is not A/C/G/T, so a
/// candidate window of up to 32 bases is compared with a needle in a few word operations.
struct PackedBases {
    codes: Vec<u64>,
    other: Vec<u64>,
}

impl PackedBases {
    fn new(bases: &[u8]) -> Self {
        let mut codes = vec![0u64; bases.len() / 32 + 2];
        let mut other = vec![0u64; bases.len() / 64 + 2];
        for (i, &byte) in bases.iter().enumerate() {
            let code = BASE_CODES[byte as usize];
            if code > 3 {
                other[i / 64] |= 1 << (i % 64);
            } else {
                codes[i / 32] |= u64::from(code) << (2 * (i % 32));
            }
        }
        Self { codes, other }
    }

    /// Whether bases `start..start + len` (len <= 32) are all A/C/G/T.
    fn all_bases(&self, start: usize, len: u32) -> bool {
        let (word, shift) = (start / 64, start % 64);
        let mut bits = self.other[word] >> shift;
        if shift > 0 {
            bits |= self.other[word + 1] << (64 - shift);
        }
        bits & ((1u64 << len) - 1) == 0
    }

    /// How many of bases `start..start + len` (len <= 32) differ from `needle`.
    fn differences(&self, start: usize, len: u32, needle: u64) -> u32 {
        let (word, shift) = (start / 32, 2 * (start % 32));
        let mut window = self.codes[word] >> shift;
        if shift > 0 {
            window |= self.codes[word + 1] << (64 - shift);
        }
        let lanes = if len == 32 {
            u64::MAX
        } else {
            (1u64 << (2 * len)) - 1
        };
        let x = (window ^ needle) & lanes;
        ((x | (x >> 1)) & 0x5555_5555_5555_5555).count_ones()
    }
}

/// Every 2-bit code an IUPAC seed stands for.
fn spell(letters: &[u8]) -> Vec<u32> {
    let mut codes = vec![0u32];
    for &letter in letters {
        let set = iupac_bases(letter);
        let mut next = Vec::with_capacity(codes.len() * set.count_ones() as usize);
        for &code in &codes {
            for base in 0..4u32 {
                if set & (1 << base) != 0 {
                    next.push((code << 2) | base);
                }
            }
        }
        codes = next;
    }
    codes
}

/// Base bits of a sequence byte (A=1, C=2, G=4, T/U=8, either case), 0 for anything else.
const fn base_bits() -> [u8; 256] {
    let codes = base_codes();
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        if codes[byte] < 4 {
            table[byte] = 1 << codes[byte];
        }
        byte += 1;
    }
    table
}

static BASE_BITS: [u8; 256] = base_bits();

/// Mismatches of the letter masks against `window` (same length), if at most `limit`; stops
/// early.
fn masked_hamming(masks: &[u8], window: &[u8], limit: u32) -> Option<u32> {
    let mut mismatches = 0u32;
    for (&mask, &base) in masks.iter().zip(window) {
        if mask & BASE_BITS[base as usize] == 0 {
            mismatches += 1;
            if mismatches > limit {
                return None;
            }
        }
    }
    Some(mismatches)
}
