//! Ranges of the object kept under a storage id read from Redis in one script call, which checks
//! how it is kept (its meta key's `format` and `block_size`, or for an object stored before
//! storage ids its record's) and how many bases are readable (an upload in progress reads as
//! far as its blocks are written), and returns, of each block the range touches, only the bytes
//! of the range: packed bases with the block's exceptions, or raw bytes.

use ::redis::Script;
use bytes::Bytes;

use super::keys::{self, GENOME_BLOCK_BASES, GENOME_BLOCK_BYTES};
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
    /// What every genome stored by this version has.
    fn packed() -> Self {
        Layout {
            words: (
                StoredFormat::Packed.as_str().to_string(),
                GENOME_BLOCK_BASES.to_string(),
            ),
            format: StoredFormat::Packed,
            block_size: GENOME_BLOCK_BASES,
        }
    }

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

/// `len` bases from `offset`, decoded: one script call that checks how the genome is kept and
/// reads, of each block the range touches, only the bytes of the range (and, packed, the
/// block's exceptions). The layout tried first is a packed genome's; a genome kept otherwise
/// (a command input, or a genome stored before packing) answers with its layout, and the read
/// is made again with it.
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
    let mut layout = Layout::packed();
    // A removal and a new upload under the same name between two tries may change the layout
    // again; a few tries settle it.
    for _ in 0..4 {
        let spans = block_spans(offset, len, layout.block_size);
        let script = Script::new(include_str!("lua/genome_read.lua"));
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(storage)
            .arg(format!("{}:{}", layout.words.0, layout.words.1));
        for span in &spans {
            let wanted = match layout.format {
                StoredFormat::Raw => span.bases.clone(),
                StoredFormat::Packed => span.packed_bytes(),
            };
            invocation
                .key(keys::genome_block(storage, span.block))
                .arg(wanted.start)
                .arg(wanted.end - 1);
            if layout.format == StoredFormat::Packed {
                invocation
                    .key(keys::genome_exceptions(storage, span.block))
                    .arg(0)
                    .arg(-1);
            }
        }
        let reply: Vec<Vec<u8>> = backend.invoke(&invocation).await?;
        let mut reply = reply.into_iter();
        let word = reply.next().unwrap_or_default();
        match word.as_slice() {
            b"ok" => {
                let bases = reply.next().unwrap_or_default();
                let bases = std::str::from_utf8(&bases)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .unwrap_or(0);
                if end > bases {
                    return Err(BackendError::Other(format!(
                        "bases {offset}..{end} lie past the {bases} readable under {storage}"
                    )));
                }
                let parts: Vec<Vec<u8>> = reply.collect();
                return assemble(storage, &layout, &spans, &parts, len);
            }
            b"layout" => {
                let mut word =
                    || String::from_utf8_lossy(&reply.next().unwrap_or_default()).into_owned();
                let (format, block_size) = (word(), word());
                layout = Layout::from_words(storage, format, block_size)?;
            }
            _ => {
                return Err(BackendError::Other(format!(
                    "nothing is stored under {storage}"
                )));
            }
        }
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
    let mut bases = Vec::with_capacity(len as usize);
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
