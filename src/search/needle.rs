//! What every matcher of the search kernel compares against, below all of them: a pattern on one
//! strand as letters (`Needle`), the bases an IUPAC letter stands for, and needle prefixes packed
//! side by side into 64-bit shift-and words. The exact, mask and approximate matchers and the
//! pattern set all read them from here, so none of them reaches into another for its inputs.

/// The strand of one hit: `+` for the pattern as written, `-` for its reverse complement.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Strand {
    /// `+`
    #[serde(rename = "+")]
    Forward,
    /// `-`
    #[serde(rename = "-")]
    Reverse,
}

impl Strand {
    /// The strand as seqkit and BED print it.
    pub fn symbol(self) -> char {
        match self {
            Strand::Forward => '+',
            Strand::Reverse => '-',
        }
    }
}

/// Longest needle prefix one shift-and word holds.
pub(crate) const WORD_BITS: usize = 64;

/// One pattern on one strand, as the matcher compares it.
#[derive(Clone, Debug)]
pub(crate) struct Needle {
    pub pattern: u32,
    pub strand: Strand,
    /// Compiled letters (upper case unless case-sensitive).
    pub letters: Vec<u8>,
}

/// Bit set of the bases (A=1, C=2, G=4, T=8) an IUPAC code stands for; 0 if not a code.
pub fn iupac_bases(code: u8) -> u8 {
    match code.to_ascii_uppercase() {
        b'A' => 1,
        b'C' => 2,
        b'G' => 4,
        b'T' | b'U' => 8,
        b'R' => 1 | 4,
        b'Y' => 2 | 8,
        b'S' => 2 | 4,
        b'W' => 1 | 8,
        b'K' => 4 | 8,
        b'M' => 1 | 2,
        b'B' => 2 | 4 | 8,
        b'D' => 1 | 4 | 8,
        b'H' => 1 | 2 | 8,
        b'V' => 1 | 2 | 4,
        b'N' => 1 | 2 | 4 | 8,
        _ => 0,
    }
}

/// One shift-and word: up to 64 needle prefixes side by side.
#[derive(Clone, Debug)]
pub(crate) struct Word {
    /// Per byte value, the positions (bits) whose letter accepts it.
    pub(crate) table: Box<[u64; 256]>,
    /// The first bit of each needle: always re-armed, so carries between needles are harmless.
    pub(crate) starts: u64,
    /// The last bit of each needle prefix.
    pub(crate) ends: u64,
    /// For each needle in this word: (its end bit, prefix length, index into the needles).
    pub(crate) members: Vec<(u32, usize, usize)>,
}

/// Packs the needles' prefixes (up to 64 letters each) into as few words as fit, in order;
/// `matches(letter, byte)` says which bytes a letter accepts.
pub(crate) fn pack_words(needles: &[Needle], matches: &dyn Fn(u8, u8) -> bool) -> Vec<Word> {
    let mut words: Vec<Word> = Vec::new();
    let mut used = WORD_BITS;
    for (index, needle) in needles.iter().enumerate() {
        let prefix = &needle.letters[..needle.letters.len().min(WORD_BITS)];
        if used + prefix.len() > WORD_BITS {
            words.push(Word {
                table: Box::new([0; 256]),
                starts: 0,
                ends: 0,
                members: Vec::new(),
            });
            used = 0;
        }
        let Some(word) = words.last_mut() else {
            continue;
        };
        for (offset, &code) in prefix.iter().enumerate() {
            let bit = 1u64 << (used + offset);
            for byte in 0..=255u8 {
                if matches(code, byte) {
                    word.table[byte as usize] |= bit;
                }
            }
        }
        let end_bit = (used + prefix.len() - 1) as u32;
        word.starts |= 1 << used;
        word.ends |= 1 << end_bit;
        word.members.push((end_bit, prefix.len(), index));
        used += prefix.len();
    }
    words
}
