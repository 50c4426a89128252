//! The wire protocol: length-prefixed frames (4-byte big-endian length, then a JSON object with a
//! `"type"` field, or raw bytes that the previous JSON frame announced), shared by every role.

mod connection;
mod message;

/// The master's address when none is given: `MASTER_HOST:MASTER_PORT` (seed 000's names), each
/// defaulting to 127.0.0.1 and 5000. Every role that talks to the master resolves it here.
pub fn default_master_address() -> String {
    let host = std::env::var("MASTER_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("MASTER_PORT").unwrap_or_else(|_| "5000".into());
    format!("{host}:{port}")
}

pub use connection::{decode_message, Connection, ProtocolError, DEFAULT_MAX_FRAME};
pub use message::{
    classify_decode_error, ErrorCode, JobView, Message, NackReply, PartialResults, ProgressView,
    Role, PROTOCOL_VERSION,
};
