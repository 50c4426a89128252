//! Where tasks and job state live. Two backends implement the same traits and pass the same
//! conformance suite (`tests/backend_conformance.rs`): `embedded` (SQLite + spool files, owned by
//! the master) and `redis` (Redis Streams + keys, shared by master and workers on many hosts).
//!
//! Delivery invariants: a leased task is invisible to other workers until it is acked, nacked,
//! reclaimed (named worker dead) or its visibility timeout passes; chunk results are
//! first-write-wins per (job, chunk), so a redelivered chunk is counted once.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod config;
pub mod embedded;
pub mod redis;
pub mod remote;

/// The kind of tasks stored before tasks carried a kind, when search was the only one.
pub const DEFAULT_TASK_KIND: &str = "search";

/// A job's id, chosen by the client so that a retried submit is idempotent.
pub type JobId = String;
/// A worker's id (`--id w1`).
pub type WorkerId = String;

/// Task priority; streams are read high before medium before low.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served first.
    High,
    /// The default.
    #[default]
    Medium,
    /// Served when nothing else waits.
    Low,
}

/// Identifies one task: chunk `chunk` of job `job`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    /// The job.
    pub job: JobId,
    /// The chunk index within the job, from 0.
    pub chunk: u32,
}

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
}

/// A task leased by a worker.
#[derive(Clone, Debug)]
pub struct Lease {
    /// Which chunk of which job.
    pub id: TaskId,
    /// The job kind's tag, as enqueued.
    pub kind: String,
    /// Kind-specific description, as enqueued.
    pub spec: serde_json::Value,
    /// The chunk's input bytes.
    pub data: Bytes,
    /// The worker holding the lease.
    pub worker: WorkerId,
    /// 1 on first delivery, incremented on every redelivery.
    pub attempt: u32,
    /// Backend-specific handle proving this delivery (a stream entry id, a lease serial); an ack
    /// or nack with a stale token is ignored.
    pub token: String,
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

/// Lifecycle of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Input still arriving; not yet accepted.
    Uploading,
    /// Accepted, tasks queued, none finished yet.
    Pending,
    /// At least one chunk finished.
    Processing,
    /// Every chunk has a stored result.
    Completed,
    /// A task was dead-lettered (see the job's error).
    Failed,
    /// Cancelled by a client; late results are ignored.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Uploading,
        JobStatus::Pending,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The lower-case word stored by both backends and shown by the JSON API
    /// (`job:{id}:status` = "pending", "processing", ...); the same as its serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Uploading => "uploading",
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status a stored word names, if any.
    pub fn from_word(word: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// Whether the job can still change.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A job as stored: what was asked, and its current state. `spec` is kind-specific JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Client-chosen id.
    pub id: JobId,
    /// Job kind (`search`, ...).
    pub kind: String,
    /// Kind-specific description (patterns, options, record names and lengths, ...).
    pub spec: serde_json::Value,
    /// Current status.
    pub status: JobStatus,
    /// Number of chunks; 0 until the input is fully received.
    pub total_chunks: u32,
    /// Why the job failed, if it did.
    pub error: Option<String>,
    /// Unix time (seconds) the job was created.
    pub created_at: f64,
    /// Unix time (seconds) the job finished, if it did.
    pub finished_at: Option<f64>,
}

/// Result of creating a job whose id may already exist.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    /// A new job was recorded.
    Created,
    /// A job with this id exists already (an idempotent retry); here it is.
    Exists(JobRecord),
}

/// Progress of a job, derived from stored chunk results.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Chunks in the job.
    pub total_chunks: u32,
    /// Chunks with a stored result.
    pub done_chunks: u32,
    /// Sum of the match counts of the stored chunk results.
    pub matches: u64,
}

/// A chunk's stored result: kind-specific JSON plus its match count (for progress).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    /// The chunk index.
    pub chunk: u32,
    /// How many matches the chunk contributed (0 for kinds without matches).
    pub matches: u64,
    /// Kind-specific payload (for search: per-pattern counts and hits).
    pub payload: serde_json::Value,
    /// Worker that produced it.
    pub worker: WorkerId,
}

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
    /// Any other failure, with context.
    #[error("{0}")]
    Other(String),
}

/// Shorthand for backend results.
pub type BackendResult<T> = Result<T, BackendError>;

/// The task queue: at-least-once delivery with leases.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Adds tasks (and stores their input bytes).
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()>;
    /// Leases the next task for `worker`, highest priority first, waiting up to `wait` for one.
    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>>;
    /// Pushes the lease's visibility deadline to now + the visibility timeout. False if the lease
    /// is no longer held.
    async fn extend(&self, lease: &Lease) -> BackendResult<bool>;
    /// Completes the task (call after its result is stored) and frees its input bytes.
    async fn ack(&self, lease: &Lease) -> BackendResult<()>;
    /// Returns the task after a failure: retried up to `max_attempts`, then dead-lettered.
    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome>;
    /// Moves every lease held by `worker` back to the queue (the worker is dead). Returns how many.
    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize>;
    /// Moves every lease past its visibility deadline back to the queue. Returns how many.
    async fn reclaim_expired(&self) -> BackendResult<usize>;
    /// Removes a job's queued tasks and their input. Returns how many were removed.
    async fn cancel_job(&self, job: &str) -> BackendResult<usize>;
    /// Workers that leased or extended within `window`, when the backend itself sees them (with
    /// Redis, workers never talk to the master). `None` when it does not: the embedded master
    /// sees its workers on its own connections.
    async fn recent_workers(&self, _window: Duration) -> BackendResult<Option<Vec<WorkerId>>> {
        Ok(None)
    }
}

/// Job state and results.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records a new job, or returns the existing one with the same id.
    async fn create_job(&self, job: &JobRecord) -> BackendResult<CreateOutcome>;
    /// Fetches a job.
    async fn job(&self, id: &str) -> BackendResult<Option<JobRecord>>;
    /// All jobs, newest first.
    async fn jobs(&self) -> BackendResult<Vec<JobRecord>>;
    /// Sets total chunks and status once the input is fully received and queued.
    async fn accept_job(&self, id: &str, total_chunks: u32) -> BackendResult<()>;
    /// Replaces a job's kind-specific spec. The master calls it before `accept_job` to record
    /// what only the end of the upload tells (for a search: the input's record names and lengths).
    async fn update_job_spec(&self, id: &str, spec: &serde_json::Value) -> BackendResult<()>;
    /// Sets a job's status (and error, for `Failed`). Finished jobs do not change again.
    async fn set_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> BackendResult<()>;
    /// Stores a chunk result if none is stored for (job, chunk) and the job is not cancelled.
    /// Returns true if this write was the first.
    async fn put_chunk_result(&self, job: &str, result: &ChunkResult) -> BackendResult<bool>;
    /// Progress derived from stored results.
    async fn progress(&self, job: &str) -> BackendResult<Progress>;
    /// Every stored chunk result of a job, by chunk index.
    async fn chunk_results(&self, job: &str) -> BackendResult<Vec<ChunkResult>>;
    /// Appends an alert (JSON) to the capped alert history.
    async fn push_alert(&self, alert: &serde_json::Value) -> BackendResult<()>;
    /// The most recent alerts, newest first.
    async fn alerts(&self, limit: usize) -> BackendResult<Vec<serde_json::Value>>;
    /// Stores a worker's latest metrics (JSON), expiring after `ttl`.
    async fn put_worker_metrics(
        &self,
        worker: &str,
        metrics: &serde_json::Value,
        ttl: Duration,
    ) -> BackendResult<()>;
    /// Latest metrics of every worker whose entry has not expired.
    async fn worker_metrics(&self) -> BackendResult<Vec<(WorkerId, serde_json::Value)>>;
}

#[cfg(test)]
mod tests {
    use super::JobStatus;

    #[test]
    fn status_words_round_trip_and_match_serde() {
        for status in JobStatus::ALL {
            let word = status.as_str();
            assert_eq!(JobStatus::from_word(word), Some(status));
            assert_eq!(serde_json::to_value(status).ok(), Some(word.into()));
        }
        assert_eq!(JobStatus::from_word("done"), None);
    }
}
