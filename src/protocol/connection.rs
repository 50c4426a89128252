//! `Connection`: the one place that knows how frames look on the wire (mini-redis style).
//!
//! A frame is a 4-byte big-endian length and that many payload bytes. A payload is either a JSON
//! message (see `message.rs`) or raw bytes announced by the JSON frame before it; which one is next
//! is the protocol state's business, so this type reads raw frames and parses on request.
//! `read_frame` returns `Ok(None)` on a clean close between frames and an error on a close mid-frame.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::message::{classify_decode_error, ErrorCode, Message, PROTOCOL_VERSION};

/// Largest frame accepted unless configured otherwise: 16 MiB, room for a chunk task's data with
/// its header, small enough that a bad length cannot make a server allocate without bound.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest frame a server accepts before the peer's `hello` is welcomed: a hello is a few hundred
/// bytes, so an unauthenticated peer can make the server hold no more than this per connection.
pub const PRE_AUTH_MAX_FRAME: usize = 64 * 1024;
const LENGTH_PREFIX: usize = 4;
/// The buffer grows by at most this much beyond the bytes already received, so an announced
/// length holds no memory that was not sent.
const READ_STEP: usize = 64 * 1024;

/// Why reading or writing a frame failed.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// Socket error.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The peer announced a frame larger than the limit.
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Announced size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// No frame arrived within the read timeout.
    #[error("no data for {0:?}; closing idle connection")]
    Timeout(Duration),
    /// A frame's bytes did not all arrive within the frame deadline (a slow or stalling peer).
    #[error("a frame took longer than {0:?} to arrive; closing slow connection")]
    FrameTimeout(Duration),
    /// The frame was not a message this protocol knows.
    #[error("{message}")]
    Decode {
        /// `bad_json`, `unknown_type` or `bad_message`.
        code: ErrorCode,
        /// What was wrong, for the peer.
        message: String,
    },
    /// The peer closed the connection where a reply was expected.
    #[error("connection closed by peer")]
    Closed,
}

impl ProtocolError {
    /// The `error` frame code that tells the peer about this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::Decode { code, .. } => *code,
            ProtocolError::Timeout(_) | ProtocolError::FrameTimeout(_) => ErrorCode::Timeout,
            _ => ErrorCode::BadFrame,
        }
    }
}

/// One framed connection over any byte stream (TCP, Unix socket).
#[derive(Debug)]
pub struct Connection<S> {
    stream: BufWriter<S>,
    buffer: BytesMut,
    max_frame: usize,
    read_timeout: Option<Duration>,
    frame_timeout: Option<Duration>,
    /// When the first byte of the frame being read arrived.
    frame_started: Option<tokio::time::Instant>,
}

/// The JSON object actually written: the message plus the protocol version `v`.
#[derive(Serialize)]
struct Envelope<'a> {
    v: u32,
    #[serde(flatten)]
    message: &'a Message,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a stream with the default frame limit and no read timeout.
    pub fn new(stream: S) -> Self {
        Self {
            stream: BufWriter::with_capacity(64 * 1024, stream),
            buffer: BytesMut::with_capacity(64 * 1024),
            max_frame: DEFAULT_MAX_FRAME,
            read_timeout: None,
            frame_timeout: None,
            frame_started: None,
        }
    }

    /// Sets the largest frame this side accepts.
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// Changes the frame limit on a live connection (raised once a peer is authenticated).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Fails a read that waits longer than `timeout` for data (idle and slow peers).
    pub fn with_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Fails a frame whose bytes take longer than `timeout` from first to last, so a peer
    /// trickling one byte at a time cannot hold the connection (and its slot) forever.
    pub fn with_frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// The largest frame this side accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The underlying stream (for peer addresses and the like).
    pub fn get_ref(&self) -> &S {
        self.stream.get_ref()
    }

    /// Reads one raw frame; `Ok(None)` if the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        loop {
            if let Some(frame) = self.parse_frame()? {
                self.frame_started = (!self.buffer.is_empty()).then(tokio::time::Instant::now);
                return Ok(Some(frame));
            }
            let read = self.read_more().await?;
            if read == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(ProtocolError::Truncated)
                };
            }
        }
    }

    /// Reads what the stream has, within the idle timeout and what is left of the frame deadline.
    async fn read_more(&mut self) -> Result<usize, ProtocolError> {
        let now = tokio::time::Instant::now();
        let frame_deadline = match (self.frame_timeout, self.frame_started) {
            (Some(limit), Some(started)) => Some((started + limit, limit)),
            _ => None,
        };
        let idle_deadline = self.read_timeout.map(|limit| (now + limit, limit));
        let deadline = match (idle_deadline, frame_deadline) {
            (Some(idle), Some(frame)) if frame.0 < idle.0 => Some((frame.0, Err(frame.1))),
            (Some(idle), _) => Some((idle.0, Ok(idle.1))),
            (None, Some(frame)) => Some((frame.0, Err(frame.1))),
            (None, None) => None,
        };
        let read = match deadline {
            Some((at, which)) => {
                tokio::time::timeout_at(at, self.stream.read_buf(&mut self.buffer))
                    .await
                    .map_err(|_| match which {
                        Ok(idle) => ProtocolError::Timeout(idle),
                        Err(frame) => ProtocolError::FrameTimeout(frame),
                    })??
            }
            None => self.stream.read_buf(&mut self.buffer).await?,
        };
        if read > 0 && self.frame_started.is_none() {
            self.frame_started = Some(tokio::time::Instant::now());
        }
        Ok(read)
    }

    /// Cuts a complete frame off the buffer, reserving room for a partial one.
    fn parse_frame(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        if self.buffer.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; LENGTH_PREFIX];
        prefix.copy_from_slice(&self.buffer[..LENGTH_PREFIX]);
        let size = u32::from_be_bytes(prefix) as usize;
        if size > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                size,
                limit: self.max_frame,
            });
        }
        let total = LENGTH_PREFIX + size;
        if self.buffer.len() < total {
            // Grow with the bytes that actually arrived (doubling, at least one read step), never
            // to the announced size at once: a peer that announces 16 MiB and sends 10 bytes
            // holds 64 KiB, while a real large frame still needs only a few reallocations.
            let missing = total - self.buffer.len();
            let spare = self.buffer.capacity() - self.buffer.len();
            if spare == 0 {
                self.buffer
                    .reserve(missing.min(self.buffer.len().max(READ_STEP)));
            }
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX);
        Ok(Some(self.buffer.split_to(size).freeze()))
    }

    /// Reads one JSON message; `Ok(None)` on a clean close.
    pub async fn read_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        match self.read_frame().await? {
            None => Ok(None),
            Some(frame) => decode_message(&frame).map(Some),
        }
    }

    /// Reads one JSON message where the peer must answer; a close is an error.
    pub async fn expect_message(&mut self) -> Result<Message, ProtocolError> {
        self.read_message().await?.ok_or(ProtocolError::Closed)
    }

    /// Reads one raw data frame announced earlier; a close is an error.
    pub async fn read_data(&mut self) -> Result<Bytes, ProtocolError> {
        self.read_frame().await?.ok_or(ProtocolError::Truncated)
    }

    /// Writes a JSON message and flushes it.
    pub async fn write_message(&mut self, message: &Message) -> Result<(), ProtocolError> {
        self.send_message(message).await?;
        self.flush().await
    }

    /// Writes a JSON message without flushing (follow with data frames or `flush`).
    pub async fn send_message(&mut self, message: &Message) -> Result<(), ProtocolError> {
        let body = serde_json::to_vec(&Envelope {
            v: PROTOCOL_VERSION,
            message,
        })
        .map_err(|err| std::io::Error::other(err.to_string()))?;
        self.send_frame(&body).await
    }

    /// Writes one raw frame without flushing.
    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<(), ProtocolError> {
        let size = u32::try_from(payload.len()).map_err(|_| ProtocolError::FrameTooLarge {
            size: payload.len(),
            limit: u32::MAX as usize,
        })?;
        self.stream.write_all(&size.to_be_bytes()).await?;
        self.stream.write_all(payload).await?;
        Ok(())
    }

    /// Flushes buffered frames to the peer.
    pub async fn flush(&mut self) -> Result<(), ProtocolError> {
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends an `error` frame (best effort: the peer may already be gone).
    pub async fn send_error(&mut self, code: ErrorCode, message: impl Into<String>) {
        self.send_refusal(code, message, None).await;
    }

    /// Sends an `error` frame carrying why a result was refused, when it was (best effort).
    pub async fn send_refusal(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        reason: Option<crate::records::RefusalReason>,
    ) {
        let frame = Message::Error {
            code,
            message: message.into(),
            reason,
        };
        let _ = self.write_message(&frame).await;
    }

    /// Flushes and shuts down the write side, so the peer sees a clean close.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Parses a frame as a message, telling malformed JSON, unknown types and bad fields apart.
pub fn decode_message(frame: &[u8]) -> Result<Message, ProtocolError> {
    serde_json::from_slice::<Message>(frame).map_err(|err| {
        let (code, message) = classify_decode_error(frame, &err);
        ProtocolError::Decode { code, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn messages_and_data_round_trip() {
        let (a, b) = duplex(1 << 20);
        let (mut left, mut right) = (Connection::new(a), Connection::new(b));
        let hello = Message::Lease {
            wait_ms: 5,
            commands: false,
            slots: None,
            genome_files: None,
            genome_partials: false,
        };
        left.send_message(&hello).await.unwrap();
        left.send_frame(b"ACGT").await.unwrap();
        left.flush().await.unwrap();
        assert_eq!(right.expect_message().await.unwrap(), hello);
        assert_eq!(&right.read_data().await.unwrap()[..], b"ACGT");
    }

    #[tokio::test]
    async fn clean_close_is_none_and_mid_frame_close_is_an_error() {
        let (a, b) = duplex(1024);
        let mut reader = Connection::new(b);
        drop(a);
        assert!(reader.read_frame().await.unwrap().is_none());

        let (mut a, b) = duplex(1024);
        let mut reader = Connection::new(b);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(b"abc").await.unwrap();
        drop(a);
        assert!(matches!(
            reader.read_frame().await,
            Err(ProtocolError::Truncated)
        ));
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_reading_it() {
        let (mut a, b) = duplex(1024);
        let mut reader = Connection::new(b).with_max_frame(100);
        a.write_all(&101u32.to_be_bytes()).await.unwrap();
        let err = reader.read_frame().await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::FrameTooLarge);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out() {
        let (_a, b) = duplex(1024);
        let mut reader = Connection::new(b).with_read_timeout(Some(Duration::from_secs(5)));
        let err = reader.read_frame().await.unwrap_err();
        assert!(matches!(err, ProtocolError::Timeout(_)));
    }

    #[tokio::test]
    async fn an_announced_frame_holds_only_the_memory_that_was_sent() {
        let (mut a, b) = duplex(1 << 20);
        let mut reader = Connection::new(b);
        a.write_all(&(8u32 << 20).to_be_bytes()).await.unwrap();
        a.write_all(&[b'A'; 1000]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_millis(50), reader.read_frame()).await;
        assert!(read.is_err(), "the frame is not complete yet");
        assert!(
            reader.buffer.capacity() <= 2 * READ_STEP,
            "{} bytes reserved for 1004 received",
            reader.buffer.capacity()
        );
    }

    #[tokio::test]
    async fn a_large_frame_still_arrives_whole() {
        let (a, b) = duplex(1 << 16);
        let (mut left, mut right) = (Connection::new(a), Connection::new(b));
        let payload = vec![7u8; 5 << 20];
        let send = async {
            left.send_frame(&payload).await.unwrap();
            left.flush().await.unwrap();
        };
        let (_, got) = tokio::join!(send, right.read_data());
        assert_eq!(got.unwrap().len(), payload.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_frame_fails_at_the_frame_deadline() {
        let (mut a, b) = duplex(1024);
        let mut reader = Connection::new(b)
            .with_read_timeout(Some(Duration::from_secs(5)))
            .with_frame_timeout(Some(Duration::from_secs(10)));
        let trickle = tokio::spawn(async move {
            a.write_all(&100u32.to_be_bytes()).await.unwrap();
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if a.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let started = tokio::time::Instant::now();
        let read = reader.read_frame().await;
        trickle.abort();
        assert!(
            matches!(read, Err(ProtocolError::FrameTimeout(_))),
            "{read:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(12));
    }
}
