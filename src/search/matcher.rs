//! The fast matchers behind `search_chunk`, chosen once per `PatternSet`.
//!
//! - Patterns of plain A/C/G/T use Teddy (`aho_corasick::packed`, SIMD), restarted one past each
//!   match start so overlapping matches count; at each start every needle is verified, so equal
//!   needles (a palindrome and its reverse complement) are all reported.
//! - A case-insensitive set with an IUPAC code and at most 16 distinct needles uses the per-base
//!   bit masks of `masks` (64 starts per block at once); with more needles, the plain ones go to
//!   Teddy and the IUPAC ones to masks when those are few.
//! - Other IUPAC patterns (or machines without Teddy) use a bit-parallel shift-and over 64-bit
//!   words, several needles per word; needles longer than 64 are filtered on their first 64
//!   letters and verified with the reference `PatternSet::matches_at`.
//! - Searches with mismatches (K >= 1) use the matchers of `approx`, chosen per needle by
//!   [`Engine::approximate`].

use aho_corasick::packed;

use super::approx::{self, ApproxBits, SeedIndex, Sink, Verify};
use super::masks::MaskEngine;
use super::needle::{pack_words, Needle, Word, WORD_BITS};
use super::{Hit, KernelSplit, MismatchKernel, Strand};

/// The matcher for a whole pattern set.
#[derive(Clone, Debug)]
pub(crate) enum Engine {
    Exact(ExactEngine),
    /// A few IUPAC needles, 64 positions at a time.
    Masks(MaskEngine),
    /// Too many needles for masks alone: the plain ones in Teddy, the few IUPAC ones in masks
    /// (two passes over bases in cache, instead of shift-and over every needle).
    Split(ExactEngine, MaskEngine),
    Bits(ShiftAnd),
    /// Up to K mismatches: seeded needles in one table, the others in shift-and words.
    Approx {
        bits: ApproxBits,
        seeds: Option<SeedIndex>,
    },
}

impl Engine {
    /// Builds the fastest engine that is exact for `needles`.
    pub fn new(
        needles: Vec<Needle>,
        case_sensitive: bool,
        matches: &dyn Fn(u8, u8) -> bool,
    ) -> Self {
        let (iupac, plain): (Vec<Needle>, Vec<Needle>) = needles
            .iter()
            .cloned()
            .partition(|needle| !is_plain(&needle.letters, case_sensitive));
        if !iupac.is_empty() {
            if let Some(masks) = MaskEngine::new(&needles, case_sensitive) {
                return Engine::Masks(masks);
            }
            if let Some(masks) = MaskEngine::new(&iupac, case_sensitive) {
                if let Some(exact) = ExactEngine::new(&plain, case_sensitive) {
                    return Engine::Split(exact, masks);
                }
            }
        }
        match ExactEngine::new(&needles, case_sensitive) {
            Some(exact) => Engine::Exact(exact),
            None => Engine::Bits(ShiftAnd::new(needles, matches)),
        }
    }

    /// Builds the engine for up to `max_mismatches` (at least 1) substitutions.
    ///
    /// `Auto` seeds every seedable needle once the needles fill more than two shift-and words
    /// (more than about three 20-mers on both strands): below that the bit-parallel scan costs a
    /// few operations per byte, above it its cost grows with every pattern while a seed lookup
    /// stays one table access per byte plus the candidates. Needles that cannot be seeded (an
    /// `N`, a case-sensitive search, parts shorter than 4 letters) always use shift-and.
    pub fn approximate(
        needles: Vec<Needle>,
        max_mismatches: u32,
        kernel: MismatchKernel,
        case_sensitive: bool,
        matches: &dyn Fn(u8, u8) -> bool,
    ) -> Self {
        let shortest = needles.iter().map(|n| n.letters.len()).min().unwrap_or(0);
        let seed_len = approx::seed_len(shortest, max_mismatches);
        let letters: usize = needles.iter().map(|n| n.letters.len().min(WORD_BITS)).sum();
        let want_seeds = match kernel {
            MismatchKernel::Bits => false,
            MismatchKernel::Seeds => true,
            MismatchKernel::Auto => letters > 2 * WORD_BITS,
        };
        let (seeded, plain): (Vec<Needle>, Vec<Needle>) = needles.into_iter().partition(|n| {
            want_seeds && !case_sensitive && approx::seedable(n, seed_len, max_mismatches)
        });
        let seeds = (!seeded.is_empty()).then(|| SeedIndex::new(seeded, seed_len, max_mismatches));
        Engine::Approx {
            bits: ApproxBits::new(plain, max_mismatches, matches),
            seeds,
        }
    }

    /// How the needles of a search with mismatches are split between the kernels; `None` for
    /// the exact engines.
    pub fn kernel_split(&self) -> Option<KernelSplit> {
        match self {
            Engine::Approx { bits, seeds } => Some(KernelSplit {
                seeded: seeds.as_ref().map_or(0, SeedIndex::needle_count),
                bit_parallel: bits.needle_count(),
            }),
            _ => None,
        }
    }
}

/// Distinct needle strings, each with the (pattern, strand) pairs that share it.
#[derive(Clone, Debug)]
struct Distinct {
    bytes: Vec<u8>,
    owners: Vec<(u32, Strand)>,
}

/// Teddy over exact A/C/G/T needles, on bases normalised so case and U/T do not matter.
#[derive(Clone, Debug)]
pub(crate) struct ExactEngine {
    searcher: packed::Searcher,
    distinct: Vec<Distinct>,
    case_sensitive: bool,
}

impl ExactEngine {
    fn new(needles: &[Needle], case_sensitive: bool) -> Option<Self> {
        if !needles.iter().all(|n| is_plain(&n.letters, case_sensitive)) {
            return None;
        }
        let mut distinct: Vec<Distinct> = Vec::new();
        for needle in needles {
            let bytes: Vec<u8> = needle.letters.iter().map(|&b| u_to_t(b)).collect();
            let owner = (needle.pattern, needle.strand);
            match distinct.iter_mut().find(|d| d.bytes == bytes) {
                Some(existing) => existing.owners.push(owner),
                None => distinct.push(Distinct {
                    bytes,
                    owners: vec![owner],
                }),
            }
        }
        let searcher = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(distinct.iter().map(|d| &d.bytes))
            .build()?;
        // Teddy may still fall back to Rabin-Karp on short haystacks; that is exact too.
        Some(Self {
            searcher,
            distinct,
            case_sensitive,
        })
    }

    /// Reports matches starting before `owned` in `bases`, normalising them first if needed.
    fn search_any(&self, bases: &[u8], owned: usize, scratch: &mut Vec<u8>, sink: &mut Sink<'_>) {
        if self.needs_normalizing(bases) {
            self.normalize(bases, scratch);
            self.search(scratch, owned, sink);
        } else {
            self.search(bases, owned, sink);
        }
    }

    /// Reports matches starting before `owned` in `bases`, which must already be normalised.
    fn search(&self, bases: &[u8], owned: usize, sink: &mut Sink<'_>) {
        let mut at = 0;
        while at < owned {
            let span = aho_corasick::Span {
                start: at,
                end: bases.len(),
            };
            let Some(found) = self.searcher.find_in(bases, span) else {
                break;
            };
            let start = found.start();
            if start >= owned {
                break;
            }
            for distinct in &self.distinct {
                if bases[start..].starts_with(&distinct.bytes) {
                    for &(pattern, strand) in &distinct.owners {
                        sink(start, pattern, strand, 0);
                    }
                }
            }
            at = start + 1;
        }
    }

    /// Whether `bases` may contain anything normalisation would change (a U, or a lower-case
    /// letter when case-insensitive). Every such byte is above `T` (`U` is 0x55, lower case
    /// 0x61 and up) while A, C, G, T and N are not, so one maximum over the bases, which
    /// vectorises to one instruction per 16 bytes, answers it; other letters above `T` (W, Y)
    /// only cost a normalisation that changes nothing.
    fn needs_normalizing(&self, bases: &[u8]) -> bool {
        bases
            .chunks(1 << 14)
            .any(|piece| piece.iter().fold(0u8, |high, &byte| high.max(byte)) > b'T')
    }

    /// Copies `bases` into `out` with U read as T and, unless case-sensitive, letters upper-cased.
    fn normalize(&self, bases: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if self.case_sensitive {
            out.extend(bases.iter().map(|&b| u_to_t(b)));
        } else {
            // `& 0xDF` upper-cases letters; a non-letter never becomes A, C, G or T this way.
            out.extend(bases.iter().map(|&b| u_to_t(b & 0xDF)));
        }
    }
}

/// Whether compiled needle letters are all plain bases (no IUPAC code), which Teddy can take.
fn is_plain(letters: &[u8], case_sensitive: bool) -> bool {
    letters.iter().all(|b| match case_sensitive {
        true => matches!(
            b,
            b'A' | b'C' | b'G' | b'T' | b'a' | b'c' | b'g' | b't' | b'U' | b'u'
        ),
        false => matches!(b, b'A' | b'C' | b'G' | b'T' | b'U'),
    })
}

fn u_to_t(byte: u8) -> u8 {
    match byte {
        b'U' => b'T',
        b'u' => b't',
        other => other,
    }
}

/// Bit-parallel matcher for any IUPAC needles.
#[derive(Clone, Debug)]
pub(crate) struct ShiftAnd {
    needles: Vec<Needle>,
    words: Vec<Word>,
}

impl ShiftAnd {
    fn new(needles: Vec<Needle>, matches: &dyn Fn(u8, u8) -> bool) -> Self {
        let words = pack_words(&needles, matches);
        Self { needles, words }
    }

    fn search(&self, bases: &[u8], owned: usize, verify: &Verify<'_>, sink: &mut Sink<'_>) {
        for word in &self.words {
            let mut state = 0u64;
            for (at, &byte) in bases.iter().enumerate() {
                state = ((state << 1) | word.starts) & word.table[byte as usize];
                if state & word.ends == 0 {
                    continue;
                }
                for &(end_bit, prefix_len, index) in &word.members {
                    if state & (1 << end_bit) == 0 {
                        continue;
                    }
                    let start = at + 1 - prefix_len;
                    let needle = &self.needles[index];
                    if start < owned
                        && (needle.letters.len() == prefix_len
                            || verify(needle, start, 0).is_some())
                    {
                        sink(start, needle.pattern, needle.strand, 0);
                    }
                }
            }
        }
    }
}

/// Runs `engine` over one chunk's bases; `scratch` holds normalised bases when needed.
pub(crate) fn run(
    engine: &Engine,
    bases: &[u8],
    owned: usize,
    verify: &Verify<'_>,
    scratch: &mut Vec<u8>,
    sink: &mut Sink<'_>,
) {
    match engine {
        Engine::Exact(exact) => exact.search_any(bases, owned, scratch, sink),
        Engine::Masks(masks) => masks.search(bases, owned, verify, sink),
        Engine::Split(exact, masks) => {
            exact.search_any(bases, owned, scratch, sink);
            masks.search(bases, owned, verify, sink);
        }
        Engine::Bits(bits) => bits.search(bases, owned, verify, sink),
        Engine::Approx { bits, seeds } => {
            if !bits.is_empty() {
                bits.search(bases, owned, verify, sink);
            }
            if let Some(seeds) = seeds {
                seeds.search(bases, owned, sink);
            }
        }
    }
}

/// Counts the matches of `engine` over one chunk's bases, calling `add(pattern, strand, n)`;
/// the same totals as [`run`], summed without a call per match where the engine can.
pub(crate) fn count(
    engine: &Engine,
    bases: &[u8],
    owned: usize,
    verify: &Verify<'_>,
    scratch: &mut Vec<u8>,
    add: &mut dyn FnMut(u32, Strand, u64),
) {
    match engine {
        Engine::Masks(masks) => masks.count(bases, owned, verify, add),
        other => run(
            other,
            bases,
            owned,
            verify,
            scratch,
            &mut |_, pattern, strand, _| add(pattern, strand, 1),
        ),
    }
}

/// Converts a chunk-relative match into a `Hit`.
pub(crate) fn hit(
    record_offset: u64,
    start: usize,
    pattern: u32,
    strand: Strand,
    mismatches: u32,
) -> Hit {
    Hit {
        start: record_offset + start as u64,
        pattern,
        strand,
        mismatches,
    }
}
