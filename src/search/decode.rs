//! Turns pushed input bytes into decoded bytes: gzip and `.2bit` are sniffed from their magic
//! bytes (never from a file name); a `.2bit` file is unpacked into FASTA text, and gzip is
//! inflated one bounded piece at a time, so the decompressed-size limit sees every
//! piece before the next is produced. A small gzip that expands a thousandfold is refused after
//! about `limit` bytes of work and a few tens of KiB of memory, not after its whole expansion.

use std::io::Write;

use flate2::write::MultiGzDecoder;

use super::twobit::{TwoBitDecoder, MAGIC_BYTES};
use super::InputError;

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Bytes it takes to tell the formats apart.
const SNIFF_LEN: usize = 4;

/// Where decoding stands: the format is decided once, from the first four bytes.
enum Format {
    /// Fewer than four bytes seen so far.
    Sniffing(Vec<u8>),
    Plain,
    /// Packed bases, unpacked into FASTA text a bounded piece at a time.
    TwoBit(Box<TwoBitDecoder>),
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
    /// Whether the input was sniffed as gzip or `.2bit`, so decoded bytes outnumber the input's
    /// (kept after `finish` takes the decoder).
    packed: bool,
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
            packed: false,
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
            Format::TwoBit(decoder) => decoder.buffered_len(),
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
            Format::TwoBit(_) => self.unpack(input, sink),
            Format::Sniffing(head) => {
                head.extend_from_slice(input);
                if head.len() < SNIFF_LEN {
                    return Ok(());
                }
                let head = std::mem::take(head);
                self.sniff(&head);
                self.push(&head, sink)
            }
        }
    }

    /// Ends the input: passes on what is still buffered; a truncated gzip stream is an error.
    pub(super) fn finish(mut self, sink: &mut Sink<'_>) -> Result<(), InputError> {
        match std::mem::replace(&mut self.format, Format::Plain) {
            Format::Sniffing(head) => {
                self.sniff(&head);
                if matches!(self.format, Format::Plain) {
                    self.raw_read += head.len() as u64;
                    return self.pass(&head, sink);
                }
                self.push(&head, sink)?;
                self.finish(sink)
            }
            Format::Plain => Ok(()),
            Format::TwoBit(decoder) => decoder.finish(&mut |text| self.pass(text, sink)),
            Format::Gzip(decoder) => {
                // Input is exhausted, so this flushes only the inflater's window: bounded.
                let rest = decoder.finish().map_err(InputError::Gzip)?;
                self.pass(&rest, sink)
            }
        }
    }

    /// Decides the format from the input's first bytes.
    fn sniff(&mut self, head: &[u8]) {
        self.format = if head.starts_with(&GZIP_MAGIC) {
            Format::Gzip(Box::new(MultiGzDecoder::new(Vec::new())))
        } else if MAGIC_BYTES.iter().any(|magic| head.starts_with(magic)) {
            Format::TwoBit(Box::default())
        } else {
            Format::Plain
        };
        self.packed = !matches!(self.format, Format::Plain);
    }

    /// Unpacks `.2bit` bytes into FASTA text, passing each piece on (and checking the limit).
    fn unpack(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), InputError> {
        self.raw_read += input.len() as u64;
        let Format::TwoBit(mut decoder) = std::mem::replace(&mut self.format, Format::Plain) else {
            unreachable!("unpack is only called on .2bit input")
        };
        let read = decoder.push(input, &mut |text| self.pass(text, sink));
        self.format = Format::TwoBit(decoder);
        read
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
            return Err(if self.packed {
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
