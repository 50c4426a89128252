//! Turns pushed input bytes into decoded bytes: gzip is sniffed from the magic bytes (never from a
//! file name) and inflated one bounded piece at a time, so the decompressed-size limit sees every
//! piece before the next is produced. A small gzip that expands a thousandfold is refused after
//! about `limit` bytes of work and a few tens of KiB of memory, not after its whole expansion.

use std::io::Write;

use flate2::write::MultiGzDecoder;

use super::InputError;

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where decoding stands: gzip or not is decided once, from the first two bytes.
enum Format {
    /// Fewer than two bytes seen so far.
    Sniffing(Vec<u8>),
    Plain,
    /// Each `write` inflates at most one internal buffer (32 KiB) into the inner `Vec`, which is
    /// drained after every call.
    Gzip(Box<MultiGzDecoder<Vec<u8>>>),
}

/// Decodes pushed bytes and passes them on, refusing input that decodes past `max_decoded`.
pub(super) struct Decoder {
    format: Format,
    /// Raw (possibly compressed) bytes consumed, for error messages.
    raw_read: u64,
    /// Decoded bytes passed on.
    decoded: u64,
    /// Most decoded bytes accepted; `None` = no limit.
    max_decoded: Option<u64>,
    /// Whether the input was sniffed as gzip (kept after `finish` takes the inflater).
    gzip: bool,
}

/// Receives decoded bytes in order.
pub(super) type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), InputError> + 'a;

impl Decoder {
    pub(super) fn new() -> Self {
        Self {
            format: Format::Sniffing(Vec::new()),
            raw_read: 0,
            decoded: 0,
            max_decoded: None,
            gzip: false,
        }
    }

    pub(super) fn set_max_decoded(&mut self, bytes: u64) {
        self.max_decoded = Some(bytes);
    }

    /// Decoded bytes passed on so far.
    pub(super) fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Bytes held here between pushes that the caller can see: the sniffed head and any inflated
    /// output not yet passed on (the inflater's own window is a fixed few tens of KiB on top).
    pub(super) fn buffered_len(&self) -> usize {
        match &self.format {
            Format::Sniffing(head) => head.len(),
            Format::Plain => 0,
            Format::Gzip(decoder) => decoder.get_ref().len(),
        }
    }

    /// Decodes `input` and passes the result to `sink`, a bounded piece at a time.
    pub(super) fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), InputError> {
        match &mut self.format {
            Format::Plain => {
                self.raw_read += input.len() as u64;
                self.pass(input, sink)
            }
            Format::Gzip(_) => self.inflate(input, sink),
            Format::Sniffing(head) => {
                head.extend_from_slice(input);
                if head.len() < GZIP_MAGIC.len() {
                    return Ok(());
                }
                let head = std::mem::take(head);
                self.gzip = head.starts_with(&GZIP_MAGIC);
                self.format = if self.gzip {
                    Format::Gzip(Box::new(MultiGzDecoder::new(Vec::new())))
                } else {
                    Format::Plain
                };
                self.push(&head, sink)
            }
        }
    }

    /// Ends the input: passes on what is still buffered; a truncated gzip stream is an error.
    pub(super) fn finish(mut self, sink: &mut Sink<'_>) -> Result<(), InputError> {
        match std::mem::replace(&mut self.format, Format::Plain) {
            Format::Sniffing(head) => {
                self.raw_read += head.len() as u64;
                self.pass(&head, sink)
            }
            Format::Plain => Ok(()),
            Format::Gzip(decoder) => {
                // Input is exhausted, so this flushes only the inflater's window: bounded.
                let rest = decoder.finish().map_err(InputError::Gzip)?;
                self.pass(&rest, sink)
            }
        }
    }

    /// Feeds compressed bytes to the inflater one `write` at a time, passing each piece of output
    /// on (and checking the limit) before asking for more.
    fn inflate(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), InputError> {
        while !input.is_empty() {
            let Format::Gzip(decoder) = &mut self.format else {
                unreachable!("inflate is only called on gzip input")
            };
            let used = decoder.write(input).map_err(InputError::Gzip)?;
            if used == 0 {
                return Err(InputError::Gzip(std::io::ErrorKind::WriteZero.into()));
            }
            input = &input[used..];
            self.raw_read += used as u64;
            let decoded = std::mem::take(decoder.get_mut());
            let result = self.pass(&decoded, sink);
            if let Format::Gzip(decoder) = &mut self.format {
                *decoder.get_mut() = recycle(decoded);
            }
            result?;
        }
        Ok(())
    }

    /// Checks the limit, then hands `decoded` to the sink.
    fn pass(&mut self, decoded: &[u8], sink: &mut Sink<'_>) -> Result<(), InputError> {
        if decoded.is_empty() {
            return Ok(());
        }
        let total = self.decoded + decoded.len() as u64;
        if let Some(limit) = self.max_decoded.filter(|&limit| total > limit) {
            return Err(if self.gzip {
                InputError::ExpandsPastLimit {
                    limit,
                    compressed: self.raw_read,
                }
            } else {
                InputError::TooLarge { limit }
            });
        }
        self.decoded = total;
        sink(decoded)
    }
}

/// Empties a buffer but keeps its allocation.
fn recycle(mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.clear();
    buffer
}
