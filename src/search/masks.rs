//! Exact search of a few IUPAC needles, 64 positions at a time.
//!
//! Each 64-base block is turned into one bit mask per base (bit `i` set when base `i` is that
//! letter, case ignored, U read as T): four SIMD compares and move-masks per 16 bytes. A needle
//! letter accepting a set of bases is the OR of their masks, and a needle matches at start `s`
//! when, for every letter offset `j`, bit `s + j` of its letter's mask is set: one shift and one
//! AND per letter for all 64 starts of the block at once. The AND chain usually empties after
//! three or four letters, so the work per block barely grows with needle length, and an IUPAC
//! code or the reverse-complement strand costs no more than a plain letter (shift-and instead
//! pays a dependent chain of operations per byte, per 64 needle letters).
//!
//! Used for exact, case-insensitive searches whose distinct needles are few (see
//! [`MaskEngine::new`]); `N` letters accept any byte and are skipped by the filter.

use super::approx::{Sink, Verify};
use super::needle::{iupac_bases, Needle, Strand};

/// Most distinct needles one search runs through this engine: each costs a few operations per
/// 64 bases, so past this a single automaton (Teddy, shift-and words) is cheaper.
pub(crate) const MAX_NEEDLES: usize = 16;

/// Starts per block: one bit each in a `u64`.
const BLOCK: usize = 64;

/// One distinct needle string and every (pattern, strand) that shares it.
#[derive(Clone, Debug)]
struct MaskNeedle {
    /// A needle with these letters, for the reference check of letters past the filter.
    needle: Needle,
    len: usize,
    /// (offset, base set) of the letters the filter checks first, all of them without a branch:
    /// enough letters that random sequence rarely survives them, so the test after them is
    /// well predicted (a branch per letter mispredicts about once per needle and block).
    head: Vec<(u32, u8)>,
    /// The other letters the filter checks, each followed by a test for an empty mask. Offsets
    /// are below 64, `N` is skipped, and letters accepting fewer bases come first.
    tail: Vec<(u32, u8)>,
    /// Whether letters past offset 63 exist and need the reference check.
    verify_tail: bool,
    owners: Vec<(u32, Strand)>,
}

/// The engine: distinct needles and which base sets their letters use.
#[derive(Clone, Debug)]
pub(crate) struct MaskEngine {
    needles: Vec<MaskNeedle>,
    /// Base sets (bit 1 A, 2 C, 4 G, 8 T) some checked letter accepts.
    sets: Vec<u8>,
    /// Whether base mask A, C, G, T is needed at all.
    bases_used: [bool; 4],
}

impl MaskEngine {
    /// The engine for `needles`, or `None` when it does not apply: a case-sensitive search (a
    /// letter's case then matters), or more than [`MAX_NEEDLES`] distinct needles.
    pub fn new(needles: &[Needle], case_sensitive: bool) -> Option<Self> {
        if case_sensitive {
            return None;
        }
        let mut distinct: Vec<MaskNeedle> = Vec::new();
        for needle in needles {
            let owner = (needle.pattern, needle.strand);
            let letters: Vec<u8> = needle.letters.iter().map(|&b| iupac_bases(b)).collect();
            if letters.contains(&0) {
                return None;
            }
            if let Some(existing) = distinct
                .iter_mut()
                .find(|d| same_letters(&d.needle.letters, &needle.letters))
            {
                existing.owners.push(owner);
                continue;
            }
            let mut checks: Vec<(u32, u8)> = letters
                .iter()
                .enumerate()
                .take(BLOCK)
                .filter(|&(_, &set)| set != 15)
                .map(|(offset, &set)| (offset as u32, set))
                .collect();
            checks.sort_by_key(|&(offset, set)| (set.count_ones(), offset));
            // Random bases pass a letter accepting k of 4 bases with probability k/4; the head
            // ends once fewer than one start in 16 of a block is expected to survive it.
            let mut survivors = BLOCK as f64;
            let head_len = checks
                .iter()
                .take_while(|&&(_, set)| {
                    let more = survivors >= 1.0 / 16.0;
                    survivors *= f64::from(set.count_ones()) / 4.0;
                    more
                })
                .count();
            let tail = checks.split_off(head_len);
            distinct.push(MaskNeedle {
                needle: needle.clone(),
                len: letters.len(),
                head: checks,
                tail,
                verify_tail: letters.len() > BLOCK,
                owners: vec![owner],
            });
        }
        if distinct.is_empty() || distinct.len() > MAX_NEEDLES {
            return None;
        }
        let mut sets: Vec<u8> = distinct
            .iter()
            .flat_map(|d| d.head.iter().chain(&d.tail).map(|&(_, set)| set))
            .collect();
        sets.sort_unstable();
        sets.dedup();
        let mut bases_used = [false; 4];
        for &set in &sets {
            for (base, used) in bases_used.iter_mut().enumerate() {
                *used |= set & (1 << base) != 0;
            }
        }
        Some(Self {
            needles: distinct,
            sets,
            bases_used,
        })
    }

    /// Reports every needle match starting before `owned` in `bases`.
    pub fn search(&self, bases: &[u8], owned: usize, verify: &Verify<'_>, sink: &mut Sink<'_>) {
        self.scan(bases, owned, &mut |needle, first, mut found| {
            while found != 0 {
                let start = first + found.trailing_zeros() as usize;
                found &= found - 1;
                if needle.verify_tail && verify(&needle.needle, start, 0).is_none() {
                    continue;
                }
                for &(pattern, strand) in &needle.owners {
                    sink(start, pattern, strand, 0);
                }
            }
        });
    }

    /// Counts the matches starting before `owned` in `bases`, calling `add(pattern, strand, n)`:
    /// a population count per block instead of a call per match, which matters for short IUPAC
    /// patterns that match every few hundred bases.
    pub fn count(
        &self,
        bases: &[u8],
        owned: usize,
        verify: &Verify<'_>,
        add: &mut dyn FnMut(u32, Strand, u64),
    ) {
        self.scan(bases, owned, &mut |needle, first, mut found| {
            if needle.verify_tail {
                let mut verified = 0;
                while found != 0 {
                    let start = first + found.trailing_zeros() as usize;
                    found &= found - 1;
                    verified += u64::from(verify(&needle.needle, start, 0).is_some());
                }
                found = verified;
            } else {
                found = u64::from(found.count_ones());
            }
            if found > 0 {
                for &(pattern, strand) in &needle.owners {
                    add(pattern, strand, found);
                }
            }
        });
    }

    /// Calls `report(needle, block start, starts)` for each block where the filter passes some
    /// owned starts (bit `i` of `starts`: position `block start + i`).
    fn scan(&self, bases: &[u8], owned: usize, report: &mut dyn FnMut(&MaskNeedle, usize, u64)) {
        let owned = owned.min(bases.len());
        if owned == 0 {
            return;
        }
        let blocks = owned.div_ceil(BLOCK);
        // Class masks of this block and the next, alternating rows so nothing is copied.
        let mut rows = [[0u64; 16]; 2];
        self.classes(bases, 0, &mut rows[0]);
        for block in 0..blocks {
            let [even, odd] = &mut rows;
            let (current, next) = if block % 2 == 0 {
                (&*even, odd)
            } else {
                (&*odd, even)
            };
            self.classes(bases, (block + 1) * BLOCK, next);
            let next = &*next;
            let first = block * BLOCK;
            // Starts in this block that are owned and leave room for the whole needle.
            let owned_here = owned - first;
            let owned_bits = if owned_here >= BLOCK {
                u64::MAX
            } else {
                (1u64 << owned_here) - 1
            };
            for needle in &self.needles {
                let room = bases.len() - first;
                if room < needle.len {
                    continue;
                }
                let room_bits = match room - needle.len + 1 {
                    fit if fit >= BLOCK => u64::MAX,
                    fit => (1u64 << fit) - 1,
                };
                let mut found = owned_bits & room_bits;
                for &(offset, set) in &needle.head {
                    let set = usize::from(set & 15);
                    found &= window(current[set], next[set], offset);
                }
                if found == 0 {
                    continue;
                }
                for &(offset, set) in &needle.tail {
                    let set = usize::from(set & 15);
                    found &= window(current[set], next[set], offset);
                    if found == 0 {
                        break;
                    }
                }
                if found != 0 {
                    report(needle, first, found);
                }
            }
        }
    }

    /// Writes, per base set in use, the mask of the 64 positions from `from` into `classes`
    /// (0 past the end of `bases`); entries of other sets are left as they are, never read.
    fn classes(&self, bases: &[u8], from: usize, classes: &mut [u64; 16]) {
        let masks = match bases.get(from..from + BLOCK) {
            Some(block) => base_masks(block, self.bases_used),
            None if from >= bases.len() => [0; 4],
            None => {
                let mut padded = [0u8; BLOCK];
                let tail = &bases[from..];
                padded[..tail.len()].copy_from_slice(tail);
                base_masks(&padded, self.bases_used)
            }
        };
        for &set in &self.sets {
            let mut mask = 0;
            for (base, bits) in masks.iter().enumerate() {
                if set & (1 << base) != 0 {
                    mask |= bits;
                }
            }
            classes[usize::from(set & 15)] = mask;
        }
    }
}

/// Whether two compiled needles accept the same bases letter by letter.
fn same_letters(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| iupac_bases(x) == iupac_bases(y))
}

/// Bits `offset..offset + 64` of the 128-bit mask `high:low`, for `offset` below 64. Plain
/// shifts (the second split so that offset 0 shifts `high` out entirely): a double-width shift
/// costs several times more on some processors.
#[inline(always)]
fn window(low: u64, high: u64, offset: u32) -> u64 {
    (low >> offset) | ((high << 1) << (63 - offset))
}

/// For 64 bytes, the masks of A, C, G and T (U counts as T; case ignored); a base not `used`
/// is left 0.
#[cfg(target_arch = "x86_64")]
fn base_masks(block: &[u8], used: [bool; 4]) -> [u64; 4] {
    use safe_arch::{
        bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let splat = |byte: u8| set_splat_i8_m128i(byte as i8);
    let upper = splat(0xDF);
    let (a, c, g, t, u) = (
        splat(b'A'),
        splat(b'C'),
        splat(b'G'),
        splat(b'T'),
        splat(b'U'),
    );
    let bits = |mask: m128i| u64::from(move_mask_i8_m128i(mask) as u16);
    let mut out = [0u64; 4];
    for (quarter, bytes) in block.chunks_exact(16).enumerate() {
        let mut lane = [0u8; 16];
        lane.copy_from_slice(bytes);
        let x = bitand_m128i(m128i::from(lane), upper);
        let shift = 16 * quarter;
        if used[0] {
            out[0] |= bits(cmp_eq_mask_i8_m128i(x, a)) << shift;
        }
        if used[1] {
            out[1] |= bits(cmp_eq_mask_i8_m128i(x, c)) << shift;
        }
        if used[2] {
            out[2] |= bits(cmp_eq_mask_i8_m128i(x, g)) << shift;
        }
        if used[3] {
            let either = bitor_m128i(cmp_eq_mask_i8_m128i(x, t), cmp_eq_mask_i8_m128i(x, u));
            out[3] |= bits(either) << shift;
        }
    }
    out
}

/// Portable version of the above.
#[cfg(not(target_arch = "x86_64"))]
fn base_masks(block: &[u8], used: [bool; 4]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (at, &byte) in block.iter().enumerate() {
        let bit = 1u64 << at;
        match byte & 0xDF {
            b'A' => out[0] |= bit,
            b'C' => out[1] |= bit,
            b'G' => out[2] |= bit,
            b'T' | b'U' => out[3] |= bit,
            _ => {}
        }
    }
    for (mask, &wanted) in out.iter_mut().zip(&used) {
        if !wanted {
            *mask = 0;
        }
    }
    out
}
