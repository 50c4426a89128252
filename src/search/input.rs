//! Streaming input: FASTA (one or many records), UCSC `.2bit` or plain sequence, optionally
//! gzip-compressed, cut into chunks while the bytes arrive. Push-style so an async reader (the
//! master receiving an upload) never holds the whole file.
//!
//! Invariants: a chunk never crosses a record boundary (a match spanning two records must not
//! count); chunk `i` owns `owned_len` bases and carries up to `overlap` following bases of the same
//! record; line breaks (`\n`, `\r\n`) are removed; chunks are emitted in order with indices 0, 1, ….

use thiserror::Error;

use super::decode::Decoder;

/// How many leading sequence bytes are checked to tell DNA from other text.
const SNIFF_BYTES: usize = 64 * 1024;
/// Longest record name kept; FASTA names are short, this only bounds memory on hostile input.
const MAX_NAME_BYTES: usize = 4096;
/// Name given to sequence that appears before any `>` header (a plain sequence file).
pub const DEFAULT_PLAIN_NAME: &str = "sequence";

/// One piece of one record's sequence, ready for [`crate::search::search_chunk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceChunk {
    /// Position of the chunk in the input, from 0, without gaps.
    pub index: u32,
    /// Index of the record (in [`Chunker::finish`]'s list) the chunk belongs to.
    pub record: u32,
    /// Position of `bases[0]` in its record's sequence.
    pub record_offset: u64,
    /// How many leading bases the chunk owns (matches must start there).
    pub owned_len: usize,
    /// The owned bases, then up to `overlap` following bases of the same record; no line breaks.
    pub bases: Vec<u8>,
}

impl SequenceChunk {
    /// The kernel's view of this chunk.
    pub fn as_chunk(&self) -> super::Chunk<'_> {
        super::Chunk {
            bases: &self.bases,
            owned_len: self.owned_len,
            record_offset: self.record_offset,
        }
    }
}

/// A record of the input: its name and sequence length.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordInfo {
    /// The header up to its first whitespace (seqkit's seqID), or the plain-sequence name.
    pub name: String,
    /// Bases in the record's sequence (line breaks excluded).
    pub length: u64,
}

/// Why input was refused. Messages say what was wrong and what was expected; callers prefix the
/// input's name (the file path).
#[derive(Debug, Error)]
pub enum InputError {
    /// No sequence bases at all.
    #[error("empty input: no sequence found (expected FASTA or plain DNA sequence)")]
    Empty,
    /// Binary data or text that is not a sequence.
    #[error("not a sequence file: {reason} (expected FASTA, .2bit or plain DNA sequence, optionally gzip-compressed)")]
    NotSequence {
        /// What gave it away.
        reason: String,
    },
    /// A `.2bit` file that does not follow the format.
    #[error("malformed .2bit file: {reason}")]
    TwoBit {
        /// What is wrong, and where.
        reason: String,
    },
    /// The gzip stream is corrupt or truncated.
    #[error("corrupt gzip data: {0}")]
    Gzip(#[source] std::io::Error),
    /// Compressed input decodes to more bytes than the limit (a gzip bomb, or just a big file).
    #[error(
        "input expands past {limit} bytes after decompression (from {compressed} compressed bytes \
         read so far); the limit is {limit} bytes of decompressed input: split the input or raise \
         the limit"
    )]
    ExpandsPastLimit {
        /// The configured limit, in decompressed bytes.
        limit: u64,
        /// Compressed bytes consumed when the limit was crossed.
        compressed: u64,
    },
    /// Uncompressed input larger than the limit.
    #[error(
        "input is larger than {limit} bytes; the limit is {limit} bytes: split the input or raise \
         the limit"
    )]
    TooLarge {
        /// The configured limit, in bytes.
        limit: u64,
    },
    /// More sequence bases than the limit.
    #[error(
        "input holds more than {limit} bases; the limit is {limit} bases: split the input or raise \
         the limit"
    )]
    TooManyBases {
        /// The configured limit, in bases.
        limit: u64,
    },
}

/// Cuts streamed input into [`SequenceChunk`]s. See the module docs for the invariants.
///
/// Memory stays bounded whatever the input: about one chunk plus its overlap, a record name, the
/// record list, and a fixed gzip window. Limits on decompressed bytes and on bases are off unless
/// set, so that a caller with an upload limit can make compressed input count at its real size.
pub struct Chunker {
    decoder: Decoder,
    parser: Parser,
}

impl Chunker {
    /// A chunker emitting chunks that own `chunk_len` bases (at least 1) and carry `overlap`
    /// look-ahead bases (use [`crate::search::PatternSet::overlap`]).
    pub fn new(chunk_len: usize, overlap: usize) -> Self {
        Self {
            decoder: Decoder::new(),
            parser: Parser::new(chunk_len.max(1), overlap),
        }
    }

    /// Names the record of a plain sequence file (sequence before any `>` header);
    /// [`DEFAULT_PLAIN_NAME`] otherwise.
    pub fn plain_name(mut self, name: impl Into<String>) -> Self {
        self.parser.plain_name = name.into();
        self
    }

    /// Refuses input whose decompressed size exceeds `bytes` ([`InputError::ExpandsPastLimit`] for
    /// gzip, [`InputError::TooLarge`] for plain input), as soon as it is crossed: a compressed
    /// upload counts at its real size, and a gzip bomb is stopped before it expands in memory.
    pub fn with_max_decompressed(mut self, bytes: u64) -> Self {
        self.decoder.set_max_decoded(bytes);
        self
    }

    /// Refuses input with more than `bases` sequence bases ([`InputError::TooManyBases`]).
    pub fn with_max_bases(mut self, bases: u64) -> Self {
        self.parser.max_bases = Some(bases);
        self
    }

    /// Decompressed input bytes seen so far (equal to the bytes pushed for plain input).
    pub fn decompressed_len(&self) -> u64 {
        self.decoder.decoded_len()
    }

    /// Input bytes held between pushes: pending bases (at most chunk length plus overlap), the
    /// header name being read, and decoded bytes not yet parsed. Cheap; for memory checks.
    pub fn buffered_len(&self) -> usize {
        self.parser.pending.len() + self.parser.header_name.len() + self.decoder.buffered_len()
    }

    /// Feeds raw input bytes as they arrive and calls `emit` for each completed chunk, in order.
    pub fn push(
        &mut self,
        input: &[u8],
        emit: &mut dyn FnMut(SequenceChunk),
    ) -> Result<(), InputError> {
        let parser = &mut self.parser;
        self.decoder
            .push(input, &mut |decoded| parser.feed(decoded, emit))
    }

    /// Signals the end of input: emits the last chunks and returns the records in input order.
    pub fn finish(
        mut self,
        emit: &mut dyn FnMut(SequenceChunk),
    ) -> Result<Vec<RecordInfo>, InputError> {
        let parser = &mut self.parser;
        self.decoder
            .finish(&mut |decoded| parser.feed(decoded, emit))?;
        self.parser.finish(emit)
    }
}

/// Where the parser is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineState {
    /// At the first byte of a line.
    LineStart,
    /// Inside a header's name (before its first whitespace).
    HeaderName,
    /// Inside the rest of a header line (the description), which is ignored.
    HeaderRest,
    /// Inside a sequence line.
    Sequence,
}

/// The FASTA state machine and the chunk cutter over decoded bytes.
struct Parser {
    chunk_len: usize,
    overlap: usize,
    plain_name: String,
    state: LineState,
    header_name: Vec<u8>,
    records: Vec<RecordInfo>,
    /// Whether `records.last()` is still receiving bases.
    in_record: bool,
    /// Bases of the open record not yet emitted as owned bases.
    pending: Vec<u8>,
    /// Record position of `pending[0]`.
    pending_offset: u64,
    next_index: u32,
    /// Decoded bytes seen, for error messages.
    consumed: u64,
    sniffed: usize,
    sniffed_letters: usize,
    /// Sniffed letters that are nucleotide codes (A, C, G, T, U, N, IUPAC ambiguity letters) or
    /// gap and stop symbols.
    sniffed_nucleotides: usize,
    /// The input began with sequence, not a `>` header: a plain sequence file, or any text.
    plain: bool,
    total_bases: u64,
    /// Most bases accepted; `None` = no limit.
    max_bases: Option<u64>,
}

impl Parser {
    fn new(chunk_len: usize, overlap: usize) -> Self {
        Self {
            chunk_len,
            overlap,
            plain_name: DEFAULT_PLAIN_NAME.to_string(),
            state: LineState::LineStart,
            header_name: Vec::new(),
            records: Vec::new(),
            in_record: false,
            pending: Vec::new(),
            pending_offset: 0,
            next_index: 0,
            consumed: 0,
            sniffed: 0,
            sniffed_letters: 0,
            sniffed_nucleotides: 0,
            plain: false,
            total_bases: 0,
            max_bases: None,
        }
    }

    fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(SequenceChunk)) -> Result<(), InputError> {
        if let Some(at) = memchr::memchr(0, data) {
            return Err(InputError::NotSequence {
                reason: format!(
                    "binary data (NUL byte at offset {})",
                    self.consumed + at as u64
                ),
            });
        }
        let mut rest = data;
        while !rest.is_empty() {
            let used = match self.state {
                LineState::LineStart => self.line_start(rest, emit)?,
                LineState::HeaderName => self.header_name_bytes(rest),
                LineState::HeaderRest => skip_line(rest, &mut self.state),
                LineState::Sequence => self.sequence_bytes(rest, emit)?,
            };
            rest = &rest[used..];
        }
        self.consumed += data.len() as u64;
        Ok(())
    }

    /// Decides what a line is from its first byte; returns the bytes consumed.
    fn line_start(
        &mut self,
        data: &[u8],
        emit: &mut dyn FnMut(SequenceChunk),
    ) -> Result<usize, InputError> {
        match data[0] {
            b'>' => {
                self.close_record(emit);
                self.header_name.clear();
                self.state = LineState::HeaderName;
                Ok(1)
            }
            b'\n' | b'\r' => Ok(1),
            _ => {
                if !self.in_record {
                    self.plain |= self.records.is_empty();
                    let name = self.plain_name.clone();
                    self.open_record(name);
                }
                self.state = LineState::Sequence;
                Ok(0)
            }
        }
    }

    fn header_name_bytes(&mut self, data: &[u8]) -> usize {
        let end = data
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(data.len());
        let room = MAX_NAME_BYTES.saturating_sub(self.header_name.len());
        self.header_name.extend_from_slice(&data[..end.min(room)]);
        if end == data.len() {
            return end;
        }
        let name = String::from_utf8_lossy(&self.header_name).into_owned();
        self.open_record(name);
        self.state = LineState::HeaderRest;
        end
    }

    /// Appends the bases of the sequence lines at the start of `data`, up to the next header,
    /// blank line or the end of `data`; returns the bytes consumed. The lines of a record are
    /// taken in one loop, so that a file of short lines costs a line-break search and a copy per
    /// line, not a trip through the line-start state as well.
    fn sequence_bytes(
        &mut self,
        data: &[u8],
        emit: &mut dyn FnMut(SequenceChunk),
    ) -> Result<usize, InputError> {
        let mut used = 0;
        while let Some(end) = memchr::memchr2(b'\n', b'\r', &data[used..]) {
            self.append_bases(&data[used..used + end], emit)?;
            used += end + 1;
            // `\r` is dropped wherever it appears; only `\n` ends a line.
            if data[used - 1] == b'\n' {
                match data.get(used) {
                    // The next line is more of this record's sequence.
                    Some(next) if !matches!(next, b'>' | b'\n' | b'\r') => {}
                    _ => {
                        self.state = LineState::LineStart;
                        return Ok(used);
                    }
                }
            }
        }
        self.append_bases(&data[used..], emit)?;
        Ok(data.len())
    }

    fn open_record(&mut self, name: String) {
        self.records.push(RecordInfo { name, length: 0 });
        self.in_record = true;
        self.pending.clear();
        self.pending_offset = 0;
    }

    fn append_bases(
        &mut self,
        mut bases: &[u8],
        emit: &mut dyn FnMut(SequenceChunk),
    ) -> Result<(), InputError> {
        self.sniff(bases)?;
        self.total_bases += bases.len() as u64;
        if let Some(limit) = self.max_bases.filter(|&limit| self.total_bases > limit) {
            return Err(InputError::TooManyBases { limit });
        }
        let full = self.chunk_len + self.overlap;
        while !bases.is_empty() {
            if self.pending.capacity() < full {
                // A chunk's worth of room, in a buffer an earlier chunk may have handed back.
                let mut room = crate::buffers::take(full);
                room.extend_from_slice(&self.pending);
                self.pending = room;
            }
            let take = (full - self.pending.len()).min(bases.len());
            self.pending.extend_from_slice(&bases[..take]);
            bases = &bases[take..];
            if self.pending.len() == full {
                self.emit_front(emit);
            }
        }
        Ok(())
    }

    /// Emits a chunk owning the first `chunk_len` pending bases (or all of them, if fewer), with
    /// every pending base after them as overlap, and keeps the bases after the owned ones.
    fn emit_front(&mut self, emit: &mut dyn FnMut(SequenceChunk)) {
        let owned_len = self.chunk_len.min(self.pending.len());
        let keep = self.pending[owned_len..].to_vec();
        let mut bases = std::mem::replace(&mut self.pending, keep);
        bases.truncate(owned_len + self.overlap);
        emit(SequenceChunk {
            index: self.next_index,
            record: (self.records.len() - 1) as u32,
            record_offset: self.pending_offset,
            owned_len,
            bases,
        });
        self.next_index += 1;
        self.pending_offset += owned_len as u64;
    }

    /// Ends the open record: emits its remaining bases (the overlap is cut at the record's end).
    fn close_record(&mut self, emit: &mut dyn FnMut(SequenceChunk)) {
        if !self.in_record {
            return;
        }
        while !self.pending.is_empty() {
            self.emit_front(emit);
        }
        if let Some(record) = self.records.last_mut() {
            record.length = self.pending_offset;
        }
        self.in_record = false;
    }

    /// Refuses text that is mostly not sequence letters, judged on the first [`SNIFF_BYTES`].
    fn sniff(&mut self, bases: &[u8]) -> Result<(), InputError> {
        if self.sniffed >= SNIFF_BYTES {
            return Ok(());
        }
        let window = &bases[..bases.len().min(SNIFF_BYTES - self.sniffed)];
        self.sniffed += window.len();
        self.sniffed_letters += window.iter().filter(|&&b| is_sequence_letter(b)).count();
        self.sniffed_nucleotides += window.iter().filter(|&&b| is_sequence_code(b)).count();
        if self.sniffed >= SNIFF_BYTES {
            self.check_sniffed()?;
        }
        Ok(())
    }

    fn check_sniffed(&self) -> Result<(), InputError> {
        if self.sniffed_letters * 2 < self.sniffed {
            return Err(InputError::NotSequence {
                reason: format!(
                    "only {} of the first {} sequence bytes are letters",
                    self.sniffed_letters, self.sniffed
                ),
            });
        }
        // Text without a header is taken as plain sequence, so it must read as one: a shopping
        // list is letters, but many of them (e, i, l, o, ...) are no nucleotide code at all. A
        // FASTA file has said what it is, and a sequence of ambiguity codes is still DNA.
        let others = self.sniffed_letters - self.sniffed_nucleotides;
        if self.plain && others * 10 > self.sniffed_letters {
            return Err(InputError::NotSequence {
                reason: format!(
                    "it has no FASTA header and {others} of the first {} letters are no \
                     nucleotide code (A, C, G, T, U, N or an IUPAC ambiguity letter), so it reads \
                     as text, not DNA",
                    self.sniffed_letters
                ),
            });
        }
        Ok(())
    }

    fn finish(
        mut self,
        emit: &mut dyn FnMut(SequenceChunk),
    ) -> Result<Vec<RecordInfo>, InputError> {
        if self.state == LineState::HeaderName {
            let name = String::from_utf8_lossy(&self.header_name).into_owned();
            self.open_record(name);
        }
        self.close_record(emit);
        if self.total_bases == 0 {
            return Err(InputError::Empty);
        }
        self.check_sniffed()?;
        Ok(self.records)
    }
}

/// Skips to the end of the current line; returns the bytes consumed.
fn skip_line(data: &[u8], state: &mut LineState) -> usize {
    match memchr::memchr(b'\n', data) {
        Some(end) => {
            *state = LineState::LineStart;
            end + 1
        }
        None => data.len(),
    }
}

/// A nucleotide code, either case (the bases of DNA and RNA, the unknown base, the IUPAC
/// ambiguity letters), or a gap or stop symbol. Text in which more than a few letters are
/// anything else is not a sequence.
fn is_sequence_code(byte: u8) -> bool {
    matches!(
        byte.to_ascii_uppercase(),
        b'A' | b'C'
            | b'G'
            | b'T'
            | b'U'
            | b'N'
            | b'R'
            | b'Y'
            | b'K'
            | b'M'
            | b'S'
            | b'W'
            | b'B'
            | b'D'
            | b'H'
            | b'V'
            | b'-'
            | b'*'
            | b'.'
    )
}

/// Letters and the gap/stop symbols that sequence files legitimately contain.
fn is_sequence_letter(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || matches!(byte, b'-' | b'*' | b'.')
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
