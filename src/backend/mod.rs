//! Where tasks and job state live. Two backends implement every capability trait (see
//! `capability`) and pass the same conformance suite (`tests/backend_conformance.rs`, one group
//! of cases per trait): `embedded` (SQLite + spool files, owned by the master) and `redis` (Redis
//! Streams + keys, shared by master and workers on many hosts). `remote` is the embedded backend
//! as a worker or the collector reaches it through the master, with only their capabilities.
//!
//! Delivery invariants: a leased task is invisible to other workers until it is acked, nacked,
//! reclaimed (named worker dead) or its visibility timeout passes; chunk results are
//! first-write-wins per (job, chunk), so a redelivered chunk is counted once.
//!
//! Results are fenced by the lease: a result, an ack or an extension counts only from the worker
//! holding the task's current delivery (its unguessable token), for a task that exists, with a
//! match count the task can hold. A large result is stored in parts that become visible together.

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

pub mod capability;
pub mod config;
pub mod embedded;
pub mod genome;
pub use crate::records::live_output;
pub mod packed;
pub use crate::records::performance;
pub mod redis;
pub mod remote;

pub use crate::records::{
    short_summary, ChunkResult, GenomeRecord, GenomeRemoval, JobId, JobRecord, JobStatus,
    JobSummary, Lease, PayloadError, Priority, Progress, PruneReport, RefusalReason, StoredKind,
    StoredResult, TaskId, TaskRun, TaskTimes, WorkerId, DEFAULT_TASK_KIND, MAX_SUMMARY_CHARS,
    RESULT_PART_BYTES, TASK_TIMES_KEPT,
};

/// A task to enqueue: its id, kind, priority, a kind-specific description and its input bytes.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// Which chunk of which job.
    pub id: TaskId,
    /// The job kind's tag (`search`, ...): a worker runs the task with that kind.
    pub kind: String,
    /// Queue priority.
    pub priority: Priority,
    /// Kind-specific description (for a search chunk: record, offset, owned length), as JSON.
    pub spec: serde_json::Value,
    /// The chunk's input (for a search chunk: owned bases then overlap). Stored by the backend
    /// until the task is acked.
    pub data: Bytes,
    /// The most matches a result of this task can honestly report (for a search chunk: owned
    /// bases × patterns × strands); a result claiming more is refused.
    pub max_matches: u64,
    /// How many of a worker's slots the task takes (1, or a command task's `--cpus`): it is
    /// leased only to a worker offering at least as many ([`WorkerOffer::slots`]).
    pub slots: u32,
}

/// What a nack led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackOutcome {
    /// The task is queued again for attempt `next_attempt`.
    Retrying {
        /// The attempt number the next delivery will carry.
        next_attempt: u32,
    },
    /// `max_attempts` reached: the task is dead-lettered and its job has failed.
    DeadLettered,
    /// The lease was no longer valid (acked, reclaimed or cancelled meanwhile); nothing changed.
    Stale,
}

/// Result of creating a job whose id may already exist.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    /// A new job was recorded.
    Created,
    /// A job with this id exists already (an idempotent retry); here it is.
    Exists(JobRecord),
}

/// Checks a result against its task's kind before it is stored: a lease proves who may write,
/// not that what is written is well-formed. The job kinds provide it (this layer knows no kind);
/// each backend calls it on every path that stores a result, after the lease is fenced.
pub trait ResultCheck: Send + Sync {
    /// Why `payload` (JSON text), claiming `matches`, cannot be the result of a task of `kind`
    /// described by `spec`; `Ok` when it can.
    fn check(
        &self,
        kind: &str,
        spec: &serde_json::Value,
        matches: u64,
        payload: &[u8],
    ) -> Result<(), String>;
    /// The most matches a job whose task of `kind` is described by `spec` may total, with the
    /// error the job fails with past it; `None` when the job has no such cap.
    fn job_cap(&self, _kind: &str, _spec: &serde_json::Value) -> Option<(u64, String)> {
        None
    }
}

/// A shared [`ResultCheck`].
pub type SharedResultCheck = std::sync::Arc<dyn ResultCheck>;

/// Backend failures. Callers retry `Unavailable` with backoff; the others are bugs or bad input.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The backend cannot be reached right now (Redis down, master away).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// No such job.
    #[error("no job with id {0:?}")]
    NoSuchJob(JobId),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A result, or a part of one, was refused: the sender does not hold the task's lease, the
    /// task does not exist, or a value is out of range. Nothing was stored.
    #[error("result for chunk {chunk} of job {job:?} refused ({reason}): {detail}")]
    Refused {
        /// The job named.
        job: JobId,
        /// The chunk named.
        chunk: u32,
        /// Why.
        reason: RefusalReason,
        /// What was wrong, for the log.
        detail: String,
    },
    /// Any other failure, with context.
    #[error("{0}")]
    Other(String),
}

impl From<PayloadError> for BackendError {
    fn from(err: PayloadError) -> Self {
        BackendError::Other(err.to_string())
    }
}

impl BackendError {
    /// A refusal of a result for `lease`'s task.
    pub fn refused(lease: &Lease, reason: RefusalReason, detail: impl Into<String>) -> Self {
        BackendError::Refused {
            job: lease.id.job.clone(),
            chunk: lease.id.chunk,
            reason,
            detail: detail.into(),
        }
    }
}

/// Shorthand for backend results.
pub type BackendResult<T> = Result<T, BackendError>;

/// A genome's decoded sequence being stored as its upload streams in, under a storage id chosen
/// when it began. Nothing is visible under the genome's hash before [`GenomeWriter::commit`],
/// but whole blocks already written are readable by storage id
/// ([`GenomeStore::read_stored`]): a first upload's tasks read them while the rest streams in.
#[async_trait]
pub trait GenomeWriter: Send {
    /// The storage id this upload writes under (64 lowercase hex digits, chosen at random).
    fn storage(&self) -> &str;
    /// Bases from the start that any reader can read by storage id now: whole blocks as they
    /// are written, and everything after [`GenomeWriter::flush`].
    fn readable(&self) -> u64;
    /// Appends the next bases of the sequence.
    async fn append(&mut self, bases: Bytes) -> BackendResult<()>;
    /// Writes the last, partial block, so everything appended is readable; nothing may be
    /// appended after it.
    async fn flush(&mut self) -> BackendResult<()>;
    /// Makes the sequence visible as `genome` and records `job` as using it. When the same
    /// genome was stored meanwhile (a concurrent or earlier upload), the stored one stays the
    /// genome's: this copy of a genome is kept as a spare until `job` ends (its tasks read
    /// it), a command input's copy is dropped at once.
    async fn commit(self: Box<Self>, genome: &GenomeRecord, job: &str) -> BackendResult<()>;
    /// Drops what was written (the upload failed or its hash did not match).
    async fn discard(self: Box<Self>);
}

/// A finished task to settle in a batch: the lease it ran under and the result it produced.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The lease the task ran under (its token fences the result and the ack).
    pub lease: Lease,
    /// The task's result, stored before (or atomically with) the ack.
    pub result: ChunkResult,
}

/// What happened to one item of [`Leases::complete_batch`]: `Ok(first)` when its result is stored
/// (first: this write was the first for the chunk) and its lease acked; an error otherwise, in
/// which case the lease was not acked. [`BackendError::Refused`] means the sender no longer holds
/// the lease (or the result is out of range); [`BackendError::Unavailable`] means the item was
/// not settled and may be sent again.
pub type CompletionOutcome = BackendResult<bool>;

/// Most tasks one batch call leases or settles: enough to amortise a round trip many times over,
/// small enough that one batch never holds a worker's whole share of a job.
pub const MAX_BATCH: usize = 256;

pub use capability::*;
