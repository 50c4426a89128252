//! A packed genome's file: its blocks one after another, each its packed bases then its
//! exceptions, then an index of where each block starts and how long its exceptions are, then
//! a fixed trailer (block size, bases, blocks, signature). The file describes itself, so a range
//! is read with a few positioned reads: the trailer, the index entries of the blocks it
//! touches, and of each block only the packed bytes of the range and the block's exceptions.
//! While the file is being written, the blocks written so far are readable too: the writer
//! flushes each whole block and publishes its index entry in [`Written`], shared with readers,
//! which read the file by that in-memory index until the trailer exists. It also appends the
//! entry to a block list beside the file, by which a worker on the same host reads the upload in
//! progress itself ([`read_kept`]) instead of receiving its bases from the master.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::backend::packed::{
    block_spans, decode_span, packed_len, BlockEncoder, BlockSpan, Exceptions, PackedBlock,
};
use crate::backend::{BackendError, BackendResult};

/// Bases per block: a block's exceptions are read whole with any range in it, so blocks stay a
/// few MiB of bases, about one search chunk.
pub(super) const BLOCK_BASES: u32 = 1 << 22;
/// The trailer's last eight bytes; the digit is the layout's version.
const SIGNATURE: [u8; 8] = *b"GWPACK01";
/// Trailer bytes: block size, bases, blocks (64-bit little-endian), signature.
const TRAILER_LEN: u64 = 32;
/// Index bytes per block: where it starts, and its exceptions' length (64-bit little-endian).
const ENTRY_LEN: u64 = 16;
/// The block list beside a file being written starts with the block size (64-bit
/// little-endian)...
const LISTING_HEADER_LEN: u64 = 8;
/// ...followed by every block written and flushed: where it starts, its exceptions' length and
/// its bases (64-bit little-endian each).
const LISTED_LEN: u64 = 24;
/// Most bytes a block's exceptions may take: an N run and a lower-case run for every other
/// base, and every base kept as another byte. Bounds what a damaged index makes a read allocate.
fn max_exceptions_len(block_bases: u64) -> u64 {
    12 + 8 * block_bases + 5 * block_bases
}

/// What of a packed file being written is readable: shared by its writer and its readers.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Where the file is (it is renamed when its upload commits).
    pub(super) path: PathBuf,
    /// (start, exceptions' length) of every block written and flushed.
    index: Vec<(u64, u64)>,
    /// Bases in those blocks.
    pub(super) bases: u64,
}

/// A [`Written`] as writer and readers share it.
pub(super) type SharedWritten = Arc<Mutex<Written>>;

/// Locks a [`SharedWritten`]; a panicked holder left nothing half-updated worth refusing.
pub(super) fn lock(written: &SharedWritten) -> std::sync::MutexGuard<'_, Written> {
    written.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a packed file as the bases stream in.
pub(super) struct PackedFileWriter {
    path: PathBuf,
    /// The blocks written so far, for readers.
    published: SharedWritten,
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// The block list, for readers in other processes, and where it is.
    listing: tokio::fs::File,
    listing_path: PathBuf,
    encoder: Option<BlockEncoder>,
    finished: Vec<PackedBlock>,
    /// (start, exceptions' length) of every block written.
    index: Vec<(u64, u64)>,
    written: u64,
    bases: u64,
}

impl PackedFileWriter {
    /// Creates `path` (truncating it) for a packed genome, and its block list at `listing_path`.
    pub(super) async fn create(path: PathBuf, listing_path: PathBuf) -> BackendResult<Self> {
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|err| io_error(&path, err))?;
        let mut listing = tokio::fs::File::create(&listing_path)
            .await
            .map_err(|err| io_error(&listing_path, err))?;
        listing
            .write_all(&u64::from(BLOCK_BASES).to_le_bytes())
            .await
            .map_err(|err| io_error(&listing_path, err))?;
        Ok(Self {
            listing,
            listing_path,
            published: Arc::new(Mutex::new(Written {
                path: path.clone(),
                ..Written::default()
            })),
            path,
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
            encoder: Some(BlockEncoder::new(BLOCK_BASES)),
            finished: Vec::new(),
            index: Vec::new(),
            written: 0,
            bases: 0,
        })
    }

    /// Appends bases; each block they complete is written.
    pub(super) async fn append(&mut self, bases: &[u8]) -> BackendResult<()> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.push(bases, &mut self.finished);
        }
        self.bases += bases.len() as u64;
        self.write_finished().await
    }

    /// What readers of the file being written share.
    pub(super) fn published(&self) -> SharedWritten {
        self.published.clone()
    }

    /// Writes the last, partial block, so that every base appended is readable.
    pub(super) async fn flush_last(&mut self) -> BackendResult<()> {
        if let Some(last) = self.encoder.take().and_then(BlockEncoder::finish) {
            self.finished.push(last);
        }
        self.write_finished().await
    }

    /// Writes the last block, the index and the trailer, and flushes the file.
    pub(super) async fn finish(&mut self) -> BackendResult<()> {
        self.flush_last().await?;
        let mut tail = Vec::with_capacity(self.index.len() * ENTRY_LEN as usize + 32);
        for (start, exceptions) in &self.index {
            tail.extend_from_slice(&start.to_le_bytes());
            tail.extend_from_slice(&exceptions.to_le_bytes());
        }
        for number in [u64::from(BLOCK_BASES), self.bases, self.index.len() as u64] {
            tail.extend_from_slice(&number.to_le_bytes());
        }
        tail.extend_from_slice(&SIGNATURE);
        self.write(&tail).await?;
        self.file
            .flush()
            .await
            .map_err(|err| io_error(&self.path, err))
    }

    /// Writes the blocks finished so far, flushes them to the file and publishes them.
    async fn write_finished(&mut self) -> BackendResult<()> {
        let blocks = std::mem::take(&mut self.finished);
        if blocks.is_empty() {
            return Ok(());
        }
        let (first, mut bases) = (self.index.len(), 0);
        let mut listed = Vec::with_capacity(blocks.len() * LISTED_LEN as usize);
        for block in blocks {
            let entry = (self.written, block.exceptions.len() as u64);
            self.index.push(entry);
            for number in [entry.0, entry.1, block.bases] {
                listed.extend_from_slice(&number.to_le_bytes());
            }
            self.write(&block.packed).await?;
            self.write(&block.exceptions).await?;
            bases += block.bases;
        }
        self.file
            .flush()
            .await
            .map_err(|err| io_error(&self.path, err))?;
        // Listed once the blocks are in the file, and published once listed: a worker handed a
        // range of them finds them in the list.
        self.listing
            .write_all(&listed)
            .await
            .map_err(|err| io_error(&self.listing_path, err))?;
        self.listing
            .flush()
            .await
            .map_err(|err| io_error(&self.listing_path, err))?;
        let mut published = lock(&self.published);
        published.index.extend_from_slice(&self.index[first..]);
        published.bases += bases;
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> BackendResult<()> {
        self.file
            .write_all(bytes)
            .await
            .map_err(|err| io_error(&self.path, err))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// What a packed file's trailer says.
struct Trailer {
    block_bases: u64,
    bases: u64,
    index_start: u64,
}

fn read_trailer(file: &File, path: &Path) -> BackendResult<Trailer> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let file_len = file
        .metadata()
        .map_err(|err| corrupt(err.to_string()))?
        .len();
    if file_len < TRAILER_LEN {
        return Err(corrupt(format!(
            "{file_len} bytes, too short for a packed genome"
        )));
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, file_len - TRAILER_LEN)
        .map_err(|err| corrupt(err.to_string()))?;
    if trailer[24..] != SIGNATURE {
        return Err(corrupt("no packed genome signature at its end".into()));
    }
    let number = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&trailer[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let (block_bases, bases, blocks) = (number(0), number(8), number(16));
    let index_start = blocks
        .checked_mul(ENTRY_LEN)
        .and_then(|index| file_len.checked_sub(TRAILER_LEN + index));
    let consistent = block_bases > 0
        && block_bases % 4 == 0
        && block_bases <= u64::from(u32::MAX)
        && bases.div_ceil(block_bases) == blocks;
    match index_start {
        Some(index_start) if consistent => Ok(Trailer {
            block_bases,
            bases,
            index_start,
        }),
        _ => Err(corrupt(format!(
            "a trailer of {bases} bases in {blocks} blocks of {block_bases} does not fit \
             {file_len} bytes"
        ))),
    }
}

/// Reads `len` bases from `offset` of the packed file at `path` (a blocking call: run it off
/// the async threads).
pub(super) fn read_range(path: &Path, offset: u64, len: u64) -> BackendResult<Bytes> {
    let file = File::open(path)
        .map_err(|err| BackendError::Other(format!("{}: {err}", path.display())))?;
    read_complete(&file, path, offset, len)
}

/// Reads `len` bases from `offset` of a packed genome kept at `path` once complete and at
/// `partial`, listed in `listing`, while it is being written (a blocking call: run it off the
/// async threads). The writer renames a complete file, then deletes its list: a read that
/// finds neither name, or loses the list, looks again under the complete name.
pub(super) fn read_kept(
    path: &Path,
    partial: &Path,
    listing: &Path,
    offset: u64,
    len: u64,
) -> BackendResult<Bytes> {
    let gone = |err: &std::io::Error| err.kind() == std::io::ErrorKind::NotFound;
    for _ in 0..3 {
        match File::open(path) {
            Ok(file) => return read_complete(&file, path, offset, len),
            Err(err) if !gone(&err) => return Err(io_error(path, err)),
            Err(_) => {}
        }
        let file = match File::open(partial) {
            Ok(file) => file,
            Err(err) if gone(&err) => continue,
            Err(err) => return Err(io_error(partial, err)),
        };
        let list = match File::open(listing) {
            Ok(list) => list,
            Err(err) if gone(&err) => continue,
            Err(err) => return Err(io_error(listing, err)),
        };
        let (layout, entries) = listed(&list, listing, offset, len)?;
        let spans = layout.spans(offset, len)?;
        return read_spans(&file, partial, &layout, &spans, &entries, len);
    }
    Err(BackendError::Other(format!(
        "{}: no such genome file",
        path.display()
    )))
}

/// The layout and index entries a block list gives for `len` bases from `offset`: only the
/// blocks that range touches are read, all of which the writer listed before the range was
/// handed out.
fn listed(
    list: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> BackendResult<(Layout, Vec<(u64, u64)>)> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let mut header = [0u8; LISTING_HEADER_LEN as usize];
    list.read_exact_at(&mut header, 0)
        .map_err(|err| corrupt(format!("header: {err}")))?;
    let block_bases = u64::from_le_bytes(header);
    if block_bases == 0 || block_bases % 4 != 0 || block_bases > u64::from(u32::MAX) {
        return Err(corrupt(format!("blocks of {block_bases} bases")));
    }
    let end = offset
        .checked_add(len)
        .ok_or_else(|| corrupt(format!("bases {offset}+{len}")))?;
    let spans = block_spans(offset, len, block_bases);
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Ok((
            Layout {
                block_bases,
                bases: end,
            },
            Vec::new(),
        ));
    };
    let mut raw = vec![0u8; ((last.block - first.block + 1) * LISTED_LEN) as usize];
    list.read_exact_at(&mut raw, LISTING_HEADER_LEN + first.block * LISTED_LEN)
        .map_err(|err| {
            corrupt(format!(
                "blocks {}..={} are not listed: {err}",
                first.block, last.block
            ))
        })?;
    let mut entries = Vec::with_capacity(raw.len() / LISTED_LEN as usize);
    let mut last_bases = 0;
    for (at, entry) in raw.chunks_exact(LISTED_LEN as usize).enumerate() {
        let number = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&entry[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let (start, exceptions, bases) = (number(0), number(8), number(16));
        let is_last = at + 1 == raw.len() / LISTED_LEN as usize;
        // Every block but a genome's last is whole.
        if bases > block_bases || (!is_last && bases != block_bases) {
            return Err(corrupt(format!(
                "block {} of {bases} bases",
                first.block + at as u64
            )));
        }
        entries.push((start, exceptions));
        last_bases = bases;
    }
    let layout = Layout {
        block_bases,
        bases: last.block * block_bases + last_bases,
    };
    Ok((layout, entries))
}

/// Reads `len` bases from `offset` of the complete packed file `file`, found at `path`.
fn read_complete(file: &File, path: &Path, offset: u64, len: u64) -> BackendResult<Bytes> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let trailer = read_trailer(file, path)?;
    let layout = Layout {
        block_bases: trailer.block_bases,
        bases: trailer.bases,
    };
    let spans = layout.spans(offset, len)?;
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Ok(Bytes::new());
    };
    let mut entries = vec![0u8; ((last.block - first.block + 1) * ENTRY_LEN) as usize];
    file.read_exact_at(&mut entries, trailer.index_start + first.block * ENTRY_LEN)
        .map_err(|err| corrupt(format!("index: {err}")))?;
    let entries: Vec<(u64, u64)> = entries
        .chunks_exact(ENTRY_LEN as usize)
        .map(|entry| {
            let number = |at: usize| {
                let mut word = [0u8; 8];
                word.copy_from_slice(&entry[at..at + 8]);
                u64::from_le_bytes(word)
            };
            (number(0), number(8))
        })
        .collect();
    read_spans(file, path, &layout, &spans, &entries, len)
}

/// Reads `len` bases from `offset` of a packed file still being written, as far as `written`
/// says its blocks are (a blocking call: run it off the async threads).
pub(super) fn read_written(written: &SharedWritten, offset: u64, len: u64) -> BackendResult<Bytes> {
    let (file, path, layout, spans, entries) = {
        let written = lock(written);
        let layout = Layout {
            block_bases: u64::from(BLOCK_BASES),
            bases: written.bases,
        };
        let spans = layout.spans(offset, len)?;
        let entries: Vec<(u64, u64)> = spans
            .iter()
            .filter_map(|span| written.index.get(span.block as usize).copied())
            .collect();
        // Opened under the lock: a commit renames the file under it too, and the open file
        // reads on whatever its name becomes.
        let file = File::open(&written.path)
            .map_err(|err| BackendError::Other(format!("{}: {err}", written.path.display())))?;
        (file, written.path.clone(), layout, spans, entries)
    };
    if entries.len() != spans.len() {
        return Err(BackendError::Corrupt(format!(
            "{}: fewer blocks written than its {} bases",
            path.display(),
            layout.bases
        )));
    }
    read_spans(&file, &path, &layout, &spans, &entries, len)
}

/// Block size and bases of a packed sequence, as far as it is readable.
struct Layout {
    block_bases: u64,
    bases: u64,
}

impl Layout {
    /// The blocks a range touches; an error if it lies past the readable bases.
    fn spans(&self, offset: u64, len: u64) -> BackendResult<Vec<BlockSpan>> {
        offset
            .checked_add(len)
            .filter(|end| *end <= self.bases)
            .ok_or_else(|| {
                BackendError::Other(format!(
                    "bases {offset}+{len} lie past the genome's {} readable bases",
                    self.bases
                ))
            })?;
        Ok(block_spans(offset, len, self.block_bases))
    }
}

/// Reads and decodes `spans` of a packed file whose blocks start and keep their exceptions as
/// `entries` (one per span) say.
fn read_spans(
    file: &File,
    path: &Path,
    layout: &Layout,
    spans: &[BlockSpan],
    entries: &[(u64, u64)],
    len: u64,
) -> BackendResult<Bytes> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let mut out = crate::buffers::take(len as usize);
    let mut exceptions = Vec::new();
    let mut packed = Vec::new();
    for (span, &(start, exceptions_len)) in spans.iter().zip(entries) {
        let block_bases = layout
            .block_bases
            .min(layout.bases - span.block * layout.block_bases);
        if exceptions_len > max_exceptions_len(block_bases) {
            return Err(corrupt(format!(
                "block {} claims {exceptions_len} bytes of exceptions",
                span.block
            )));
        }
        let bytes = span.packed_bytes();
        packed.resize((bytes.end - bytes.start) as usize, 0);
        file.read_exact_at(&mut packed, start + bytes.start)
            .map_err(|err| corrupt(format!("block {}: {err}", span.block)))?;
        exceptions.resize(exceptions_len as usize, 0);
        file.read_exact_at(&mut exceptions, start + packed_len(block_bases))
            .map_err(|err| corrupt(format!("block {} exceptions: {err}", span.block)))?;
        let parsed = Exceptions::parse(&exceptions)
            .map_err(|err| corrupt(format!("block {}: {err}", span.block)))?;
        decode_span(span, &packed, &parsed, &mut out).map_err(|err| corrupt(err.to_string()))?;
    }
    Ok(Bytes::from(out))
}

fn io_error(path: &Path, err: std::io::Error) -> BackendError {
    BackendError::Other(format!("{}: {err}", path.display()))
}
