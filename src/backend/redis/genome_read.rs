//! Ranges of the object kept under a storage id read from Redis in one transaction, which reads
//! how it is kept (its meta key's `format` and `block_size`, or for an object stored before
//! storage ids its record's) and how many bases are readable (an upload in progress reads as
//! far as its blocks are written), and, of each block the range touches, only the bytes of the
//! range: packed bases with the block's exceptions, or raw bytes.

use bytes::Bytes;

use super::keys::{self, GENOME_BLOCK_BYTES};
use super::RedisBackend;
use crate::backend::packed::{block_spans, decode_span, BlockSpan, Exceptions, StoredFormat};
use crate::backend::{BackendError, BackendResult};

/// How a stored genome's blocks are kept, as its record says (`format`, `block_size`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    /// The record's words, empty where it has none (a genome stored before packing).
    words: (String, String),
    format: StoredFormat,
    /// Bases (packed) or bytes (raw) per block.
    block_size: u64,
}

impl Layout {
    /// The layout a record's words name. A record without them was written before genomes were
    /// packed: raw, in blocks of [`GENOME_BLOCK_BYTES`].
    fn from_words(hash: &str, format: String, block_size: String) -> BackendResult<Self> {
        let parsed = StoredFormat::parse((!format.is_empty()).then_some(format.as_str()))
            .map_err(|err| BackendError::Other(format!("stored genome {hash}: {err}")))?;
        let size = match block_size.as_str() {
            "" => Some(GENOME_BLOCK_BYTES),
            text => text.parse::<u64>().ok(),
        };
        let size = size.filter(|&size| {
            size > 0
                && (parsed == StoredFormat::Raw || (size % 4 == 0 && size <= u64::from(u32::MAX)))
        });
        let Some(size) = size else {
            return Err(BackendError::Corrupt(format!(
                "stored genome {hash}: blocks of {block_size:?}"
            )));
        };
        Ok(Layout {
            // The record's own words, so the read script recognises them.
            words: (format, block_size),
            format: parsed,
            block_size: size,
        })
    }
}

/// Most objects whose layout a process remembers; past it, the memory starts over.
const MAX_LAYOUTS: usize = 4096;

/// How the objects this process read are kept, by storage id: a storage id names one object,
/// written once, so what its first read found holds for every later read (a read that finds
/// it otherwise learns the new layout and reads again).
#[derive(Default)]
pub(super) struct Layouts(std::sync::Mutex<std::collections::HashMap<String, Layout>>);

impl Layouts {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Layout>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, storage: &str) -> Option<Layout> {
        self.lock().get(storage).cloned()
    }

    fn remember(&self, storage: &str, layout: &Layout) {
        let mut layouts = self.lock();
        if layouts.len() >= MAX_LAYOUTS {
            layouts.clear();
        }
        layouts.insert(storage.to_string(), layout.clone());
    }

    fn forget(&self, storage: &str) {
        self.lock().remove(storage);
    }
}

/// `len` bases from `offset`, decoded: one transaction that reads how the genome is kept and,
/// of each block the range touches, only the bytes of the range (and, packed, the block's
/// exceptions). The first read of an object in this process asks only how it is kept, and the
/// read is then made with that layout.
pub(super) async fn read_stored(
    backend: &RedisBackend,
    storage: &str,
    offset: u64,
    len: u64,
) -> BackendResult<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let end = offset
        .checked_add(len)
        .ok_or_else(|| BackendError::Other(format!("genome range {offset}+{len}")))?;
    // Unknown until a first read of the object asks (without its bytes).
    let mut layout = backend.layouts.get(storage);
    // A removal and a new upload under the same name between two tries may change the layout
    // again; a few tries settle it.
    for _ in 0..4 {
        let spans = layout
            .as_ref()
            .map(|layout| block_spans(offset, len, layout.block_size))
            .unwrap_or_default();
        // One transaction: how the object is kept and the bytes, read at one instant. Plain
        // commands rather than a script: a script's reply of a megabyte passes through the
        // script engine, which made Redis spend milliseconds per chunk.
        let mut read = ::redis::pipe();
        read.atomic()
            .hget(
                keys::genome_storage_meta(storage),
                &["bases", "format", "block_size"],
            )
            .hget(
                keys::genome_record(storage),
                &["bases", "format", "block_size", "storage"],
            );
        for (span, layout) in spans.iter().zip(std::iter::repeat(&layout).flatten()) {
            let wanted = match layout.format {
                StoredFormat::Raw => span.bases.clone(),
                StoredFormat::Packed => span.packed_bytes(),
            };
            read.getrange(
                keys::genome_block(storage, span.block),
                wanted.start as isize,
                (wanted.end - 1) as isize,
            );
            if layout.format == StoredFormat::Packed {
                read.getrange(keys::genome_exceptions(storage, span.block), 0, -1);
            }
        }
        let replies: Vec<::redis::Value> = backend
            .request(|mut conn| {
                let read = &read;
                async move { read.query_async(&mut conn).await }
            })
            .await?;
        let mut replies = replies.into_iter();
        let mut fields = || -> BackendResult<Vec<Option<String>>> {
            let value = replies.next().unwrap_or(::redis::Value::Nil);
            ::redis::from_owned_redis_value(value)
                .map_err(|err| BackendError::Corrupt(format!("how {storage} is kept: {err}")))
        };
        let (meta, record) = (fields()?, fields()?);
        // The meta key of the storage id; for an object stored before storage ids, the record
        // kept under the same name, unless it names another storage id.
        let kept = match (meta.first(), record.first(), record.get(3)) {
            (Some(Some(_)), _, _) => meta,
            (_, Some(Some(_)), Some(named)) if named.as_deref().map_or(true, |s| s == storage) => {
                record
            }
            _ => {
                backend.layouts.forget(storage);
                return Err(BackendError::Other(format!(
                    "nothing is stored under {storage}"
                )));
            }
        };
        let word = |i: usize| kept.get(i).cloned().flatten().unwrap_or_default();
        let (bases, format, block_size) = (word(0), word(1), word(2));
        let Some(known) =
            layout.filter(|known| known.words == (format.clone(), block_size.clone()))
        else {
            let found = Layout::from_words(storage, format, block_size)?;
            backend.layouts.remember(storage, &found);
            layout = Some(found);
            continue;
        };
        let bases = bases.parse::<u64>().unwrap_or(0);
        if end > bases {
            return Err(BackendError::Other(format!(
                "bases {offset}..{end} lie past the {bases} readable under {storage}"
            )));
        }
        let parts = replies
            .map(::redis::from_owned_redis_value::<Vec<u8>>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| BackendError::Corrupt(format!("stored genome {storage}: {err}")))?;
        return assemble(storage, &known, &spans, &parts, len);
    }
    Err(BackendError::Other(format!(
        "the object stored under {storage} changed while it was read; try again"
    )))
}

/// The range's bytes from the parts the read script returned: raw parts in order, or a packed
/// block's bytes and exceptions per span.
fn assemble(
    hash: &str,
    layout: &Layout,
    spans: &[BlockSpan],
    parts: &[Vec<u8>],
    len: u64,
) -> BackendResult<Bytes> {
    let corrupt = |what: String| BackendError::Corrupt(format!("stored genome {hash}: {what}"));
    let mut bases = crate::buffers::take(len as usize);
    match layout.format {
        StoredFormat::Raw => {
            for part in parts {
                bases.extend_from_slice(part);
            }
        }
        StoredFormat::Packed => {
            if parts.len() != 2 * spans.len() {
                return Err(corrupt(format!(
                    "{} parts for {} blocks",
                    parts.len(),
                    spans.len()
                )));
            }
            for (span, pair) in spans.iter().zip(parts.chunks_exact(2)) {
                let exceptions = Exceptions::parse(&pair[1])
                    .map_err(|err| corrupt(format!("block {}: {err}", span.block)))?;
                decode_span(span, &pair[0], &exceptions, &mut bases)
                    .map_err(|err| corrupt(err.to_string()))?;
            }
        }
    }
    if bases.len() as u64 != len {
        return Err(corrupt(format!(
            "{} of {len} bases could be read",
            bases.len()
        )));
    }
    Ok(Bytes::from(bases))
}
