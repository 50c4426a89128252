//! Stored genomes packed two bits a base, after UCSC `.2bit` (`T C A G` = `0 1 2 3`, first base
//! in the high bits), cut into blocks of a fixed number of bases. What two bits cannot say is
//! kept beside each block as its exceptions: N runs, lower-case runs, and every other byte
//! exactly, with its position. Any range decodes to exactly the bytes appended, and a range
//! read needs only the packed bytes of its range and the exceptions of the blocks it touches.

use std::ops::Range;

use thiserror::Error;

use crate::search::twobit::{base_code, CODE_LETTERS};

/// How a stored object's bytes are kept, as its record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredFormat {
    /// Byte for byte: command inputs, and genomes stored before genomes were packed.
    Raw,
    /// Two bits a base in blocks with their exceptions: genomes.
    Packed,
}

impl StoredFormat {
    /// `raw` or `packed`, as records store it.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredFormat::Raw => "raw",
            StoredFormat::Packed => "packed",
        }
    }

    /// The format a record's word names: a record without one (stored before the word existed)
    /// is raw.
    pub fn parse(word: Option<&str>) -> Result<StoredFormat, PackedError> {
        match word {
            None | Some("raw") => Ok(StoredFormat::Raw),
            Some("packed") => Ok(StoredFormat::Packed),
            Some(other) => Err(PackedError(format!(
                "stored format {other:?} is not one this version reads; remove the genome and \
                 upload it again"
            ))),
        }
    }
}

/// Stored data that does not decode: a block or its exceptions were damaged or cut short.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("packed genome data is damaged: {0}")]
pub struct PackedError(String);

/// One encoded block: its bases four to a byte (the last byte padded with T), and its
/// exceptions (see [`Exceptions`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedBlock {
    /// Bases in the block: the block size, except for a genome's last block.
    pub bases: u64,
    /// The packed bases.
    pub packed: Vec<u8>,
    /// The encoded exceptions.
    pub exceptions: Vec<u8>,
}

/// Bytes holding `bases` packed bases.
pub fn packed_len(bases: u64) -> u64 {
    bases.div_ceil(4)
}

/// Bits of a byte's class: its 2-bit code in the low bits, then what the code does not say.
const CODE_MASK: u8 = 0b11;
/// An N, either case.
const IS_N: u8 = 1 << 2;
/// A lower-case letter.
const IS_LOWER: u8 = 1 << 3;
/// Neither A, C, G, T nor N (either case): kept exactly.
const IS_OTHER: u8 = 1 << 4;
/// Any of the above: the byte is an exception.
const EXCEPTIONAL: u8 = IS_N | IS_LOWER | IS_OTHER;

/// The class of every byte value.
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0usize;
    while byte < 256 {
        let upper = (byte as u8).to_ascii_uppercase();
        let mut class = match upper {
            b'A' | b'C' | b'G' | b'T' => 0,
            b'N' => IS_N,
            _ => IS_OTHER,
        };
        class |= base_code(byte as u8);
        if (byte as u8).is_ascii_lowercase() {
            class |= IS_LOWER;
        }
        table[byte] = class;
        byte += 1;
    }
    table
};

/// The four letters of every packed byte.
const UNPACKED: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut byte = 0usize;
    while byte < 256 {
        table[byte] = [
            CODE_LETTERS[(byte >> 6) & 3],
            CODE_LETTERS[(byte >> 4) & 3],
            CODE_LETTERS[(byte >> 2) & 3],
            CODE_LETTERS[byte & 3],
        ];
        byte += 1;
    }
    table
};

/// Packs bases as they are appended and hands back each block once it is full.
pub struct BlockEncoder {
    block_bases: u32,
    /// Bases of the current block so far.
    at: u32,
    packed: Vec<u8>,
    /// Codes of the current byte not yet written (0 to 3), first base in the high bits.
    partial: u8,
    partial_len: u8,
    n_runs: Vec<(u32, u32)>,
    mask_runs: Vec<(u32, u32)>,
    other_positions: Vec<u32>,
    other_bytes: Vec<u8>,
}

impl BlockEncoder {
    /// An encoder of blocks of `block_bases` bases: a positive multiple of 4 (so every block
    /// but the last ends on a byte), at most `u32::MAX` (positions in a block are 32-bit).
    pub fn new(block_bases: u32) -> Self {
        assert!(
            block_bases > 0 && block_bases % 4 == 0,
            "a block holds a positive multiple of 4 bases"
        );
        Self {
            block_bases,
            at: 0,
            packed: Vec::with_capacity(block_bases as usize / 4),
            partial: 0,
            partial_len: 0,
            n_runs: Vec::new(),
            mask_runs: Vec::new(),
            other_positions: Vec::new(),
            other_bytes: Vec::new(),
        }
    }

    /// Appends bases; every block they complete is pushed onto `done`.
    pub fn push(&mut self, mut bases: &[u8], done: &mut Vec<PackedBlock>) {
        while !bases.is_empty() {
            let room = (self.block_bases - self.at) as usize;
            let (now, rest) = bases.split_at(room.min(bases.len()));
            self.push_in_block(now);
            bases = rest;
            if self.at == self.block_bases {
                done.push(self.take_block());
            }
        }
    }

    /// The last block, if it has any bases.
    pub fn finish(mut self) -> Option<PackedBlock> {
        (self.at > 0).then(|| self.take_block())
    }

    /// Appends bases that fit in the current block: sixteen at a time while they are all
    /// upper-case A, C, G or T (almost every base of a real genome), four at a time while
    /// nothing in them is an exception, one by one otherwise.
    fn push_in_block(&mut self, bases: &[u8]) {
        let mut rest = bases;
        while self.partial_len != 0 {
            let Some((&base, tail)) = rest.split_first() else {
                return;
            };
            self.push_one(base);
            rest = tail;
        }
        let mut sixteens = rest.chunks_exact(16);
        for sixteen in &mut sixteens {
            match pack_sixteen(sixteen) {
                Some(packed) => {
                    self.packed.extend_from_slice(&packed);
                    self.at += 16;
                }
                None => self.push_fours(sixteen),
            }
        }
        self.push_fours(sixteens.remainder());
    }

    /// Appends bases, the byte before them complete: four at a time while nothing in them is an
    /// exception, one by one otherwise.
    fn push_fours(&mut self, bases: &[u8]) {
        let mut fours = bases.chunks_exact(4);
        for four in &mut fours {
            let classes = [
                CLASS[usize::from(four[0])],
                CLASS[usize::from(four[1])],
                CLASS[usize::from(four[2])],
                CLASS[usize::from(four[3])],
            ];
            if (classes[0] | classes[1] | classes[2] | classes[3]) & EXCEPTIONAL == 0 {
                self.packed
                    .push(classes[0] << 6 | classes[1] << 4 | classes[2] << 2 | classes[3]);
                self.at += 4;
            } else {
                for &base in four {
                    self.push_one(base);
                }
            }
        }
        for &base in fours.remainder() {
            self.push_one(base);
        }
    }

    fn push_one(&mut self, base: u8) {
        let class = CLASS[usize::from(base)];
        if class & IS_N != 0 {
            extend_run(&mut self.n_runs, self.at);
        }
        if class & IS_LOWER != 0 {
            extend_run(&mut self.mask_runs, self.at);
        }
        if class & IS_OTHER != 0 {
            self.other_positions.push(self.at);
            self.other_bytes.push(base);
        }
        self.partial = self.partial << 2 | (class & CODE_MASK);
        self.partial_len += 1;
        if self.partial_len == 4 {
            self.packed.push(self.partial);
            self.partial = 0;
            self.partial_len = 0;
        }
        self.at += 1;
    }

    /// Closes the current block (its last byte padded with T) and starts the next.
    fn take_block(&mut self) -> PackedBlock {
        if self.partial_len > 0 {
            self.packed
                .push(self.partial << (2 * (4 - self.partial_len)));
            self.partial = 0;
            self.partial_len = 0;
        }
        let exceptions = encode_exceptions(
            &self.n_runs,
            &self.mask_runs,
            &self.other_positions,
            &self.other_bytes,
        );
        let block = PackedBlock {
            bases: u64::from(self.at),
            packed: std::mem::replace(
                &mut self.packed,
                Vec::with_capacity(self.block_bases as usize / 4),
            ),
            exceptions,
        };
        self.at = 0;
        self.n_runs.clear();
        self.mask_runs.clear();
        self.other_positions.clear();
        self.other_bytes.clear();
        block
    }
}

/// The packed byte of four bases given as two 4-bit planes, the low bits of their codes in bits
/// 0-3 and the high bits in bits 4-7 (bit `i` of a plane is base `i`).
const FROM_PLANES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut planes = 0usize;
    while planes < 256 {
        let mut byte = 0u8;
        let mut i = 0;
        while i < 4 {
            let code = ((planes >> i) & 1) | (((planes >> (4 + i)) & 1) << 1);
            byte = byte << 2 | code as u8;
            i += 1;
        }
        table[planes] = byte;
        planes += 1;
    }
    table
};

/// Sixteen bases packed into four bytes, if they are all upper-case A, C, G or T. With SSE2:
/// four compares give each letter's lanes, and two move-masks the two bit planes of the codes
/// (`T C A G` = `0 1 2 3`: the low bit is C or G, the high bit A or G).
#[cfg(target_arch = "x86_64")]
fn pack_sixteen(bases: &[u8]) -> Option<[u8; 4]> {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let mut lane = [0u8; 16];
    lane.copy_from_slice(bases);
    let x = m128i::from(lane);
    let is = |letter: u8| cmp_eq_mask_i8_m128i(x, set_splat_i8_m128i(letter as i8));
    let (a, c, g, t) = (is(b'A'), is(b'C'), is(b'G'), is(b'T'));
    let plain = move_mask_i8_m128i(bitor_m128i(bitor_m128i(a, c), bitor_m128i(g, t)));
    if plain != 0xFFFF {
        return None;
    }
    let low = move_mask_i8_m128i(bitor_m128i(c, g)) as u32;
    let high = move_mask_i8_m128i(bitor_m128i(a, g)) as u32;
    let byte = |i: u32| {
        FROM_PLANES[(((low >> (4 * i)) & 0xF) | (((high >> (4 * i)) & 0xF) << 4)) as usize]
    };
    Some([byte(0), byte(1), byte(2), byte(3)])
}

/// Portable version of the above.
#[cfg(not(target_arch = "x86_64"))]
fn pack_sixteen(bases: &[u8]) -> Option<[u8; 4]> {
    let (mut low, mut high) = (0usize, 0usize);
    for (i, &base) in bases.iter().enumerate() {
        let code = match base {
            b'T' => 0,
            b'C' => 1,
            b'A' => 2,
            b'G' => 3,
            _ => return None,
        };
        low |= (code & 1) << i;
        high |= (code >> 1) << i;
    }
    let byte = |i: usize| FROM_PLANES[((low >> (4 * i)) & 0xF) | (((high >> (4 * i)) & 0xF) << 4)];
    Some([byte(0), byte(1), byte(2), byte(3)])
}

/// Adds `position` to the runs: it lengthens the last run when it follows it.
fn extend_run(runs: &mut Vec<(u32, u32)>, position: u32) {
    match runs.last_mut() {
        Some((start, len)) if *start + *len == position => *len += 1,
        _ => runs.push((position, 1)),
    }
}

/// Encoded exceptions, all integers 32-bit little-endian: the counts of N runs, lower-case runs
/// and other bytes; each N run as (start, length); each lower-case run likewise; the other
/// bytes' positions; the other bytes. Positions count from the block's first base, runs and
/// positions ascending.
fn encode_exceptions(
    n_runs: &[(u32, u32)],
    mask_runs: &[(u32, u32)],
    other_positions: &[u32],
    other_bytes: &[u8],
) -> Vec<u8> {
    let mut blob =
        Vec::with_capacity(12 + 8 * (n_runs.len() + mask_runs.len()) + 5 * other_positions.len());
    for count in [n_runs.len(), mask_runs.len(), other_positions.len()] {
        blob.extend_from_slice(&(count as u32).to_le_bytes());
    }
    for (start, len) in n_runs.iter().chain(mask_runs) {
        blob.extend_from_slice(&start.to_le_bytes());
        blob.extend_from_slice(&len.to_le_bytes());
    }
    for position in other_positions {
        blob.extend_from_slice(&position.to_le_bytes());
    }
    blob.extend_from_slice(other_bytes);
    blob
}

/// A block's exceptions, read in place: a range finds its runs and bytes by binary search, so
/// decoding a few bases of a block costs the same whatever the block holds.
pub struct Exceptions<'a> {
    n_runs: &'a [u8],
    mask_runs: &'a [u8],
    other_positions: &'a [u8],
    other_bytes: &'a [u8],
}

impl<'a> Exceptions<'a> {
    /// The exceptions in `blob` (as a [`BlockEncoder`] wrote them); an error if its length does
    /// not match its counts.
    pub fn parse(blob: &'a [u8]) -> Result<Self, PackedError> {
        let count = |at: usize| -> Result<u64, PackedError> {
            let word = blob
                .get(at..at + 4)
                .ok_or_else(|| PackedError(format!("exceptions of {} bytes", blob.len())))?;
            Ok(u64::from(u32::from_le_bytes([
                word[0], word[1], word[2], word[3],
            ])))
        };
        let (n, mask, other) = (count(0)?, count(4)?, count(8)?);
        let expected = 12 + 8 * (n + mask) + 5 * other;
        if expected != blob.len() as u64 {
            return Err(PackedError(format!(
                "exceptions of {} bytes, but their counts ({n} N runs, {mask} lower-case runs, \
                 {other} other bytes) need {expected}",
                blob.len()
            )));
        }
        let (n, mask, other) = (n as usize, mask as usize, other as usize);
        let (_, rest) = blob.split_at(12);
        let (n_runs, rest) = rest.split_at(8 * n);
        let (mask_runs, rest) = rest.split_at(8 * mask);
        let (other_positions, other_bytes) = rest.split_at(4 * other);
        Ok(Self {
            n_runs,
            mask_runs,
            other_positions,
            other_bytes,
        })
    }

    /// The exceptions of a block with none: what a plain A, C, G, T block holds.
    pub fn none() -> Self {
        Self {
            n_runs: &[],
            mask_runs: &[],
            other_positions: &[],
            other_bytes: &[],
        }
    }
}

/// The 32-bit word at `index` of `words`.
fn word(words: &[u8], index: usize) -> u64 {
    let at = 4 * index;
    u64::from(u32::from_le_bytes([
        words[at],
        words[at + 1],
        words[at + 2],
        words[at + 3],
    ]))
}

/// The runs of `runs` (encoded pairs) that overlap `range`, clipped to it.
fn runs_within(runs: &[u8], range: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
    let count = runs.len() / 8;
    let end_of = |i: usize| word(runs, 2 * i) + word(runs, 2 * i + 1);
    // Runs ascend and never overlap, so their ends ascend too.
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = (low + high) / 2;
        if end_of(middle) <= range.start {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    (low..count)
        .map(move |i| (word(runs, 2 * i), end_of(i)))
        .take_while(move |&(start, _)| start < range.end)
        .map(move |(start, end)| start.max(range.start)..end.min(range.end))
        .filter(|run| run.start < run.end)
}

/// The part of a range that falls in one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    /// The block's index.
    pub block: u64,
    /// The bases wanted, counted from the block's first base.
    pub bases: Range<u64>,
}

impl BlockSpan {
    /// The packed bytes holding the span's bases, counted from the block's first byte.
    pub fn packed_bytes(&self) -> Range<u64> {
        self.bases.start / 4..packed_len(self.bases.end)
    }
}

/// The blocks of `block_bases` bases that the range `offset..offset + len` touches, each with
/// the part of the range it holds, in order.
pub fn block_spans(offset: u64, len: u64, block_bases: u64) -> Vec<BlockSpan> {
    let end = offset.saturating_add(len);
    if len == 0 || block_bases == 0 {
        return Vec::new();
    }
    (offset / block_bases..=(end - 1) / block_bases)
        .map(|block| {
            let start = block * block_bases;
            BlockSpan {
                block,
                bases: offset.max(start) - start..end.min(start + block_bases) - start,
            }
        })
        .collect()
}

/// Decodes a span of a block onto `out`: `packed` holds the span's packed bytes (exactly
/// [`BlockSpan::packed_bytes`]) and `exceptions` the block's exceptions.
pub fn decode_span(
    span: &BlockSpan,
    packed: &[u8],
    exceptions: &Exceptions<'_>,
    out: &mut Vec<u8>,
) -> Result<(), PackedError> {
    let bytes = span.packed_bytes();
    if packed.len() as u64 != bytes.end - bytes.start {
        return Err(PackedError(format!(
            "block {}: {} packed bytes where bases {}..{} need {}",
            span.block,
            packed.len(),
            span.bases.start,
            span.bases.end,
            bytes.end - bytes.start
        )));
    }
    let start = out.len();
    unpack(
        packed,
        (span.bases.start % 4) as usize,
        span.bases_len(),
        out,
    );
    let decoded = &mut out[start..];
    let from = span.bases.start;
    let local = |run: Range<u64>| (run.start - from) as usize..(run.end - from) as usize;
    for run in runs_within(exceptions.n_runs, span.bases.clone()) {
        decoded[local(run)].fill(b'N');
    }
    for run in runs_within(exceptions.mask_runs, span.bases.clone()) {
        decoded[local(run)].make_ascii_lowercase();
    }
    let positions = exceptions.other_positions;
    let count = positions.len() / 4;
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = (low + high) / 2;
        if word(positions, middle) < from {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    for i in low..count {
        let position = word(positions, i);
        if position >= span.bases.end {
            break;
        }
        decoded[(position - from) as usize] = exceptions.other_bytes[i];
    }
    Ok(())
}

impl BlockSpan {
    fn bases_len(&self) -> usize {
        (self.bases.end - self.bases.start) as usize
    }
}

/// Appends `count` letters of `packed`, skipping the first `skip` codes of its first byte.
/// Whole bytes are appended as one iterator of known length, which the standard library
/// writes straight into `out`: no zero-fill of a few MiB before the letters overwrite it.
fn unpack(packed: &[u8], skip: usize, count: usize, out: &mut Vec<u8>) {
    let target = out.len() + count;
    out.reserve(count);
    if let Some((&first, rest)) = packed.split_first() {
        let head = (4 - skip).min(count);
        out.extend_from_slice(&UNPACKED[usize::from(first)][skip..skip + head]);
        let whole = ((count - head) / 4).min(rest.len());
        out.extend(
            rest[..whole]
                .iter()
                .flat_map(|&byte| UNPACKED[usize::from(byte)]),
        );
        if let Some(&last) = rest.get(whole) {
            let letters = (target - out.len()).min(4);
            out.extend_from_slice(&UNPACKED[usize::from(last)][..letters]);
        }
    }
    // Callers check that `packed` holds every letter asked for; were it short, the missing
    // letters read as code 0 rather than leaving `out` shorter than asked.
    out.resize(target, UNPACKED[0][0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every block of `bases`, appended in pieces of `piece` bases.
    fn encode(bases: &[u8], block_bases: u32, piece: usize) -> Vec<PackedBlock> {
        let mut encoder = BlockEncoder::new(block_bases);
        let mut blocks = Vec::new();
        for part in bases.chunks(piece.max(1)) {
            encoder.push(part, &mut blocks);
        }
        blocks.extend(encoder.finish());
        blocks
    }

    /// Decodes `offset..offset + len` from whole stored blocks, as a backend does.
    fn decode(blocks: &[PackedBlock], block_bases: u64, offset: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for span in block_spans(offset, len, block_bases) {
            let block = &blocks[span.block as usize];
            let bytes = span.packed_bytes();
            let packed = &block.packed[bytes.start as usize..bytes.end as usize];
            let exceptions = Exceptions::parse(&block.exceptions).expect("valid exceptions");
            decode_span(&span, packed, &exceptions, &mut out).expect("decodes");
        }
        out
    }

    /// The `.2bit` packing written out by hand: T C A G = 0 1 2 3, anything else T, four to a
    /// byte, first base in the high bits, the last byte padded with T.
    fn naive_packing(bases: &[u8]) -> Vec<u8> {
        bases
            .chunks(4)
            .map(|four| {
                let mut byte = 0u8;
                for i in 0..4 {
                    let code = match four.get(i).map(u8::to_ascii_uppercase) {
                        Some(b'C') => 1,
                        Some(b'A') => 2,
                        Some(b'G') => 3,
                        _ => 0,
                    };
                    byte = byte << 2 | code;
                }
                byte
            })
            .collect()
    }

    /// Every IUPAC letter in both cases, long N and lower-case runs, and bytes no FASTA holds.
    fn every_letter() -> Vec<u8> {
        let mut bases = b"ACGTRYSWKMBDHVNUacgtryswkmbdhvnu-*.".to_vec();
        bases.extend_from_slice(&[b'N'; 37]);
        bases.extend_from_slice(b"acgtnnnnacgtRYacgt");
        bases.extend_from_slice(&[b'n'; 29]);
        bases.extend_from_slice(b"GATTACA\0\xff\x80z");
        bases
    }

    #[test]
    fn every_range_of_every_letter_decodes_to_what_was_appended() {
        let bases = every_letter();
        for block_bases in [4u32, 8, 12, 64, 1 << 20] {
            let blocks = encode(&bases, block_bases, 7);
            assert_eq!(
                blocks.iter().map(|b| b.bases).sum::<u64>(),
                bases.len() as u64
            );
            for offset in 0..bases.len() {
                for len in 0..=bases.len() - offset {
                    assert_eq!(
                        decode(&blocks, u64::from(block_bases), offset as u64, len as u64),
                        &bases[offset..offset + len],
                        "blocks of {block_bases}, bases {offset}+{len}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_bytes_are_the_2bit_packing_and_runs_are_counted_once() {
        let bases = b"ACGTNNNNNNacgtnnRyAC";
        let blocks = encode(bases, 8, 3);
        let packed: Vec<u8> = blocks.iter().flat_map(|b| b.packed.clone()).collect();
        assert_eq!(packed, naive_packing(bases));
        // Block 0: ACGTNNNN: one N run (4, 4), no lower case, nothing else.
        let counts = |blob: &[u8]| -> Vec<u32> {
            blob[..12]
                .chunks(4)
                .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
                .collect()
        };
        assert_eq!(counts(&blocks[0].exceptions), [1, 0, 0]);
        assert_eq!(&blocks[0].exceptions[12..20], &[4, 0, 0, 0, 4, 0, 0, 0]);
        // Block 1: NNacgtnn: N runs at 0 and 6, lower case from 2 to 8.
        assert_eq!(counts(&blocks[1].exceptions), [2, 1, 0]);
        // Block 2: RyAC: R and y kept as they are, y also lower case.
        assert_eq!(counts(&blocks[2].exceptions), [0, 1, 2]);
        assert_eq!(blocks[2].bases, 4);
    }

    #[test]
    fn a_plain_genome_holds_a_quarter_byte_a_base_and_twelve_bytes_a_block() {
        let bases: Vec<u8> = (0..40_000u32)
            .map(|i| b"ACGT"[(i * 7 % 13 % 4) as usize])
            .collect();
        let blocks = encode(&bases, 4096, 1000);
        assert_eq!(blocks.len(), 10);
        for block in &blocks {
            assert_eq!(block.packed.len() as u64, packed_len(block.bases));
            assert_eq!(block.exceptions, [0u8; 12]);
        }
    }

    #[test]
    fn damaged_data_is_an_error_not_a_panic() {
        let blocks = encode(b"ACGTNNNNacgt", 8, 5);
        let mut cut = blocks[0].exceptions.clone();
        cut.pop();
        assert!(Exceptions::parse(&cut).is_err());
        assert!(Exceptions::parse(&[1, 0]).is_err());
        // Counts claiming far more than the blob holds.
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(Exceptions::parse(&huge).is_err());
        let span = &block_spans(0, 8, 8)[0];
        let mut out = Vec::new();
        let short = decode_span(span, &blocks[0].packed[..1], &Exceptions::none(), &mut out);
        assert!(short.is_err());
        // Runs past the block's end are clipped to the range, never written past it.
        let mut wild = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        wild.extend_from_slice(&6u32.to_le_bytes());
        wild.extend_from_slice(&u32::MAX.to_le_bytes());
        let exceptions = Exceptions::parse(&wild).expect("well-formed");
        decode_span(span, &blocks[0].packed, &exceptions, &mut out).expect("decodes");
        // Bases 4 and 5 are the packed bytes' T (what an N is packed as); 6 and 7 the run.
        assert_eq!(out, b"ACGTTTNN");
    }

    /// Bases drawn mostly from A, C, G, T, with N, lower case and other letters mixed in, in
    /// runs as real genomes have them.
    fn genome_strategy() -> impl Strategy<Value = Vec<u8>> {
        let letter = prop_oneof![
            8 => prop::sample::select(b"ACGT".to_vec()),
            3 => prop::sample::select(b"acgt".to_vec()),
            2 => prop::sample::select(b"Nn".to_vec()),
            1 => prop::sample::select(b"RYSWKMBDHVryswkmbdhvUu-".to_vec()),
            1 => any::<u8>(),
        ];
        prop::collection::vec((letter, 1usize..40), 0..60).prop_map(|runs| {
            runs.into_iter()
                .flat_map(|(letter, len)| std::iter::repeat_n(letter, len))
                .collect()
        })
    }

    #[test]
    fn plain_stretches_with_rare_exceptions_pack_as_by_hand_in_any_pieces() {
        // Long upper-case ACGT stretches (packed sixteen at a time) broken by single exceptions
        // at every alignment, so each stretch starts and ends at every offset of sixteen.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut bases = Vec::new();
        for gap in 0..80usize {
            for _ in 0..gap {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bases.push(b"ACGT"[(state % 4) as usize]);
            }
            bases.push(b"NnaRx"[gap % 5]);
        }
        for block_bases in [16u32, 20, 64, 1 << 20] {
            for piece in [1, 3, 16, 17, 1000] {
                let blocks = encode(&bases, block_bases, piece);
                let packed: Vec<u8> = blocks.iter().flat_map(|b| b.packed.clone()).collect();
                assert_eq!(
                    packed,
                    naive_packing(&bases),
                    "blocks of {block_bases}, pieces of {piece}"
                );
                assert_eq!(
                    decode(&blocks, u64::from(block_bases), 0, bases.len() as u64),
                    bases
                );
            }
        }
    }

    proptest! {
        #[test]
        fn any_range_decodes_to_the_slice_appended(
            bases in genome_strategy(),
            block_quarters in 1u32..40,
            piece in 1usize..100,
            ranges in prop::collection::vec((any::<prop::sample::Index>(), 0usize..300), 1..20),
        ) {
            let block_bases = block_quarters * 4;
            let blocks = encode(&bases, block_bases, piece);
            let packed: Vec<u8> = blocks.iter().flat_map(|b| b.packed.clone()).collect();
            prop_assert_eq!(packed, naive_packing(&bases));
            prop_assert_eq!(decode(&blocks, u64::from(block_bases), 0, bases.len() as u64), bases.clone());
            for (start, len) in ranges {
                if bases.is_empty() {
                    break;
                }
                let offset = start.index(bases.len());
                let len = len.min(bases.len() - offset);
                prop_assert_eq!(
                    decode(&blocks, u64::from(block_bases), offset as u64, len as u64),
                    &bases[offset..offset + len]
                );
            }
        }
    }
}
