//! Whole-input search of an input that can be read at any offset (a regular file, bytes in
//! memory): every thread reads its own blocks with positioned reads and searches them, so the
//! copy out of the page cache is spread over the cores and no block is handed between threads.
//!
//! Invariant: block `k` owns the lines that start in `[k·B, (k+1)·B)` of the raw bytes, so
//! block edges are always line starts and each thread finds its own edges without knowing its
//! neighbours'. Input this cannot cut that way (gzip, `.2bit`, a line longer than
//! [`MAX_LINE_OVERRUN`]) goes through the streaming [`super::parallel`] search instead, whose
//! results are the same byte for byte.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::block::{lookahead_within, scan_block, BlockOutput, LineState};
use super::parallel::{
    check_first_block, ends_inside_header, merge_block, search_plain, MAX_HEADER_LINE,
};
use super::twobit::MAGIC_BYTES;
use super::{InputError, ParallelError, ParallelOptions, PatternSet, SearchOutcome, StrandCounts};

/// Bytes a block may read past its nominal end to finish its last line (and the look-ahead
/// after it); a longer line sends the whole input to the streaming search.
pub const MAX_LINE_OVERRUN: usize = 1 << 20;
/// Bytes read past a block's nominal end up front: its last line and look-ahead fit in them
/// for any usual FASTA layout, so one read per block is the rule.
const READ_SLACK: usize = 4096;

/// An input read at any offset, from several threads at once.
pub trait PositionedInput: Sync {
    /// The input's length in bytes, taken once before the search.
    fn byte_len(&self) -> io::Result<u64>;
    /// Reads bytes at `offset` into `buf`; returns how many (0 only at the end of the input).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl PositionedInput for std::fs::File {
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl PositionedInput for [u8] {
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let count = buf.len().min(self.len() - start);
        buf[..count].copy_from_slice(&self[start..start + count]);
        Ok(count)
    }
}

/// Searches `input` with `set` like [`super::search_reader`] (the same outcome, the same errors),
/// reading and searching blocks on every thread. `progress` is called with a count of the bytes
/// searched so far.
pub fn search_positioned<I: PositionedInput + ?Sized>(
    input: &I,
    set: &PatternSet,
    options: &ParallelOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<SearchOutcome, ParallelError> {
    let size = input.byte_len()?;
    let block_bytes = options.block_bytes.max(8 * set.overlap()).max(2) as u64;
    let mut head = Window::default();
    head.fill_to(input, size, block_bytes.min(size))?;
    let streamed = head.bytes().starts_with(&[0x1f, 0x8b])
        || MAGIC_BYTES
            .iter()
            .any(|magic| head.bytes().starts_with(magic));
    if streamed {
        return super::search_reader(Stream::new(input), set, options, progress);
    }
    check_head(input, size, block_bytes, &mut head)?;
    match search_blocks(input, size, block_bytes, set, options, progress)? {
        Some(outcome) => Ok(outcome),
        None => search_plain(Stream::new(input), set, options, progress),
    }
}

/// Runs the streaming search's checks (binary, not a sequence, empty) on the same first block
/// it would check: `block_bytes`, read on while that ends inside a header line.
fn check_head<I: PositionedInput + ?Sized>(
    input: &I,
    size: u64,
    block_bytes: u64,
    head: &mut Window,
) -> Result<(), ParallelError> {
    let limit = block_bytes + MAX_HEADER_LINE as u64;
    while head.end() < size
        && head.end() < limit
        && ends_inside_header(head.bytes(), LineState::LineStart)
    {
        let want = head.end() + block_bytes.max(256);
        head.fill_to(input, size, want.min(size))?;
    }
    check_first_block(head.bytes(), head.end() >= size)?;
    Ok(())
}

/// Why a block could not be searched in place.
enum BlockError {
    /// A line runs more than [`MAX_LINE_OVERRUN`] past the block: stream the input instead.
    LongLine,
    Io(io::Error),
}

impl From<io::Error> for BlockError {
    fn from(error: io::Error) -> Self {
        BlockError::Io(error)
    }
}

/// Searches every block on `options.threads` threads (the caller's among them); `None` when a
/// line is too long to cut the input at line starts.
fn search_blocks<I: PositionedInput + ?Sized>(
    input: &I,
    size: u64,
    block_bytes: u64,
    set: &PatternSet,
    options: &ParallelOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<SearchOutcome>, ParallelError> {
    let blocks = size.div_ceil(block_bytes);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let searched = AtomicU64::new(0);
    let work = |report: &mut dyn FnMut(u64)| -> Result<Vec<(u64, BlockOutput)>, BlockError> {
        let mut scanner = BlockScanner::default();
        let mut outputs = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= blocks {
                break;
            }
            match scanner.scan(input, size, block_bytes, index, set, options) {
                Ok(output) => outputs.push((index, output)),
                Err(error) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
            let nominal = block_bytes.min(size - index * block_bytes);
            report(searched.fetch_add(nominal, Ordering::Relaxed) + nominal);
        }
        Ok(outputs)
    };
    let threads = options.threads.max(1).min(blocks.max(1) as usize);
    let results = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .map(|_| scope.spawn(|| work(&mut |_| {})))
            .collect();
        let mut results = vec![work(progress)];
        for helper in helpers {
            results.push(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        results
    });
    let mut outputs = Vec::with_capacity(blocks as usize);
    for result in results {
        match result {
            Ok(part) => outputs.extend(part),
            Err(BlockError::LongLine) => return Ok(None),
            Err(BlockError::Io(error)) => return Err(error.into()),
        }
    }
    outputs.sort_unstable_by_key(|(index, _)| *index);
    let mut outcome = SearchOutcome {
        counts: vec![StrandCounts::default(); set.patterns().len()],
        bytes_read: size,
        ..SearchOutcome::default()
    };
    for (_, output) in outputs {
        merge_block(&mut outcome, output, &options.plain_name);
    }
    if outcome.records.iter().all(|record| record.length == 0) {
        return Err(InputError::Empty.into());
    }
    Ok(Some(outcome))
}

/// One thread's buffers, reused from block to block (fresh memory costs a page fault per 4 KiB).
#[derive(Default)]
struct BlockScanner {
    window: Window,
    stripped: Vec<u8>,
}

impl BlockScanner {
    /// Reads and searches block `index`: the lines starting in its nominal byte range.
    fn scan<I: PositionedInput + ?Sized>(
        &mut self,
        input: &I,
        size: u64,
        block_bytes: u64,
        index: u64,
        set: &PatternSet,
        options: &ParallelOptions,
    ) -> Result<BlockOutput, BlockError> {
        let nominal_start = index * block_bytes;
        let nominal_end = (nominal_start + block_bytes).min(size);
        // From the byte before the block: a line starts at the block's first byte when that
        // byte is a line break.
        let from = nominal_start.saturating_sub(1);
        let window = &mut self.window;
        window.reset(from);
        window.fill_to(input, size, (nominal_end + READ_SLACK as u64).min(size))?;
        let start = if index == 0 {
            0
        } else {
            // A line break before the next block's edge; none: a line covers this block's
            // range, so it owns no line (an earlier block reads that line).
            let before_next = (nominal_end - 1 - from) as usize;
            match memchr::memchr(b'\n', &window.bytes()[..before_next]) {
                Some(at) => at + 1,
                None => return Ok(empty_block(set)),
            }
        };
        let end = if nominal_end == size {
            (size - from) as usize
        } else {
            window.line_end_after((nominal_end - 1 - from) as usize, input, size)?
        };
        let lookahead = window.lookahead(end, set.overlap(), input, size)?;
        Ok(scan_block(
            set,
            &window.bytes()[start..end],
            LineState::LineStart,
            &lookahead,
            options.collect_hits,
            &mut self.stripped,
        ))
    }
}

/// What a block owning no line reports: one empty segment, as [`scan_block`] gives for no bytes.
fn empty_block(set: &PatternSet) -> BlockOutput {
    let mut stripped = Vec::new();
    scan_block(set, &[], LineState::LineStart, &[], false, &mut stripped)
}

/// Bytes of the input from an offset, read on demand.
#[derive(Default)]
struct Window {
    /// Offset of `buffer[0]` in the input.
    from: u64,
    /// Read bytes, then spare room that is never shrunk (so it is zeroed only once).
    buffer: Vec<u8>,
    filled: usize,
}

impl Window {
    fn reset(&mut self, from: u64) {
        self.from = from;
        self.filled = 0;
    }

    fn bytes(&self) -> &[u8] {
        &self.buffer[..self.filled]
    }

    /// Offset just past the last byte read.
    fn end(&self) -> u64 {
        self.from + self.filled as u64
    }

    /// Reads until the window reaches offset `to` (at most `size`).
    fn fill_to<I: PositionedInput + ?Sized>(
        &mut self,
        input: &I,
        size: u64,
        to: u64,
    ) -> io::Result<()> {
        let want = (to.min(size).saturating_sub(self.from)) as usize;
        if self.buffer.len() < want {
            self.buffer.resize(want, 0);
        }
        while self.filled < want {
            let offset = self.end();
            let read = input.read_at(&mut self.buffer[self.filled..want], offset)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the input ended at byte {} while {size} bytes were expected (did it \
                         shrink during the search?)",
                        self.end()
                    ),
                ));
            }
            self.filled += read;
        }
        Ok(())
    }

    /// Index just past the first line break at or after `at`, reading on as needed; the end
    /// of the input when no break follows.
    fn line_end_after<I: PositionedInput + ?Sized>(
        &mut self,
        at: usize,
        input: &I,
        size: u64,
    ) -> Result<usize, BlockError> {
        let mut searched = at;
        loop {
            if let Some(found) = memchr::memchr(b'\n', &self.bytes()[searched..]) {
                return Ok(searched + found + 1);
            }
            if self.end() >= size {
                return Ok(self.filled);
            }
            if self.filled - at > MAX_LINE_OVERRUN {
                return Err(BlockError::LongLine);
            }
            searched = self.filled;
            self.fill_to(input, size, self.end() + READ_SLACK as u64 * 16)?;
        }
    }

    /// The first `wanted` bases of the record open at index `at` (a line start), reading on
    /// as needed.
    fn lookahead<I: PositionedInput + ?Sized>(
        &mut self,
        at: usize,
        wanted: usize,
        input: &I,
        size: u64,
    ) -> Result<Vec<u8>, BlockError> {
        loop {
            let (bases, done) = lookahead_within(&self.bytes()[at..], LineState::LineStart, wanted);
            if done || self.end() >= size {
                return Ok(bases);
            }
            if self.filled - at > MAX_LINE_OVERRUN {
                return Err(BlockError::LongLine);
            }
            self.fill_to(input, size, self.end() + READ_SLACK as u64)?;
        }
    }
}

/// The input read front to back, for the streaming search.
struct Stream<'a, I: ?Sized> {
    input: &'a I,
    offset: u64,
}

impl<'a, I: PositionedInput + ?Sized> Stream<'a, I> {
    fn new(input: &'a I) -> Self {
        Self { input, offset: 0 }
    }
}

impl<I: PositionedInput + ?Sized> Read for Stream<'_, I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.input.read_at(buf, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}
