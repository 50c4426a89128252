//! The wire protocol: length-prefixed frames (4-byte big-endian length, then a JSON object with a
//! `"type"` field, or raw bytes that the previous JSON frame announced), shared by every role.

pub mod accept;
pub mod admission;
pub mod auth;
mod batch;
mod connection;
pub mod handshake;
mod ids;
mod message;
mod request;
pub mod transport;
mod watchman;

/// The master's address when none is given: `MASTER_HOST:MASTER_PORT` (the names container setups
/// pass), each defaulting to 127.0.0.1 and 5000. Every role that talks to the master resolves it here.
pub fn default_master_address() -> String {
    let host = std::env::var("MASTER_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("MASTER_PORT").unwrap_or_else(|_| "5000".into());
    format!("{host}:{port}")
}

/// Where a worker's agent listens unless told otherwise: `$XDG_RUNTIME_DIR/gridwatch/{id}.sock`,
/// or `/tmp/gridwatch-{uid}/{id}.sock` without it (one directory per user, so no user can
/// pre-create another's). The agent and its worker both resolve it here.
pub fn default_agent_socket(worker_id: &str) -> std::path::PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(runtime) => std::path::PathBuf::from(runtime).join("gridwatch"),
        None => std::env::temp_dir().join(format!("gridwatch-{}", nix::unistd::geteuid())),
    };
    dir.join(format!("{worker_id}.sock"))
}

pub use accept::ConnectionLimits;
pub use admission::{Admission, AdmissionLimits};
pub use auth::{check_listen, TokenArgs, TokenError, Unprotected};
pub use handshake::Greeting;
pub use ids::{check_worker_id, parse_store_id, store_id_text, valid_id, BadWorkerId, MAX_ID_LEN};
pub use request::{Dial, RequestError, Requester};
pub use transport::{ClientTls, ServerTls, Stream, TlsArgs, TlsError, TlsServerArgs};

pub use batch::{BatchJob, BatchJobAccepted, PurgeFilter};
pub use connection::{
    decode_message, Connection, ProtocolError, DEFAULT_MAX_FRAME, PRE_AUTH_MAX_FRAME,
};
pub use message::{
    classify_decode_error, CompletedTask, CompletionReply, ErrorCode, GenomeRemovalOutcome,
    InputArrival, JobView, Message, NackReply, PartialResults, ProgressFigure, ProgressView,
    QueueLevel, Role, ScaleDirection, ServerRole, TaskHeader, PROTOCOL_VERSION,
};
pub use watchman::{
    Alert, AlertState, HistoryPoint, LivenessState, RunningTask, Severity, TaskUsage, WorkerReport,
    WorkerStatus, WorkerView, SCALED_DOWN,
};
