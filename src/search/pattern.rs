//! Patterns: validated IUPAC nucleotide strings, compiled once into a `PatternSet`.

use thiserror::Error;

use super::matcher::Engine;
use super::needle::Needle;
pub use super::needle::{iupac_bases, Strand};

/// Which strands a search covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrandMode {
    /// Only the pattern as written.
    #[default]
    Forward,
    /// The pattern and its reverse complement.
    Both,
}

/// Most mismatches a search allows (mismatch counts are small numbers in every kernel).
pub const MAX_MISMATCHES: u32 = 16;

/// Which matcher a search with mismatches uses; `Auto` except in tests and benchmarks that
/// compare the kernels. The choice never changes the result, only the speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MismatchKernel {
    /// Bit-parallel for few patterns, pigeonhole seeds for many.
    #[default]
    Auto,
    /// Bit-parallel shift-and with one state word per mismatch level, for every needle.
    Bits,
    /// Pigeonhole seeds for every needle that allows them (others fall back to `Bits`).
    Seeds,
}

impl MismatchKernel {
    fn is_auto(&self) -> bool {
        *self == MismatchKernel::Auto
    }
}

/// How a search with mismatches shares its needles (one per pattern and strand searched) between
/// the two kernels, as [`PatternSet::mismatch_kernels`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSplit {
    /// Needles found through the pigeonhole seed table.
    pub seeded: usize,
    /// Needles found by bit-parallel shift-and.
    pub bit_parallel: usize,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Options that change what matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchOptions {
    /// Forward only, or both strands.
    pub strand: StrandMode,
    /// When false (the default), soft-masked lowercase bases match too.
    pub case_sensitive: bool,
    /// Most substitutions (Hamming distance) a match may have; 0 for exact search.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_mismatches: u32,
    /// The matcher used when `max_mismatches > 0`.
    #[serde(default, skip_serializing_if = "MismatchKernel::is_auto")]
    pub kernel: MismatchKernel,
}

/// A named pattern as the user gave it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pattern {
    /// Name shown in output (seqkit's patternName); defaults to the sequence itself.
    pub name: String,
    /// The pattern's letters, upper-cased, A/C/G/T or IUPAC codes.
    pub sequence: String,
}

/// Why a pattern was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatternError {
    /// No pattern at all.
    #[error("no pattern given: pass --pattern SEQ (or --patterns FILE)")]
    NoPatterns,
    /// An empty pattern string.
    #[error("pattern {name:?} is empty")]
    Empty {
        /// The pattern's name.
        name: String,
    },
    /// A letter outside A, C, G, T and the IUPAC codes.
    #[error("pattern {pattern:?}: {letter} is not a nucleotide or IUPAC code (A C G T U R Y S W K M B D H V N)")]
    BadLetter {
        /// The pattern as given.
        pattern: String,
        /// The offending character.
        letter: char,
    },
    /// So many mismatches that (nearly) every position would match.
    #[error(
        "pattern {name:?} ({length} bases) with up to {max_mismatches} mismatches: every position \
         would match; a pattern of {length} bases allows at most {allowed} (fewer than half its length)"
    )]
    TooManyMismatches {
        /// The pattern's name.
        name: String,
        /// Its length.
        length: usize,
        /// The mismatches asked for.
        max_mismatches: u32,
        /// The most its length allows.
        allowed: usize,
    },
    /// More mismatches than any pattern may have.
    #[error("{max_mismatches} mismatches: at most {MAX_MISMATCHES} are supported")]
    MismatchLimit {
        /// The mismatches asked for.
        max_mismatches: u32,
    },
}

/// Bit set of a *sequence* letter: only A, C, G, T and U stand for bases; anything else is 0.
fn iupac_bases_strict(base: u8) -> u8 {
    match base.to_ascii_uppercase() {
        b'A' => 1,
        b'C' => 2,
        b'G' => 4,
        b'T' | b'U' => 8,
        _ => 0,
    }
}

/// The IUPAC complement of a pattern letter (upper case in, upper case out).
pub fn complement(code: u8) -> u8 {
    match code {
        b'A' => b'T',
        b'C' => b'G',
        b'G' => b'C',
        b'T' | b'U' => b'A',
        b'R' => b'Y',
        b'Y' => b'R',
        b'K' => b'M',
        b'M' => b'K',
        b'B' => b'V',
        b'V' => b'B',
        b'D' => b'H',
        b'H' => b'D',
        other => other, // S, W, N are their own complements
    }
}

/// Patterns compiled for searching, with the options that apply to all of them.
#[derive(Clone, Debug)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    /// Per pattern, per strand (index 0 forward, 1 reverse), the pattern letters to compare.
    compiled: Vec<[Vec<u8>; 2]>,
    options: SearchOptions,
    strands: Vec<Strand>,
    engine: Engine,
}

impl PatternSet {
    /// Validates and compiles `patterns`.
    pub fn new(patterns: Vec<Pattern>, options: SearchOptions) -> Result<Self, PatternError> {
        if patterns.is_empty() {
            return Err(PatternError::NoPatterns);
        }
        let max_mismatches = options.max_mismatches;
        if max_mismatches > MAX_MISMATCHES {
            return Err(PatternError::MismatchLimit { max_mismatches });
        }
        let mut normalized = Vec::with_capacity(patterns.len());
        let mut compiled = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if pattern.sequence.is_empty() {
                return Err(PatternError::Empty { name: pattern.name });
            }
            if let Some(letter) = pattern
                .sequence
                .chars()
                .find(|c| !c.is_ascii() || iupac_bases(*c as u8) == 0)
            {
                return Err(PatternError::BadLetter {
                    pattern: pattern.sequence,
                    letter,
                });
            }
            // At K >= length / 2 a pattern matches a large share of all positions (any 2-mer is
            // within 1 of a quarter of the genome), so the output would be the genome itself.
            let length = pattern.sequence.len();
            if 2 * max_mismatches as usize >= length {
                return Err(PatternError::TooManyMismatches {
                    name: pattern.name,
                    length,
                    max_mismatches,
                    allowed: (length - 1) / 2,
                });
            }
            let forward: Vec<u8> = if options.case_sensitive {
                pattern.sequence.bytes().collect()
            } else {
                pattern
                    .sequence
                    .bytes()
                    .map(|b| b.to_ascii_uppercase())
                    .collect()
            };
            let reverse: Vec<u8> = forward
                .iter()
                .rev()
                .map(|b| {
                    let c = complement(b.to_ascii_uppercase());
                    if b.is_ascii_lowercase() {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect();
            compiled.push([forward, reverse]);
            normalized.push(pattern);
        }
        let strands = match options.strand {
            StrandMode::Forward => vec![Strand::Forward],
            StrandMode::Both => vec![Strand::Forward, Strand::Reverse],
        };
        let mut needles = Vec::new();
        for (index, letters) in compiled.iter().enumerate() {
            for &strand in &strands {
                needles.push(Needle {
                    pattern: index as u32,
                    strand,
                    letters: letters[strand as usize].clone(),
                });
            }
        }
        let case_sensitive = options.case_sensitive;
        let matches = |code, base| letter_matches(code, base, case_sensitive);
        let engine = if max_mismatches == 0 {
            Engine::new(needles, case_sensitive, &matches)
        } else {
            Engine::approximate(
                needles,
                max_mismatches,
                options.kernel,
                case_sensitive,
                &matches,
            )
        };
        Ok(Self {
            patterns: normalized,
            compiled,
            options,
            strands,
            engine,
        })
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The options the set was built with.
    pub fn options(&self) -> SearchOptions {
        self.options
    }

    /// The strands searched.
    pub fn strands(&self) -> &[Strand] {
        &self.strands
    }

    /// Length of the longest pattern.
    pub fn max_len(&self) -> usize {
        self.patterns
            .iter()
            .map(|p| p.sequence.len())
            .max()
            .unwrap_or(0)
    }

    /// Bases a chunk must carry after its owned range: `max_len() - 1`.
    pub fn overlap(&self) -> usize {
        self.max_len().saturating_sub(1)
    }

    /// Whether pattern `index` on `strand` matches `bases` at `start`.
    pub fn matches_at(&self, index: usize, strand: Strand, bases: &[u8], start: usize) -> bool {
        let letters = &self.compiled[index][strand as usize];
        let Some(window) = bases.get(start..start + letters.len()) else {
            return false;
        };
        window
            .iter()
            .zip(letters)
            .all(|(&base, &code)| letter_matches(code, base, self.options.case_sensitive))
    }

    /// How many letters of pattern `index` on `strand` differ from `bases` at `start`, if at
    /// most `limit` (`None` also when the pattern does not fit).
    pub fn mismatches_at(
        &self,
        index: usize,
        strand: Strand,
        bases: &[u8],
        start: usize,
        limit: u32,
    ) -> Option<u32> {
        let letters = &self.compiled[index][strand as usize];
        let window = bases.get(start..start + letters.len())?;
        let mut mismatches = 0;
        for (&base, &code) in window.iter().zip(letters) {
            if !letter_matches(code, base, self.options.case_sensitive) {
                mismatches += 1;
                if mismatches > limit {
                    return None;
                }
            }
        }
        Some(mismatches)
    }

    /// Which kernel the needles of a search with mismatches use; `None` for an exact search.
    /// `MismatchKernel::Seeds` is a request, not a guarantee (a needle with an `N`, a
    /// case-sensitive search or seed parts under 4 letters fall back to shift-and), so a test
    /// or benchmark that means to exercise one kernel checks here that it did.
    pub fn mismatch_kernels(&self) -> Option<KernelSplit> {
        self.engine.kernel_split()
    }

    /// The compiled matcher.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Whether pattern letter `code` (as compiled) accepts sequence byte `base`.
pub(crate) fn letter_matches(code: u8, base: u8, case_sensitive: bool) -> bool {
    if case_sensitive && base.is_ascii_lowercase() != code.is_ascii_lowercase() {
        return false;
    }
    let allowed = iupac_bases(code);
    // N matches any sequence letter; other codes match only the bases they stand for,
    // so an N run (or any non-ACGT letter) in the sequence is matched by N alone.
    allowed == 15 || allowed & iupac_bases_strict(base) != 0
}
