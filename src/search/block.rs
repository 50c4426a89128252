//! One raw block of FASTA or plain-sequence text: split at headers into record segments, line
//! breaks stripped, each segment searched with [`search_chunk_with`]. Positions stay relative to
//! the segment; [`super::parallel`] turns them into record positions once blocks are in order.
//!
//! Line rules match [`super::Chunker`]: a line starting with `>` is a header whose name ends at the
//! first whitespace; `\r` is dropped wherever it appears in sequence; blank lines are skipped.

use super::pattern::complement;
use super::{count_chunk, search_chunk_with, Chunk, Hit, PatternSet, Strand, StrandCounts};

/// Longest record name kept (as in the chunker).
const MAX_NAME_BYTES: usize = 4096;

/// Where a block starts relative to the input's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineState {
    /// At the start of a line.
    LineStart,
    /// Inside a header line whose name an earlier block already read.
    InHeader,
    /// Inside a sequence line.
    InSequence,
}

impl LineState {
    /// The state after `bytes`, which started in `self`.
    pub fn after(bytes: &[u8], start: LineState) -> LineState {
        let (line, start) = match memchr::memrchr(b'\n', bytes) {
            Some(newline) => (&bytes[newline + 1..], LineState::LineStart),
            None => (bytes, start),
        };
        if start != LineState::LineStart {
            return start;
        }
        match line.iter().find(|&&b| b != b'\r') {
            None => LineState::LineStart,
            Some(b'>') => LineState::InHeader,
            Some(_) => LineState::InSequence,
        }
    }
}

/// A run of one record's bases inside a block.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The record's name when this segment starts a record (its header is in this block).
    pub header: Option<String>,
    /// Bases of the record in this block.
    pub bases: u64,
}

/// A hit relative to its segment.
#[derive(Debug)]
pub(crate) struct LocalHit {
    pub segment: u32,
    pub hit: Hit,
    pub matched: Vec<u8>,
}

/// What a worker reports for one block.
#[derive(Debug)]
pub(crate) struct BlockOutput {
    pub segments: Vec<Segment>,
    pub hits: Vec<LocalHit>,
    pub counts: Vec<StrandCounts>,
}

/// Scans one block. Binary input is refused from the first block by the caller (scanning every
/// block for NUL bytes would cost a tenth of the search). `lookahead` holds the first bases of the next block when the block's last
/// record continues there; `stripped` is a reusable buffer.
pub(crate) fn scan_block(
    set: &PatternSet,
    raw: &[u8],
    start: LineState,
    lookahead: &[u8],
    collect_hits: bool,
    stripped: &mut Vec<u8>,
) -> BlockOutput {
    let mut scan = Scan {
        set,
        collect_hits,
        stripped,
        output: BlockOutput {
            segments: vec![Segment {
                header: None,
                bases: 0,
            }],
            hits: Vec::new(),
            counts: vec![StrandCounts::default(); set.patterns().len()],
        },
    };
    scan.stripped.clear();
    let mut pos = 0;
    let mut state = start;
    // Width of the last full line, once seen: lines of that width are then copied in runs.
    let mut line_width: Option<usize> = None;
    let mut at_line_start = start == LineState::LineStart;
    while pos < raw.len() {
        match state {
            LineState::InHeader => {
                pos = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |at| pos + at + 1);
                state = LineState::LineStart;
                at_line_start = true;
            }
            LineState::LineStart => match raw[pos] {
                b'\n' | b'\r' => pos += 1,
                b'>' => {
                    pos = scan.header(raw, pos);
                    state = LineState::InHeader;
                }
                _ => {
                    let copied = line_width.map_or(0, |width| {
                        copy_uniform_lines(&raw[pos..], width, scan.stripped)
                    });
                    pos += copied;
                    if copied == 0 {
                        state = LineState::InSequence;
                    }
                }
            },
            LineState::InSequence => match memchr::memchr2(b'\n', b'\r', &raw[pos..]) {
                Some(at) => {
                    scan.stripped.extend_from_slice(&raw[pos..pos + at]);
                    if raw[pos + at] == b'\n' {
                        if at_line_start && at > 0 {
                            line_width = Some(at);
                        }
                        state = LineState::LineStart;
                        at_line_start = true;
                    } else {
                        at_line_start = false;
                    }
                    pos += at + 1;
                }
                None => {
                    scan.stripped.extend_from_slice(&raw[pos..]);
                    pos = raw.len();
                }
            },
        }
    }
    scan.finish_segment(lookahead);
    scan.output
}

/// The first `wanted` bases of `raw` (which starts in `start`) that belong to the record open at
/// its start: collection stops at the first header.
pub(crate) fn lookahead_bases(raw: &[u8], start: LineState, wanted: usize) -> Vec<u8> {
    lookahead_within(raw, start, wanted).0
}

/// [`lookahead_bases`], and whether the answer is final: `wanted` bases were found or the
/// record ended (a header) before `raw` did, so bytes after `raw` cannot add to it.
pub(crate) fn lookahead_within(raw: &[u8], start: LineState, wanted: usize) -> (Vec<u8>, bool) {
    let mut bases = Vec::with_capacity(wanted);
    let mut pos = 0;
    let mut state = start;
    while pos < raw.len() && bases.len() < wanted {
        match state {
            // A block starting inside a header belongs to a record that begins in it.
            LineState::InHeader => return (bases, true),
            LineState::LineStart => match raw[pos] {
                b'\n' | b'\r' => pos += 1,
                b'>' => return (bases, true),
                _ => state = LineState::InSequence,
            },
            LineState::InSequence => {
                let byte = raw[pos];
                if byte == b'\n' {
                    state = LineState::LineStart;
                } else if byte != b'\r' {
                    bases.push(byte);
                }
                pos += 1;
            }
        }
    }
    let done = bases.len() >= wanted || state == LineState::InHeader;
    (bases, done)
}

/// Lines per run checked at once by [`copy_uniform_lines`].
const RUN_LINES: usize = 16;

/// Copies the bases of whole runs of [`RUN_LINES`] lines that are all `width` bases then `\n`
/// (the common FASTA layout), without a search per line; returns the bytes consumed (0 when the
/// next run is not uniform: a shorter line, `\r`, a header or the end of the block).
///
/// A run qualifies when the byte after each line's `width` bases is `\n`, no line starts with `>`,
/// and no copied byte is a control character (`\n` and `\r` are below 0x20, letters are not):
/// then no other line break hides inside. The check runs on the copy, where it vectorises.
fn copy_uniform_lines(data: &[u8], width: usize, out: &mut Vec<u8>) -> usize {
    let stride = width + 1;
    let mut consumed = 0;
    while let Some(run) = data.get(consumed..consumed + RUN_LINES * stride) {
        let shaped = run
            .chunks_exact(stride)
            .all(|line| line[width] == b'\n' && line[0] != b'>');
        if !shaped {
            break;
        }
        let copied_from = out.len();
        for line in run.chunks_exact(stride) {
            out.extend_from_slice(&line[..width]);
        }
        let lowest = out[copied_from..]
            .iter()
            .fold(u8::MAX, |low, &b| low.min(b));
        if lowest < 0x20 {
            out.truncate(copied_from);
            break;
        }
        consumed += run.len();
    }
    consumed
}

/// Scanning state of one block.
struct Scan<'a> {
    set: &'a PatternSet,
    collect_hits: bool,
    stripped: &'a mut Vec<u8>,
    output: BlockOutput,
}

impl Scan<'_> {
    /// Starts a record at the header line at `pos`; returns the position after its name.
    fn header(&mut self, raw: &[u8], pos: usize) -> usize {
        self.finish_segment(&[]);
        let name_start = pos + 1;
        let name_end = raw[name_start..]
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .map_or(raw.len(), |at| name_start + at);
        let name = &raw[name_start..name_end.min(name_start + MAX_NAME_BYTES)];
        let header = Some(String::from_utf8_lossy(name).into_owned());
        self.output.segments.push(Segment { header, bases: 0 });
        name_end
    }

    /// Searches the current segment's bases (plus `lookahead`) and starts an empty buffer.
    fn finish_segment(&mut self, lookahead: &[u8]) {
        let owned = self.stripped.len();
        let segment = self.output.segments.len() - 1;
        self.output.segments[segment].bases = owned as u64;
        if owned == 0 {
            return;
        }
        self.stripped.extend_from_slice(lookahead);
        let chunk = Chunk {
            bases: self.stripped,
            owned_len: owned,
            record_offset: 0,
        };
        if !self.collect_hits {
            count_chunk(self.set, &chunk, &mut self.output.counts);
            self.stripped.clear();
            return;
        }
        let first_hit = self.output.hits.len();
        let (counts, hits) = (&mut self.output.counts, &mut self.output.hits);
        let (set, collect, bases) = (self.set, self.collect_hits, &*self.stripped);
        search_chunk_with(set, &chunk, &mut |hit| {
            counts[hit.pattern as usize].add(hit.strand);
            if collect {
                let length = set.patterns()[hit.pattern as usize].sequence.len();
                let matched = matched_bases(bases, hit, length);
                hits.push(LocalHit {
                    segment: segment as u32,
                    hit,
                    matched,
                });
            }
        });
        self.output.hits[first_hit..].sort_unstable_by_key(|local| local.hit);
        self.stripped.clear();
    }
}

/// The bases a hit covers as seqkit prints them: as written for `+`, reverse-complemented
/// (case kept) for `-`.
pub(crate) fn matched_bases(bases: &[u8], hit: Hit, length: usize) -> Vec<u8> {
    let start = hit.start as usize;
    let window = &bases[start.min(bases.len())..(start + length).min(bases.len())];
    match hit.strand {
        Strand::Forward => window.to_vec(),
        Strand::Reverse => window
            .iter()
            .rev()
            .map(|&b| {
                let c = complement(b.to_ascii_uppercase());
                if b.is_ascii_lowercase() {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}
