//! Whole-input search on all cores: the calling thread reads raw blocks (about 1 MiB, cut at line
//! starts), worker threads strip line breaks and run [`search_chunk_with`] on each piece, and a
//! collector puts the pieces back in order to turn piece-relative positions into record positions.
//!
//! Why blocks of raw text rather than [`super::Chunker`]'s stripped chunks: stripping line breaks
//! costs about as much as searching, so it must happen on every core, not in the reading thread.
//! Each block carries the first `overlap` bases of the next block of the same record, so matches
//! spanning block edges are found once (they start in the earlier block's owned range).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;

use flate2::read::MultiGzDecoder;

use super::block::{lookahead_bases, scan_block, BlockOutput, LineState};
use super::twobit::{TwoBitRead, MAGIC_BYTES};
use super::{Chunker, Hit, InputError, PatternSet, RecordInfo, StrandCounts};

/// How a whole-input search runs.
#[derive(Clone, Debug)]
pub struct ParallelOptions {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Whether to keep individual hits (positions and matched text), or only count.
    pub collect_hits: bool,
    /// Raw bytes per block handed to a worker.
    pub block_bytes: usize,
    /// Name of the record of a plain sequence file.
    pub plain_name: String,
}

impl Default for ParallelOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            collect_hits: false,
            block_bytes: 1 << 19,
            plain_name: super::DEFAULT_PLAIN_NAME.to_string(),
        }
    }
}

/// One match with its record and the matched bases.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocatedHit {
    /// Index of the record in [`SearchOutcome::records`].
    pub record: u32,
    /// The match, `start` in record coordinates.
    pub hit: Hit,
    /// The matched bases as written in the input; reverse-complemented for strand `-`.
    pub matched: Vec<u8>,
}

/// Everything found in one input.
#[derive(Clone, Debug, Default)]
pub struct SearchOutcome {
    /// The records, in input order.
    pub records: Vec<RecordInfo>,
    /// Per pattern, matches by strand.
    pub counts: Vec<StrandCounts>,
    /// Individual matches sorted by record and start (empty unless `collect_hits`).
    pub hits: Vec<LocatedHit>,
    /// Input bytes read (after decompression).
    pub bytes_read: u64,
}

/// Why a whole-input search failed.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// The input is not a usable sequence file.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Longest header line kept whole in one block.
pub(super) const MAX_HEADER_LINE: usize = 1 << 16;

/// A block of raw input on its way to a worker.
struct RawBlock {
    index: u64,
    bytes: Vec<u8>,
    start: LineState,
    lookahead: Vec<u8>,
}

/// Searches everything `reader` yields (gzip and `.2bit` are detected from their magic bytes)
/// with `set`.
/// `progress` is called with the bytes read so far after each block.
pub fn search_reader(
    reader: impl Read,
    set: &PatternSet,
    options: &ParallelOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<SearchOutcome, ParallelError> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let decoder = MultiGzDecoder::new(buffered);
        search_plain(decoder, set, options, progress)
    } else if MAGIC_BYTES.iter().any(|magic| head.starts_with(magic)) {
        search_plain(TwoBitRead::new(buffered), set, options, progress)
    } else {
        search_plain(buffered, set, options, progress)
    }
}

pub(super) fn search_plain(
    mut reader: impl Read,
    set: &PatternSet,
    options: &ParallelOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<SearchOutcome, ParallelError> {
    let threads = options.threads.max(1);
    let block_bytes = options.block_bytes.max(8 * set.overlap()).max(2);
    let (block_tx, block_rx) = mpsc::sync_channel::<RawBlock>(threads * 2);
    let block_rx = std::sync::Mutex::new(block_rx);
    let (result_tx, result_rx) = mpsc::channel::<(u64, BlockOutput)>();
    // Block buffers go back to the reader: reusing them avoids a page fault per fresh 4 KiB.
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let result_tx = result_tx.clone();
            let recycle_tx = recycle_tx.clone();
            let block_rx = &block_rx;
            scope.spawn(move || {
                let mut stripped = Vec::new();
                loop {
                    let next = block_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(block)) = next else { break };
                    let output = scan_block(
                        set,
                        &block.bytes,
                        block.start,
                        &block.lookahead,
                        options.collect_hits,
                        &mut stripped,
                    );
                    let _ = recycle_tx.send(block.bytes);
                    if result_tx.send((block.index, output)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        let collector = scope.spawn(|| collect(result_rx, set, &options.plain_name));
        let read = read_blocks(
            &mut reader,
            block_bytes,
            set.overlap(),
            (block_tx, recycle_rx),
            progress,
        );
        let collected = collector
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let bytes_read = read?;
        let mut outcome = collected?;
        outcome.bytes_read = bytes_read;
        Ok(outcome)
    })
}

/// Reads `reader` into blocks cut at line starts and sends them, each with its look-ahead.
/// Returns the bytes read. The first block is also checked by a [`Chunker`] so that empty, binary
/// and non-sequence input get the same errors as the grid gives.
fn read_blocks(
    reader: &mut impl Read,
    block_bytes: usize,
    overlap: usize,
    (sender, recycled): (mpsc::SyncSender<RawBlock>, mpsc::Receiver<Vec<u8>>),
    progress: &mut dyn FnMut(u64),
) -> Result<u64, ParallelError> {
    let mut buffer: Vec<u8> = Vec::with_capacity(block_bytes * 2);
    let mut held: Option<RawBlock> = None;
    let mut total = 0u64;
    let mut next_start = LineState::LineStart;
    let mut index = 0u64;
    loop {
        let mut at_end = fill(reader, &mut buffer, block_bytes)?;
        // Never cut inside a header line (its name would be split): read on to its end, up to
        // MAX_HEADER_LINE bytes, past which the name is truncated.
        while !at_end
            && buffer.len() < block_bytes + MAX_HEADER_LINE
            && ends_inside_header(&buffer, next_start)
        {
            let want = buffer.len() + block_bytes.max(256);
            at_end = fill(reader, &mut buffer, want)?;
        }
        if index == 0 {
            check_first_block(&buffer, at_end)?;
        }
        if buffer.is_empty() {
            break;
        }
        // Cut after the last line break, unless that would leave a short block (a line longer
        // than half a block): then cut mid-line, so every block but the last is at least half full
        // and the next block always holds a whole look-ahead.
        let cut = match memchr::memrchr(b'\n', &buffer) {
            Some(newline) if !at_end && newline + 1 >= block_bytes / 2 => newline + 1,
            _ => buffer.len(),
        };
        let mut next = recycled.try_recv().unwrap_or_default();
        next.clear();
        next.reserve(block_bytes * 2);
        next.extend_from_slice(&buffer[cut..]);
        buffer.truncate(cut);
        let bytes = std::mem::replace(&mut buffer, next);
        total += bytes.len() as u64;
        let start = next_start;
        next_start = LineState::after(&bytes, start);
        let block = RawBlock {
            index,
            bytes,
            start,
            lookahead: Vec::new(),
        };
        index += 1;
        if let Some(mut previous) = held.replace(block) {
            if let Some(current) = &held {
                previous.lookahead = lookahead_bases(&current.bytes, current.start, overlap);
            }
            if sender.send(previous).is_err() {
                return Ok(total);
            }
        }
        progress(total);
        if at_end {
            break;
        }
    }
    if let Some(last) = held {
        let _ = sender.send(last);
    }
    Ok(total)
}

/// Whether `buffer`, which starts in `start`, ends inside a header line.
pub(super) fn ends_inside_header(buffer: &[u8], start: LineState) -> bool {
    LineState::after(buffer, start) == LineState::InHeader
}

/// Reads until `buffer` holds at least `want` bytes or the input ends; returns whether it ended.
fn fill(reader: &mut impl Read, buffer: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let missing = want.saturating_sub(buffer.len());
    if missing == 0 {
        return Ok(false);
    }
    // `read_to_end` reads into spare capacity without zeroing it first.
    let read = reader.take(missing as u64).read_to_end(buffer)?;
    Ok(read < missing)
}

/// Runs the streaming parser's checks (binary, non-sequence, empty) on the input's first bytes.
pub(super) fn check_first_block(buffer: &[u8], at_end: bool) -> Result<(), InputError> {
    let mut chunker = Chunker::new(1 << 16, 0);
    chunker.push(buffer, &mut |_| {})?;
    if at_end {
        chunker.finish(&mut |_| {})?;
    }
    Ok(())
}

/// Puts block outputs back in input order and turns them into record coordinates.
fn collect(
    results: mpsc::Receiver<(u64, BlockOutput)>,
    set: &PatternSet,
    plain_name: &str,
) -> Result<SearchOutcome, ParallelError> {
    let mut outcome = SearchOutcome {
        counts: vec![StrandCounts::default(); set.patterns().len()],
        ..SearchOutcome::default()
    };
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    for (index, output) in results {
        waiting.insert(index, output);
        while let Some(output) = waiting.remove(&next) {
            merge_block(&mut outcome, output, plain_name);
            next += 1;
        }
    }
    if outcome.records.iter().all(|record| record.length == 0) {
        return Err(InputError::Empty.into());
    }
    Ok(outcome)
}

/// Appends one block's segments and hits to the outcome (blocks arrive here in input order).
pub(super) fn merge_block(outcome: &mut SearchOutcome, output: BlockOutput, plain_name: &str) {
    for (total, counts) in outcome.counts.iter_mut().zip(&output.counts) {
        total.forward += counts.forward;
        total.reverse += counts.reverse;
    }
    let mut bases_before = Vec::with_capacity(output.segments.len());
    for segment in output.segments {
        match segment.header {
            Some(name) => outcome.records.push(RecordInfo { name, length: 0 }),
            None if outcome.records.is_empty() && segment.bases > 0 => {
                outcome.records.push(RecordInfo {
                    name: plain_name.to_string(),
                    length: 0,
                });
            }
            None => {}
        }
        let record_index = outcome.records.len().saturating_sub(1);
        let base = outcome.records.last().map_or(0, |record| record.length);
        bases_before.push((record_index as u32, base));
        if let Some(record) = outcome.records.last_mut() {
            record.length += segment.bases;
        }
    }
    for local in output.hits {
        let Some(&(record, base)) = bases_before.get(local.segment as usize) else {
            continue;
        };
        let mut hit = local.hit;
        hit.start += base;
        outcome.hits.push(LocatedHit {
            record,
            hit,
            matched: local.matched,
        });
    }
}
