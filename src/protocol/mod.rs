//! The wire protocol: length-prefixed frames (4-byte big-endian length, then a JSON object with a
//! `"type"` field, or raw bytes that the previous JSON frame announced), shared by every role.

mod connection;
mod message;

pub use connection::{decode_message, Connection, ProtocolError, DEFAULT_MAX_FRAME};
pub use message::{
    classify_decode_error, ErrorCode, JobView, Message, NackReply, PartialResults, ProgressView,
    Role, PROTOCOL_VERSION,
};
