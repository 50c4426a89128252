//! The UCSC `.2bit` format, in and out, so a genome as UCSC distributes it (`hg38.2bit`) is
//! searched as it is, and a generated genome can be written in it.
//!
//! Layout (all integers 32-bit, in the byte order the signature is written in): a header
//! (signature `0x1A412743`, version, record count, reserved), an index of (name length, name,
//! offset) entries, then per record: its length in bases, its N runs (count, starts, sizes), its
//! lower-case runs (count, starts, sizes), a reserved word and the bases packed four to a byte,
//! first base in the high bits, `T C A G` = `0 1 2 3`. Version 1 files have 64-bit offsets.
//!
//! Reading is push-style, like the rest of the input path: [`TwoBitDecoder`] turns the bytes as
//! they arrive into FASTA text (`>name`, then the bases on one line), holding at most one record
//! header's N and lower-case runs. Records are read in the order of their offsets, so a file
//! streams in one pass; lower-case runs come back as lower case, as in the FASTA the file was
//! made from.

use std::io::{self, Write};

use super::InputError;

/// The signature, as a little-endian file stores it.
pub const MAGIC: u32 = 0x1A41_2743;
/// The signature's first four bytes in either byte order, for sniffing.
pub const MAGIC_BYTES: [[u8; 4]; 2] = [MAGIC.to_le_bytes(), MAGIC.to_be_bytes()];
/// Most records a file may list: far more than any assembly, few enough to bound the index.
const MAX_RECORDS: u32 = 1 << 22;
/// Most N runs one record may have (hg38 has a few hundred per chromosome); bounds the one
/// record header held in memory.
const MAX_N_RUNS: u32 = 1 << 20;
/// Most lower-case runs one record may have (a soft-masked human chromosome has a few hundred
/// thousand); bounds the one record header held in memory.
const MAX_MASK_RUNS: u32 = 1 << 22;
/// FASTA text handed on per call, at most.
const OUTPUT_PIECE: usize = 64 * 1024;
/// The letter of each 2-bit code: `T C A G` = `0 1 2 3`.
pub const CODE_LETTERS: [u8; 4] = *b"TCAG";

/// The 2-bit code of a base, either case (see [`CODE_LETTERS`]). Anything else is 0 (T), as
/// UCSC's tools store it: what it really is must be kept beside the packed bases (N runs,
/// lower-case runs, or whatever else the store keeps).
pub const fn base_code(base: u8) -> u8 {
    match base.to_ascii_uppercase() {
        b'C' => 1,
        b'A' => 2,
        b'G' => 3,
        _ => 0,
    }
}

/// Where the reader stands in the file.
enum Stage {
    /// The 16-byte header.
    Header,
    /// The index: entries still to read.
    Index { remaining: u32 },
    /// Skipping to the next record's offset (or past the last one).
    Seek,
    /// A record's length and N run count.
    RecordStart,
    /// A record's N run starts and sizes (`count` of each).
    NRuns { len: u64, count: u32 },
    /// A record's lower-case run count.
    MaskCount { len: u64 },
    /// A record's lower-case run starts and sizes (`count` of each), then the reserved word.
    MaskRuns { len: u64, count: u32 },
    /// The packed bases: `done` of `len` written.
    Bases { len: u64, done: u64 },
    /// Every record read; trailing bytes are ignored.
    Done,
}

/// Turns pushed `.2bit` bytes into FASTA text.
pub struct TwoBitDecoder {
    stage: Stage,
    /// Bytes received but not consumed yet (never more than one fixed structure).
    held: Vec<u8>,
    /// File offset of `held[0]`.
    offset: u64,
    big_endian: bool,
    long_offsets: bool,
    records: u32,
    /// (offset, name) of every record, sorted by offset once the index is read.
    index: Vec<(u64, String)>,
    next_record: usize,
    /// N runs of the record being read, as (start, end), sorted.
    n_runs: Vec<(u64, u64)>,
    n_at: usize,
    /// Lower-case runs of the record being read, as (start, end), sorted.
    mask_runs: Vec<(u64, u64)>,
    mask_at: usize,
    out: Vec<u8>,
}

impl Default for TwoBitDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl TwoBitDecoder {
    /// A reader at the start of a file.
    pub fn new() -> Self {
        Self {
            stage: Stage::Header,
            held: Vec::new(),
            offset: 0,
            big_endian: false,
            long_offsets: false,
            records: 0,
            index: Vec::new(),
            next_record: 0,
            n_runs: Vec::new(),
            n_at: 0,
            mask_runs: Vec::new(),
            mask_at: 0,
            out: Vec::with_capacity(OUTPUT_PIECE + 256),
        }
    }

    /// Bytes held between pushes.
    pub fn buffered_len(&self) -> usize {
        self.held.len() + self.out.len()
    }

    /// Reads `input` and hands the FASTA text it completes to `sink`, a bounded piece at a time.
    pub fn push(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        if self.held.is_empty() {
            let used = self.consume(input, sink)?;
            self.held.extend_from_slice(&input[used..]);
        } else {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(input);
            let used = self.consume(&held, sink)?;
            held.drain(..used);
            self.held = held;
        }
        self.flush(sink)
    }

    /// Steps through `data` (the bytes from the current offset) until a stage needs more;
    /// returns how many bytes were used.
    fn consume(
        &mut self,
        data: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), InputError>,
    ) -> Result<usize, InputError> {
        let mut at = 0;
        while let Some(used) = self.step(&data[at..], sink)? {
            at += used;
            self.offset += used as u64;
        }
        Ok(at)
    }

    /// Ends the input: a file that stops before its last record's last base is truncated.
    pub fn finish(
        mut self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        if matches!(self.stage, Stage::Seek) && self.next_record == self.index.len() {
            self.stage = Stage::Done;
        }
        if !matches!(self.stage, Stage::Done) {
            return Err(malformed(format!(
                "the file ends at byte {} before its records do (truncated?)",
                self.offset + self.held.len() as u64
            )));
        }
        self.flush(sink)
    }

    /// Takes one step of the current stage over `data` (the bytes from the current offset):
    /// how many bytes it used (perhaps none, when only the stage changed), or `None` when the
    /// stage needs more bytes than `data` holds.
    fn step(
        &mut self,
        data: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), InputError>,
    ) -> Result<Option<usize>, InputError> {
        match self.stage {
            Stage::Header => {
                if data.len() < 16 {
                    return Ok(None);
                }
                let magic: [u8; 4] = data[..4].try_into().unwrap_or_default();
                self.big_endian = match magic {
                    m if m == MAGIC_BYTES[0] => false,
                    m if m == MAGIC_BYTES[1] => true,
                    _ => return Err(malformed("no .2bit signature".into())),
                };
                let version = self.word(&data[4..8]);
                self.long_offsets = match version {
                    0 => false,
                    1 => true,
                    other => return Err(malformed(format!("version {other} is not 0 or 1"))),
                };
                self.records = self.word(&data[8..12]);
                if self.records > MAX_RECORDS {
                    return Err(malformed(format!(
                        "{} records, more than the {MAX_RECORDS} read",
                        self.records
                    )));
                }
                self.index.reserve(self.records as usize);
                self.stage = Stage::Index {
                    remaining: self.records,
                };
                if self.records == 0 {
                    self.stage = Stage::Done;
                }
                Ok(Some(16))
            }
            Stage::Index { remaining } => {
                let Some(&name_len) = data.first() else {
                    return Ok(None);
                };
                let offset_len = if self.long_offsets { 8 } else { 4 };
                let entry = 1 + name_len as usize + offset_len;
                if data.len() < entry {
                    return Ok(None);
                }
                let name = &data[1..1 + name_len as usize];
                if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                    return Err(malformed(format!(
                        "record {} has an empty name or one with spaces or control bytes",
                        self.records - remaining + 1
                    )));
                }
                let offset_bytes = &data[1 + name_len as usize..entry];
                let offset = if self.long_offsets {
                    let bytes: [u8; 8] = offset_bytes.try_into().unwrap_or_default();
                    if self.big_endian {
                        u64::from_be_bytes(bytes)
                    } else {
                        u64::from_le_bytes(bytes)
                    }
                } else {
                    u64::from(self.word(offset_bytes))
                };
                let name = String::from_utf8_lossy(name).into_owned();
                self.index.push((offset, name));
                self.stage = if remaining > 1 {
                    Stage::Index {
                        remaining: remaining - 1,
                    }
                } else {
                    self.index.sort_by_key(|(offset, _)| *offset);
                    Stage::Seek
                };
                Ok(Some(entry))
            }
            Stage::Seek => {
                let Some((target, _)) = self.index.get(self.next_record) else {
                    self.stage = Stage::Done;
                    return Ok(None);
                };
                if *target < self.offset {
                    return Err(malformed(format!(
                        "record offsets overlap (a record at byte {target}, already read up to byte {})",
                        self.offset
                    )));
                }
                if *target == self.offset {
                    self.stage = Stage::RecordStart;
                    return Ok(Some(0));
                }
                if data.is_empty() {
                    return Ok(None);
                }
                Ok(Some((*target - self.offset).min(data.len() as u64) as usize))
            }
            Stage::RecordStart => {
                if data.len() < 8 {
                    return Ok(None);
                }
                let len = u64::from(self.word(&data[..4]));
                let count = self.word(&data[4..8]);
                if count > MAX_N_RUNS {
                    return Err(malformed(format!(
                        "a record with {count} N runs, more than the {MAX_N_RUNS} read"
                    )));
                }
                self.stage = Stage::NRuns { len, count };
                Ok(Some(8))
            }
            Stage::NRuns { len, count } => {
                let need = count as usize * 8;
                if data.len() < need {
                    return Ok(None);
                }
                self.n_runs = self.runs(&data[..need], len, "an N run")?;
                self.n_at = 0;
                self.stage = Stage::MaskCount { len };
                Ok(Some(need))
            }
            Stage::MaskCount { len } => {
                if data.len() < 4 {
                    return Ok(None);
                }
                let count = self.word(&data[..4]);
                if count > MAX_MASK_RUNS {
                    return Err(malformed(format!(
                        "a record with {count} lower-case runs, more than the {MAX_MASK_RUNS} read"
                    )));
                }
                self.stage = Stage::MaskRuns { len, count };
                Ok(Some(4))
            }
            Stage::MaskRuns { len, count } => {
                // The starts, the sizes, then the reserved word.
                let need = count as usize * 8 + 4;
                if data.len() < need {
                    return Ok(None);
                }
                self.mask_runs = self.runs(&data[..need - 4], len, "a lower-case run")?;
                self.mask_at = 0;
                let (_, name) = &self.index[self.next_record];
                self.out.push(b'>');
                self.out.extend_from_slice(name.as_bytes());
                self.out.push(b'\n');
                self.stage = Stage::Bases { len, done: 0 };
                Ok(Some(need))
            }
            Stage::Bases { len, done } => {
                if done == len {
                    self.out.push(b'\n');
                    self.next_record += 1;
                    self.stage = Stage::Seek;
                    // The last base's byte is consumed; nothing more to use here.
                    return Ok(Some(0));
                }
                let room = OUTPUT_PIECE.saturating_sub(self.out.len()) / 4;
                let packed_left = (len - done).div_ceil(4);
                let take = (room.max(1) as u64).min(packed_left).min(data.len() as u64) as usize;
                if take == 0 {
                    return Ok(None);
                }
                let mut position = done;
                for &byte in &data[..take] {
                    for shift in [6u32, 4, 2, 0] {
                        if position == len {
                            break;
                        }
                        let letter = if in_run(&self.n_runs, &mut self.n_at, position) {
                            b'N'
                        } else {
                            CODE_LETTERS[usize::from((byte >> shift) & 3)]
                        };
                        match in_run(&self.mask_runs, &mut self.mask_at, position) {
                            true => self.out.push(letter.to_ascii_lowercase()),
                            false => self.out.push(letter),
                        }
                        position += 1;
                    }
                }
                self.stage = Stage::Bases {
                    len,
                    done: position,
                };
                if self.out.len() >= OUTPUT_PIECE {
                    self.flush(sink)?;
                }
                Ok(Some(take))
            }
            Stage::Done => Ok(None),
        }
    }

    /// A record's runs from their starts then sizes (`bytes` holds both lists), as sorted
    /// (start, end) pairs; `what` names a run in the refusal of one past the record's end.
    fn runs(&self, bytes: &[u8], len: u64, what: &str) -> Result<Vec<(u64, u64)>, InputError> {
        let (starts, sizes) = bytes.split_at(bytes.len() / 2);
        let mut runs = Vec::with_capacity(starts.len() / 4);
        for (start, size) in starts.chunks_exact(4).zip(sizes.chunks_exact(4)) {
            let start = u64::from(self.word(start));
            let end = start + u64::from(self.word(size));
            if end > len {
                return Err(malformed(format!(
                    "{what} ends at base {end}, past its record's {len} bases"
                )));
            }
            runs.push((start, end));
        }
        runs.sort_unstable();
        Ok(runs)
    }

    fn word(&self, bytes: &[u8]) -> u32 {
        let bytes: [u8; 4] = bytes.try_into().unwrap_or_default();
        if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }

    fn flush(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = sink(&self.out);
        self.out.clear();
        result
    }
}

/// Whether `position` lies in one of `runs` ((start, end), sorted); positions are asked in
/// increasing order, and `at` keeps the first run not yet passed.
fn in_run(runs: &[(u64, u64)], at: &mut usize, position: u64) -> bool {
    while let Some(&(_, end)) = runs.get(*at) {
        if position < end {
            break;
        }
        *at += 1;
    }
    runs.get(*at).is_some_and(|&(start, _)| position >= start)
}

/// A `.2bit` file read as the FASTA text it holds, for readers that take text (the local
/// search's block reader). Its errors are [`io::ErrorKind::InvalidData`] carrying the reason.
pub struct TwoBitRead<R> {
    inner: R,
    decoder: Option<TwoBitDecoder>,
    input: Vec<u8>,
    text: Vec<u8>,
    at: usize,
}

impl<R: io::Read> TwoBitRead<R> {
    /// Reads the `.2bit` file `inner` from its first byte.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            decoder: Some(TwoBitDecoder::new()),
            input: vec![0; OUTPUT_PIECE / 4],
            text: Vec::with_capacity(OUTPUT_PIECE + 256),
            at: 0,
        }
    }
}

impl<R: io::Read> io::Read for TwoBitRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.text.len() {
            self.text.clear();
            self.at = 0;
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let read = self.inner.read(&mut self.input)?;
            let text = &mut self.text;
            let mut sink = |bytes: &[u8]| {
                text.extend_from_slice(bytes);
                Ok(())
            };
            let step = if read == 0 {
                self.decoder
                    .take()
                    .map_or(Ok(()), |decoder| decoder.finish(&mut sink))
            } else {
                decoder.push(&self.input[..read], &mut sink)
            };
            step.map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
        }
        let n = buf.len().min(self.text.len() - self.at);
        buf[..n].copy_from_slice(&self.text[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn malformed(reason: String) -> InputError {
    InputError::TwoBit { reason }
}

/// One record of a `.2bit` file to write: its name, its length, its N runs and its lower-case
/// runs (each as (start, length)), which must be known before its bases, since they precede
/// them in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    /// The record's name (no whitespace, at most 255 bytes).
    pub name: String,
    /// Its length in bases.
    pub len: u64,
    /// Its runs of N, as (start, length), in order.
    pub n_runs: Vec<(u64, u64)>,
    /// Its runs of lower-case (soft-masked) bases, as (start, length), in order.
    pub mask_runs: Vec<(u64, u64)>,
}

impl RecordLayout {
    /// Bytes the record takes in the file: its header (length, runs, reserved word) and its
    /// packed bases.
    fn file_len(&self) -> u64 {
        let runs = (self.n_runs.len() + self.mask_runs.len()) as u64;
        4 + 4 + 4 + 8 * runs + 4 + self.len.div_ceil(4)
    }
}

/// The size of the `.2bit` file [`TwoBitWriter`] writes for `layouts`.
pub fn file_len(layouts: &[RecordLayout]) -> u64 {
    let (records, offset_len) = index_len(layouts);
    records
        + offset_len * layouts.len() as u64
        + layouts.iter().map(RecordLayout::file_len).sum::<u64>()
}

/// The header and names of the index, and the width of each offset in it: past 4 GiB the
/// offsets no longer fit 32 bits, and version 1 stores them in 64.
fn index_len(layouts: &[RecordLayout]) -> (u64, u64) {
    let names_len: u64 = layouts.iter().map(|l| 1 + l.name.len() as u64).sum();
    let short_total = 16
        + names_len
        + 4 * layouts.len() as u64
        + layouts.iter().map(RecordLayout::file_len).sum::<u64>();
    let offset_len = if short_total > u64::from(u32::MAX) {
        8
    } else {
        4
    };
    (16 + names_len, offset_len)
}

/// Finds the N runs and lower-case runs of records whose bases are pushed in order (the records
/// one after another), to lay out their `.2bit` file before a base of it is written.
pub struct RunScanner {
    layouts: Vec<RecordLayout>,
    record: usize,
    /// Bases of the current record seen so far.
    at: u64,
}

impl RunScanner {
    /// A scanner of records with these names and lengths, in order.
    pub fn new(records: impl IntoIterator<Item = (String, u64)>) -> Self {
        let layouts = records
            .into_iter()
            .map(|(name, len)| RecordLayout {
                name,
                len,
                n_runs: Vec::new(),
                mask_runs: Vec::new(),
            })
            .collect();
        let mut scanner = Self {
            layouts,
            record: 0,
            at: 0,
        };
        scanner.skip_empty();
        scanner
    }

    /// Takes the next bases.
    pub fn push(&mut self, mut bases: &[u8]) -> io::Result<()> {
        while !bases.is_empty() {
            let Some(layout) = self.layouts.get_mut(self.record) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "more bases than the records' lengths",
                ));
            };
            let take = (layout.len - self.at).min(bases.len() as u64) as usize;
            for (i, &base) in bases[..take].iter().enumerate() {
                let position = self.at + i as u64;
                if base.eq_ignore_ascii_case(&b'N') {
                    extend_run(&mut layout.n_runs, position);
                }
                if base.is_ascii_lowercase() {
                    extend_run(&mut layout.mask_runs, position);
                }
            }
            self.at += take as u64;
            bases = &bases[take..];
            if self.at == layout.len {
                self.record += 1;
                self.at = 0;
                self.skip_empty();
            }
        }
        Ok(())
    }

    /// The records' layouts; every record must have had all its bases.
    pub fn finish(self) -> io::Result<Vec<RecordLayout>> {
        if let Some(layout) = self.layouts.get(self.record) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record {} got {} of its {} bases",
                    layout.name, self.at, layout.len
                ),
            ));
        }
        Ok(self.layouts)
    }

    fn skip_empty(&mut self) {
        while self.layouts.get(self.record).is_some_and(|l| l.len == 0) {
            self.record += 1;
        }
    }
}

/// Adds `position` to the runs: it lengthens the last run when it follows it.
fn extend_run(runs: &mut Vec<(u64, u64)>, position: u64) {
    match runs.last_mut() {
        Some((start, len)) if *start + *len == position => *len += 1,
        _ => runs.push((position, 1)),
    }
}

/// Writes a `.2bit` file: the header and index at once from the records' layouts, then each
/// record's bases as they are pushed, in order. Bases other than A, C, G and T are stored as T,
/// as UCSC's tools do: only the declared N runs come back as N, and only the declared
/// lower-case runs as lower case.
pub struct TwoBitWriter<W: Write> {
    out: W,
    layouts: Vec<RecordLayout>,
    /// The record receiving bases, how many it has, and whether its header is written.
    record: usize,
    written: u64,
    header_written: bool,
    /// Bases of the current byte not yet written (0 to 3), first base in the high bits.
    partial: u8,
    partial_len: u8,
}

impl<W: Write> TwoBitWriter<W> {
    /// Writes the header and index for `layouts`.
    pub fn new(mut out: W, layouts: Vec<RecordLayout>) -> io::Result<Self> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        for layout in &layouts {
            if layout.name.is_empty()
                || layout.name.len() > 255
                || !layout.name.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid(format!("record name {:?}", layout.name)));
            }
            if layout.len > u64::from(u32::MAX) {
                return Err(invalid(format!(
                    "record {} has {} bases; .2bit holds at most {} per record",
                    layout.name,
                    layout.len,
                    u32::MAX
                )));
            }
            let past_end = |runs: &[(u64, u64)]| runs.iter().any(|&(s, l)| s + l > layout.len);
            if past_end(&layout.n_runs) || past_end(&layout.mask_runs) {
                return Err(invalid(format!(
                    "record {} has an N or lower-case run past its end",
                    layout.name
                )));
            }
        }
        let (index_start, offset_len) = index_len(&layouts);
        let long = offset_len == 8;
        out.write_all(&MAGIC.to_le_bytes())?;
        out.write_all(&u32::from(long).to_le_bytes())?;
        out.write_all(&(layouts.len() as u32).to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        let mut offset = index_start + offset_len * layouts.len() as u64;
        for layout in &layouts {
            let size = layout.file_len();
            out.write_all(&[layout.name.len() as u8])?;
            out.write_all(layout.name.as_bytes())?;
            if long {
                out.write_all(&offset.to_le_bytes())?;
            } else {
                out.write_all(&(offset as u32).to_le_bytes())?;
            }
            offset += size;
        }
        let mut writer = Self {
            out,
            layouts,
            record: 0,
            written: 0,
            header_written: false,
            partial: 0,
            partial_len: 0,
        };
        writer.advance()?;
        Ok(writer)
    }

    /// The output written to so far: a caller writing into a buffer takes what is in it
    /// between pushes.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes the next bases of the current record (and of the following ones, in order).
    pub fn push(&mut self, mut bases: &[u8]) -> io::Result<()> {
        let mut packed = Vec::with_capacity(bases.len() / 4 + 1);
        while !bases.is_empty() {
            let Some(layout) = self.layouts.get(self.record) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "more bases than the records' lengths",
                ));
            };
            let take = (layout.len - self.written).min(bases.len() as u64) as usize;
            packed.clear();
            for &base in &bases[..take] {
                self.partial = (self.partial << 2) | base_code(base);
                self.partial_len += 1;
                if self.partial_len == 4 {
                    packed.push(self.partial);
                    self.partial = 0;
                    self.partial_len = 0;
                }
            }
            self.out.write_all(&packed)?;
            self.written += take as u64;
            bases = &bases[take..];
            self.advance()?;
        }
        Ok(())
    }

    /// Ends the file; every record must have had all its bases.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(layout) = self.layouts.get(self.record) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record {} got {} of its {} bases",
                    layout.name, self.written, layout.len
                ),
            ));
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes the current record's header if it is not written yet; closes the records that
    /// have all their bases (the last byte padded with T), and opens the next.
    fn advance(&mut self) -> io::Result<()> {
        while let Some(layout) = self.layouts.get(self.record) {
            if !self.header_written {
                let mut header = Vec::with_capacity(16 + 8 * layout.n_runs.len());
                header.extend_from_slice(&(layout.len as u32).to_le_bytes());
                header.extend_from_slice(&(layout.n_runs.len() as u32).to_le_bytes());
                for (start, _) in &layout.n_runs {
                    header.extend_from_slice(&(*start as u32).to_le_bytes());
                }
                for (_, len) in &layout.n_runs {
                    header.extend_from_slice(&(*len as u32).to_le_bytes());
                }
                header.extend_from_slice(&(layout.mask_runs.len() as u32).to_le_bytes());
                for (start, _) in &layout.mask_runs {
                    header.extend_from_slice(&(*start as u32).to_le_bytes());
                }
                for (_, len) in &layout.mask_runs {
                    header.extend_from_slice(&(*len as u32).to_le_bytes());
                }
                // The reserved word.
                header.extend_from_slice(&0u32.to_le_bytes());
                self.out.write_all(&header)?;
                self.header_written = true;
            }
            if self.written < layout.len {
                return Ok(());
            }
            if self.partial_len > 0 {
                let byte = self.partial << (2 * (4 - self.partial_len));
                self.out.write_all(&[byte])?;
                self.partial = 0;
                self.partial_len = 0;
            }
            self.record += 1;
            self.written = 0;
            self.header_written = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a whole file, pushed in pieces of `piece` bytes, to FASTA text.
    fn decode(file: &[u8], piece: usize) -> Result<String, InputError> {
        let mut decoder = TwoBitDecoder::new();
        let mut text = Vec::new();
        let mut sink = |bytes: &[u8]| {
            text.extend_from_slice(bytes);
            Ok(())
        };
        for part in file.chunks(piece.max(1)) {
            decoder.push(part, &mut sink)?;
        }
        decoder.finish(&mut sink)?;
        Ok(String::from_utf8(text).expect("ASCII"))
    }

    /// A file written by hand from the format's description: two records listed in reverse
    /// file order, big-endian, one with an N run and a lower-case run.
    fn hand_made_big_endian() -> Vec<u8> {
        let mut file = Vec::new();
        let word = |file: &mut Vec<u8>, v: u32| file.extend_from_slice(&v.to_be_bytes());
        word(&mut file, MAGIC);
        word(&mut file, 0);
        word(&mut file, 2);
        word(&mut file, 0);
        // Index: "b" first (stored second), then "a".
        let index_len = (1 + 1 + 4) * 2;
        let a_at = 16 + index_len;
        // Record a: 6 bases TCAGGA, N run over bases 1..3, one lower-case run.
        let a_len = 4 + 4 + 8 + 4 + 8 + 4 + 2;
        let b_at = a_at + a_len;
        file.push(1);
        file.push(b'b');
        word(&mut file, b_at as u32);
        file.push(1);
        file.push(b'a');
        word(&mut file, a_at as u32);
        word(&mut file, 6);
        word(&mut file, 1);
        word(&mut file, 1);
        word(&mut file, 2);
        word(&mut file, 1);
        word(&mut file, 0);
        word(&mut file, 3);
        word(&mut file, 0);
        // T C A G | G A (pad T T): 00 01 10 11, 11 10 00 00.
        file.push(0b0001_1011);
        file.push(0b1110_0000);
        // Record b: 3 bases CCC, no runs.
        word(&mut file, 3);
        word(&mut file, 0);
        word(&mut file, 0);
        word(&mut file, 0);
        file.push(0b0101_0100);
        file
    }

    #[test]
    fn a_hand_made_file_reads_in_file_order_with_its_runs_whatever_the_pieces() {
        let file = hand_made_big_endian();
        for piece in [1, 2, 3, 7, 1 << 20] {
            assert_eq!(
                decode(&file, piece).expect("a valid file"),
                // The lower-case run covers bases 0..3, the N run among them included.
                ">a\ntnnGGA\n>b\nCCC\n",
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn written_files_read_back_exactly() {
        type Record<'a> = (&'a str, &'a [u8]);
        let records: Vec<Record> = vec![
            ("chr1", b"NNNNACGTacgtTGCA"),
            ("chr2", b"g"),
            ("empty", b""),
            ("chr3", b"ACGTnaCGtAC"),
        ];
        let mut scanner = RunScanner::new(
            records
                .iter()
                .map(|(name, bases)| (name.to_string(), bases.len() as u64)),
        );
        let all: Vec<u8> = records.iter().flat_map(|(_, b)| b.to_vec()).collect();
        for piece in all.chunks(5) {
            scanner.push(piece).expect("scan");
        }
        let layouts = scanner.finish().expect("every base scanned");
        assert_eq!(layouts[0].n_runs, [(0, 4)]);
        assert_eq!(layouts[0].mask_runs, [(8, 4)]);
        assert_eq!(layouts[3].n_runs, [(4, 1)]);
        assert_eq!(layouts[3].mask_runs, [(4, 2), (8, 1)]);
        let expected_len = file_len(&layouts);
        let mut writer = TwoBitWriter::new(Vec::new(), layouts).expect("layouts");
        for piece in all.chunks(3) {
            writer.push(piece).expect("push");
        }
        let file = writer.finish().expect("finish");
        assert_eq!(file.len() as u64, expected_len);
        let expected: String = records
            .iter()
            .map(|(name, bases)| format!(">{name}\n{}\n", String::from_utf8_lossy(bases)))
            .collect();
        for piece in [1, 5, 1 << 16] {
            assert_eq!(decode(&file, piece).expect("valid"), expected);
        }
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let file = hand_made_big_endian();
        let truncated = decode(&file[..file.len() - 1], 4).expect_err("truncated");
        assert!(truncated.to_string().contains("truncated"), "{truncated}");
        let mut bad_version = file.clone();
        bad_version[7] = 9;
        assert!(decode(&bad_version, 64).is_err());
        let mut overlapping = file.clone();
        // Point "b" at record "a"'s start + 1: the two overlap.
        let a_at = u32::from_be_bytes(file[24..28].try_into().unwrap());
        overlapping[18..22].copy_from_slice(&(a_at + 1).to_be_bytes());
        let err = decode(&overlapping, 64).expect_err("overlap");
        assert!(err.to_string().contains("overlap"), "{err}");
        let mut control_name = file;
        control_name[17] = b'\n';
        assert!(decode(&control_name, 64).is_err());
    }
}
