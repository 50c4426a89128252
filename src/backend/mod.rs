//! Where tasks and job state live. Two backends implement the same traits and pass the same
//! conformance suite (`tests/backend_conformance.rs`): `embedded` (SQLite + spool files, owned by
//! the master) and `redis` (Redis Streams + keys, shared by master and workers on many hosts).
//!
//! Delivery invariants: a leased task is invisible to other workers until it is acked, nacked,
//! reclaimed (named worker dead) or its visibility timeout passes; chunk results are
//! first-write-wins per (job, chunk), so a redelivered chunk is counted once.
//!
//! Results are fenced by the lease: a result, an ack or an extension counts only from the worker
//! holding the task's current delivery (its unguessable token), for a task that exists, with a
//! match count the task can hold. A large result is stored in parts that become visible together.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod config;
pub mod embedded;
pub mod genome;
pub mod performance;
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

impl Priority {
    /// The lowercase word (`high`, `medium`, `low`), as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    /// Reads [`Priority::as_str`]'s word.
    pub fn from_word(word: &str) -> Option<Priority> {
        [Priority::High, Priority::Medium, Priority::Low]
            .into_iter()
            .find(|priority| priority.as_str() == word)
    }
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
    /// The most matches a result of this task can honestly report (for a search chunk: owned
    /// bases × patterns × strands); a result claiming more is refused.
    pub max_matches: u64,
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
    /// Backend-specific, unguessable proof of this delivery (a stream entry and a random nonce, a
    /// random lease id). Results, acks, extensions and nacks carrying another token are refused
    /// or ignored.
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
    /// One short line on what the job asks (from its kind), stored so that listings never read
    /// the spec, whose size grows with the input. At most [`MAX_SUMMARY_CHARS`] characters.
    #[serde(default)]
    pub summary: String,
    /// The queue priority of the job's tasks, stored so that listings show it without the spec.
    #[serde(default)]
    pub priority: Priority,
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

/// Longest stored job summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// `text` cut to at most [`MAX_SUMMARY_CHARS`] characters (with an ellipsis when cut).
pub fn short_summary(text: &str) -> String {
    if text.chars().count() <= MAX_SUMMARY_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX_SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A job as listed: everything but its spec, with its progress. Its size does not depend on the
/// job's input, so listing jobs costs the same however large their specs are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Client-chosen id.
    pub id: JobId,
    /// Job kind (`search`, ...).
    pub kind: String,
    /// The stored one-line summary.
    pub summary: String,
    /// The queue priority of the job's tasks.
    pub priority: Priority,
    /// Current status.
    pub status: JobStatus,
    /// Why the job failed, if it did.
    pub error: Option<String>,
    /// Unix time (seconds) the job was created.
    pub created_at: f64,
    /// Unix time (seconds) the job finished, if it did.
    pub finished_at: Option<f64>,
    /// Progress derived from stored results.
    pub progress: Progress,
    /// Deliveries of the job's tasks beyond their first, where the backend counts them: Redis,
    /// whose workers lease without the master. `None` where every lease passes through the
    /// master, which counts them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeliveries: Option<u64>,
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
    /// Sum of the match counts of the stored chunk results (saturating).
    pub matches: u64,
}

/// A chunk's stored result: kind-specific JSON plus its match count (for progress).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    /// The chunk index.
    pub chunk: u32,
    /// How many matches the chunk contributed (0 for kinds without matches).
    pub matches: u64,
    /// Kind-specific payload (for search: per-pattern counts and hits); null when `encoded`
    /// holds it.
    pub payload: serde_json::Value,
    /// The payload as JSON text, when a worker encoded a result too large to travel inline
    /// (see [`RESULT_PART_BYTES`]): such a result is stored in parts and never becomes a tree of
    /// values. Never sent as a field: the parts carry it.
    #[serde(skip)]
    pub encoded: Option<Bytes>,
    /// Worker that produced it.
    pub worker: WorkerId,
    /// How the task ran (time spent, small metrics); empty from workers that did not measure.
    /// Boxed: a chunk result travels inside protocol messages, which stay small.
    #[serde(default, skip_serializing_if = "TaskRun::is_empty")]
    pub run: Box<TaskRun>,
}

impl ChunkResult {
    /// The payload's JSON text.
    pub fn payload_text(&self) -> BackendResult<Bytes> {
        match &self.encoded {
            Some(text) => Ok(text.clone()),
            None => serde_json::to_vec(&self.payload)
                .map(Bytes::from)
                .map_err(|e| BackendError::Other(format!("chunk result payload: {e}"))),
        }
    }

    /// Size of the payload's JSON text.
    pub fn payload_len(&self) -> usize {
        match &self.encoded {
            Some(text) => text.len(),
            None => self.payload_text().map_or(0, |text| text.len()),
        }
    }

    /// Whether the payload is stored in parts (see [`Store::put_chunk_result`]) rather than
    /// inline in a batch.
    pub fn in_parts(&self) -> bool {
        self.encoded.is_some() || self.payload_len() > RESULT_PART_BYTES
    }

    /// The result without its payload: what announces a payload sent in parts.
    pub fn header(&self) -> ChunkResult {
        ChunkResult {
            chunk: self.chunk,
            matches: self.matches,
            payload: serde_json::Value::Null,
            encoded: None,
            worker: self.worker.clone(),
            run: self.run.clone(),
        }
    }
}

/// How one task ran: the per-task record kept beside its result. The worker fills the time it
/// spent and the result's small metrics; the store fills the kind, the task's parameters and
/// when the result was stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The job kind's tag the task ran with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The task's kind-specific parameters (its spec as enqueued).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub parameters: serde_json::Value,
    /// Seconds the worker spent running the task (not counting storing its result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_secs: Option<f64>,
    /// Unix time (seconds) the result was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<f64>,
    /// The result's scalar figures (matches, sums, ...), small whatever the payload's size.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metrics: serde_json::Value,
}

impl TaskRun {
    /// True when nothing was recorded (results stored before records existed).
    pub fn is_empty(&self) -> bool {
        *self == TaskRun::default()
    }

    /// The record as stored for `lease`'s task at time `now`: the worker's measures plus what
    /// only the store knows.
    pub fn stored(&self, lease: &Lease, now: f64) -> TaskRun {
        TaskRun {
            kind: lease.kind.clone(),
            parameters: lease.spec.clone(),
            elapsed_secs: self
                .elapsed_secs
                .filter(|secs| secs.is_finite() && *secs >= 0.0),
            completed_at: Some(now),
            metrics: self.metrics.clone(),
        }
    }
}

/// Recent task times of one worker for one job kind, as the store keeps them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskTimes {
    /// The worker.
    pub worker: WorkerId,
    /// The job kind.
    pub kind: String,
    /// Tasks of this kind whose first result this worker stored, ever.
    pub completed: u64,
    /// Seconds spent on each of the most recent [`TASK_TIMES_KEPT`] such tasks (at most),
    /// newest first.
    pub recent_secs: Vec<f64>,
}

/// Task times kept per worker and kind, so the history's size is bounded.
pub const TASK_TIMES_KEPT: usize = 1000;

/// What a prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The jobs deleted.
    pub job_ids: Vec<JobId>,
    /// Chunk results deleted with them.
    pub results: u64,
    /// Storage returned: bytes of the data directory (embedded) or of Redis memory, measured
    /// before and after (0 if it did not shrink).
    pub bytes_freed: u64,
    /// Stored genomes deleted with them (no job left uses them), by hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genomes: Vec<String>,
}

/// A stored chunk result without its payload: what `get_results` announces before streaming the
/// payload's parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    /// The chunk index.
    pub chunk: u32,
    /// How many matches the chunk contributed.
    pub matches: u64,
    /// Worker that produced it.
    pub worker: WorkerId,
    /// How many parts the payload's JSON text is stored in (1 for a small payload).
    pub parts: u32,
    /// How the task ran (empty for results stored before records existed).
    #[serde(default, skip_serializing_if = "TaskRun::is_empty")]
    pub run: TaskRun,
}

/// Largest part of a stored result payload, in bytes: well under any frame limit, so a part
/// always travels in one frame and the master never holds more than a part of a result.
pub const RESULT_PART_BYTES: usize = 4 << 20;

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

/// Why a result (or a part of one) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// The task exists, but the sender does not hold its current lease (another worker holds it,
    /// the token is stale or forged, or the task was already completed).
    NotHolder,
    /// No such task in that job (a chunk that does not exist, an unknown job).
    NoSuchTask,
    /// The match count is more than the task can hold.
    OutOfRange,
    /// The payload is not a well-formed result of the task's kind (does not decode, its counts
    /// disagree with the match count, a position lies outside the chunk, ...).
    BadPayload,
}

impl RefusalReason {
    /// Every reason, for metrics that list zeros too.
    pub const ALL: [RefusalReason; 4] = [
        RefusalReason::NotHolder,
        RefusalReason::NoSuchTask,
        RefusalReason::OutOfRange,
        RefusalReason::BadPayload,
    ];

    /// The word used in metrics labels and stored counters.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NotHolder => "not_holder",
            RefusalReason::NoSuchTask => "no_such_task",
            RefusalReason::OutOfRange => "out_of_range",
            RefusalReason::BadPayload => "bad_payload",
        }
    }

    /// The reason a stored word names, if any.
    pub fn from_word(word: &str) -> Option<RefusalReason> {
        RefusalReason::ALL.into_iter().find(|r| r.as_str() == word)
    }

    /// The reason named in a refusal's message (`... refused (REASON): ...`, as
    /// [`BackendError::Refused`] prints it), so a refusal keeps its reason across the wire.
    pub fn in_message(message: &str) -> Option<RefusalReason> {
        RefusalReason::ALL
            .into_iter()
            .find(|r| message.contains(&format!(" refused ({}):", r.as_str())))
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// A genome stored once for any number of searches: the decoded sequence of an uploaded file
/// (bases without line breaks, records one after another) under the BLAKE3 of the file's bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenomeRecord {
    /// BLAKE3 of the uploaded file's bytes, as 64 lowercase hex digits.
    pub hash: String,
    /// Size of the uploaded file, in bytes.
    pub size_bytes: u64,
    /// Bases stored (the sum of the records' lengths).
    pub bases: u64,
    /// The records in file order, as the search kind lists them (`[{name, length}]`); a
    /// record's sequence starts where the previous one's ends.
    pub records: serde_json::Value,
    /// The file name of the first upload.
    pub filename: String,
    /// Unix time (seconds) the genome was stored.
    pub created_at: f64,
    /// Unix time (seconds) a job last started using it or one using it finished.
    pub last_used: f64,
    /// Jobs that used it and still exist (listings only; 0 elsewhere).
    #[serde(default)]
    pub jobs: u32,
}

/// What `remove_genome` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum GenomeRemoval {
    /// Deleted with its stored sequence.
    Removed,
    /// Kept: these unfinished jobs (uploading, queued or running) use it.
    InUse {
        /// The jobs.
        jobs: Vec<JobId>,
    },
    /// No genome with that hash.
    NotFound,
}

/// A genome's decoded sequence being stored as its upload streams in. Nothing is visible under
/// the genome's hash before [`GenomeWriter::commit`].
#[async_trait]
pub trait GenomeWriter: Send {
    /// Appends the next bases of the sequence.
    async fn append(&mut self, bases: Bytes) -> BackendResult<()>;
    /// Makes the sequence visible as `genome` and records `job` as using it. When the same
    /// genome was stored meanwhile (a concurrent first upload), this copy is dropped and the
    /// stored one kept: a genome is stored once.
    async fn commit(self: Box<Self>, genome: &GenomeRecord, job: &str) -> BackendResult<()>;
    /// Drops what was written (the upload failed or its hash did not match).
    async fn discard(self: Box<Self>);
}

/// The error of a backend that keeps no genomes.
fn no_genomes() -> BackendError {
    BackendError::Other("this backend does not store genomes; ask the master".into())
}

/// A finished task to settle in a batch: the lease it ran under and the result it produced.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The lease the task ran under (its token fences the result and the ack).
    pub lease: Lease,
    /// The task's result, stored before (or atomically with) the ack.
    pub result: ChunkResult,
}

/// What happened to one item of [`Queue::complete_batch`]: `Ok(first)` when its result is stored
/// (first: this write was the first for the chunk) and its lease acked; an error otherwise, in
/// which case the lease was not acked. [`BackendError::Refused`] means the sender no longer holds
/// the lease (or the result is out of range); [`BackendError::Unavailable`] means the item was
/// not settled and may be sent again.
pub type CompletionOutcome = BackendResult<bool>;

/// Most tasks one batch call leases or settles: enough to amortise a round trip many times over,
/// small enough that one batch never holds a worker's whole share of a job.
pub const MAX_BATCH: usize = 256;

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
    /// Moves every lease held by `worker` back to the queue except those whose tokens are in
    /// `held`. A worker whose connection was lost during a lease call cannot know whether the
    /// backend handed it tasks whose reply never arrived; on reconnect it names every lease it
    /// has in hand, and whatever else the backend thinks it holds is returned at once instead
    /// of sitting out the visibility timeout. Returns how many were returned.
    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize>;
    /// Removes a job's tasks, queued and leased, and their input: a holder's next `extend`
    /// answers false, so the task stops. Returns how many queued tasks were removed.
    async fn cancel_job(&self, job: &str) -> BackendResult<usize>;
    /// Removes every task of `job` and its input, but only if the job has not started: it is
    /// not finished, no chunk of it has a stored result, and none of its tasks was ever delivered
    /// (a task leased now, or leased before and since acked, nacked, reclaimed or expired, counts
    /// as delivered). Checked and removed in one atomic step, so a worker leasing at the same
    /// moment either gets its task first (and the job is left alone) or finds it gone. True if
    /// the job's tasks were removed (a job with no task left counts, when nothing of it started);
    /// false, with nothing changed, otherwise. The job's status is the caller's to set.
    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool>;
    /// Leases up to `max` tasks for `worker`, highest priority first, waiting up to `wait` for the
    /// first one only; an empty list when none came. Each lease carries its own token and its own
    /// visibility deadline, exactly as if leased one by one. The default leases one at a time;
    /// backends override it to lease the whole batch in one round trip.
    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        let mut leases = Vec::new();
        if max == 0 {
            return Ok(leases);
        }
        let Some(first) = self.lease(worker, wait).await? else {
            return Ok(leases);
        };
        leases.push(first);
        while leases.len() < max.min(MAX_BATCH) {
            match self.lease(worker, Duration::ZERO).await {
                Ok(Some(lease)) => leases.push(lease),
                // The leases already taken are returned rather than dropped: dropping them would
                // hide them until their visibility timeout.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(leases)
    }
    /// Stores each item's result in `store` and, once it is stored, acks its lease: one outcome
    /// per item, in order (see [`CompletionOutcome`]). Every item is fenced by its own lease, so
    /// one stale token refuses that item only. A result is never acked before it is stored, so a
    /// crash at any point loses no task. The default settles item by item; backends that are
    /// their own store override it to settle the whole batch in one transaction or round trip,
    /// and then write to themselves whatever `store` is passed.
    async fn complete_batch(
        &self,
        store: &dyn Store,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let outcome = match store.put_chunk_result(&item.lease, &item.result).await {
                Ok(first) => self.ack(&item.lease).await.map(|()| first),
                Err(err) => Err(err),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
    /// When the oldest task nobody holds was queued (Unix seconds), per priority that has one:
    /// the backlog signal an autoscaler acts on. Embedded: the submission time of the oldest job
    /// with a queued task (tasks carry no time of their own). Redis: the time in the id of each
    /// stream's first entry not yet delivered to the consumer group (a retried task is a new
    /// entry, so its wait starts at its retry). Empty where the backend cannot tell.
    async fn oldest_waiting(&self) -> BackendResult<Vec<(Priority, f64)>> {
        Ok(Vec::new())
    }
    /// Workers that leased or extended within `window`, when the backend itself sees them (with
    /// Redis, workers never talk to the master). `None` when it does not: the embedded master
    /// sees its workers on its own connections.
    async fn recent_workers(&self, _window: Duration) -> BackendResult<Option<Vec<WorkerId>>> {
        Ok(None)
    }
    /// Takes or renews the id `worker` for `holder` (a claim value naming one worker process)
    /// among every process sharing this backend, for [`WORKER_ID_TTL`] after the call; false
    /// while another live process holds it. A backend only its master reaches (embedded) leaves
    /// worker ids to the master's own registry: always true.
    async fn hold_worker_id(&self, _worker: &str, _holder: &str) -> BackendResult<bool> {
        Ok(true)
    }
    /// Records whether `worker` runs command tasks (it was started with --allow-commands or an
    /// allow-list). Leases never hand a command task to a worker not recorded as running them.
    /// The default records nothing: a backend that keeps no record leases no command task to
    /// anyone but through a backend that does.
    async fn set_runs_commands(&self, _worker: &str, _runs: bool) -> BackendResult<()> {
        Ok(())
    }
    /// Whether some worker that runs command tasks was live within `window`, when the backend
    /// itself sees its workers (with Redis, workers never talk to the master). `None` when it
    /// does not: the embedded master sees its workers on its own connections.
    async fn command_workers_live(&self, _window: Duration) -> BackendResult<Option<bool>> {
        Ok(None)
    }
    /// Gives up `worker`'s id if `holder` still holds it, so the next claimant need not wait.
    async fn release_worker_id(&self, _worker: &str, _holder: &str) -> BackendResult<()> {
        Ok(())
    }
}

/// How long a worker id's claim in a shared backend outlives its holder's last renewal; holders
/// renew every third of it.
pub const WORKER_ID_TTL: Duration = Duration::from_secs(10);

/// Job state and results.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records a new job, or returns the existing one with the same id.
    async fn create_job(&self, job: &JobRecord) -> BackendResult<CreateOutcome>;
    /// Replaces a job whose upload never completed (it failed, or is marked uploading, before
    /// it was accepted) with `job`, dropping the old one's tasks, results and stored input, so
    /// its id can be submitted again; false if the job is not such a one (or is gone). Backends
    /// that cannot do this refuse, and the id must then change.
    async fn restart_upload(&self, job: &JobRecord) -> BackendResult<bool> {
        Err(BackendError::Other(format!(
            "this backend cannot restart job {}'s interrupted upload",
            job.id
        )))
    }
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
    /// Stages part `part` of the payload of `lease`'s result (the payload's JSON text, cut into
    /// parts of at most [`RESULT_PART_BYTES`]). Refused unless `lease` is the task's current
    /// lease. Staging the same part again replaces it, so a retried upload is harmless.
    async fn put_result_part(&self, lease: &Lease, part: u32, bytes: Bytes) -> BackendResult<()>;
    /// Stores `lease`'s chunk result if none is stored for the chunk and the job is not
    /// cancelled; returns true if this write was the first. With `parts` = 0 the payload is
    /// `result.payload`; otherwise it is parts `0..parts` staged under this lease, which become
    /// visible together with the result. Refused ([`BackendError::Refused`], nothing stored)
    /// unless `lease` is the task's current lease and `result.matches` is within the task's
    /// bound. The stored worker is the lease's.
    async fn commit_chunk_result(
        &self,
        lease: &Lease,
        result: &ChunkResult,
        parts: u32,
    ) -> BackendResult<bool>;
    /// Stores `lease`'s chunk result, in parts if its payload is large (see
    /// [`Store::commit_chunk_result`]).
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool> {
        let text = result.payload_text()?;
        if text.len() <= RESULT_PART_BYTES && result.encoded.is_none() {
            return self.commit_chunk_result(lease, result, 0).await;
        }
        let mut parts = 0u32;
        for start in (0..text.len()).step_by(RESULT_PART_BYTES) {
            let end = (start + RESULT_PART_BYTES).min(text.len());
            self.put_result_part(lease, parts, text.slice(start..end))
                .await?;
            parts += 1;
        }
        self.commit_chunk_result(lease, &result.header(), parts)
            .await
    }
    /// Progress derived from stored results.
    async fn progress(&self, job: &str) -> BackendResult<Progress>;
    /// Every stored chunk result of a job without its payload, by chunk index.
    async fn result_headers(&self, job: &str) -> BackendResult<Vec<StoredResult>>;
    /// The stored chunk results of tasks `tasks` (chunk indices) of a job, without payloads,
    /// by chunk index: a page of a job's tasks, at a cost that does not grow with the job.
    async fn result_headers_in(
        &self,
        job: &str,
        tasks: std::ops::Range<u32>,
    ) -> BackendResult<Vec<StoredResult>> {
        let mut headers = self.result_headers(job).await?;
        headers.retain(|h| tasks.contains(&h.chunk));
        Ok(headers)
    }
    /// Part `part` of the payload's JSON text of a stored chunk result.
    async fn result_part(&self, job: &str, chunk: u32, part: u32) -> BackendResult<Bytes>;
    /// Every stored chunk result of a job, by chunk index, payloads assembled. Holds the whole
    /// job's results in memory: for tests and tools; the master streams parts instead.
    async fn chunk_results(&self, job: &str) -> BackendResult<Vec<ChunkResult>> {
        let mut results = Vec::new();
        for header in self.result_headers(job).await? {
            let mut text = Vec::new();
            for part in 0..header.parts {
                text.extend_from_slice(&self.result_part(job, header.chunk, part).await?);
            }
            let payload = serde_json::from_slice(&text).map_err(|e| {
                BackendError::Corrupt(format!("job {job:?} chunk {}: {e}", header.chunk))
            })?;
            results.push(ChunkResult {
                chunk: header.chunk,
                matches: header.matches,
                payload,
                encoded: None,
                worker: header.worker,
                run: Box::new(header.run),
            });
        }
        Ok(results)
    }
    /// The newest `limit` jobs without their specs, with progress: what listings and metrics
    /// show, at a cost that does not grow with spec size.
    async fn job_summaries(&self, limit: usize) -> BackendResult<Vec<JobSummary>>;
    /// Marks the ends of the finished `jobs` as logged, and tells for each whether it was not
    /// marked yet, so a master logs each job's end once, also an end that happened while no
    /// master ran (Redis workers finish jobs by themselves). `None` where the store keeps no
    /// marks: its jobs end only through a running master. A job no longer stored reads as
    /// marked.
    async fn mark_ends_logged(&self, _jobs: &[JobId]) -> BackendResult<Option<Vec<bool>>> {
        Ok(None)
    }
    /// How many results were refused, by reason, since the backend started counting.
    async fn refused_results(&self) -> BackendResult<Vec<(RefusalReason, u64)>>;
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
    /// Removes a worker's stored metrics; false if there were none.
    async fn forget_worker_metrics(&self, worker: &str) -> BackendResult<bool> {
        Err(BackendError::Other(format!(
            "this backend cannot forget worker {worker:?}; ask the master"
        )))
    }
    /// Deletes every finished (completed, failed, cancelled) job that finished at or before
    /// `finished_before` (Unix seconds): its record, spec, results and any task input left, and
    /// returns the space to the system. A job still uploading, queued or running is never
    /// touched. Worker task times are not job data and stay.
    async fn prune_finished(&self, finished_before: f64) -> BackendResult<PruneReport>;
    /// Every worker's task counts and recent task times, per job kind. A task counts when its
    /// worker's result is the first stored for it; its time is kept when the result carries one.
    async fn task_times(&self) -> BackendResult<Vec<TaskTimes>>;
    /// Starts storing a genome as its upload streams in.
    async fn begin_genome(&self) -> BackendResult<Box<dyn GenomeWriter>> {
        Err(no_genomes())
    }
    /// The complete genome stored under `hash`, if any, now recorded as used by `job`: one
    /// atomic step, so a removal or prune either happens before (and the job uploads again) or
    /// sees the job and keeps the genome.
    async fn use_genome(&self, _hash: &str, _job: &str) -> BackendResult<Option<GenomeRecord>> {
        Err(no_genomes())
    }
    /// `len` bases of a stored genome's sequence from `offset`.
    async fn read_genome(&self, _hash: &str, _offset: u64, _len: u64) -> BackendResult<Bytes> {
        Err(no_genomes())
    }
    /// Every stored genome, with how many existing jobs used it.
    async fn genomes(&self) -> BackendResult<Vec<GenomeRecord>> {
        Err(no_genomes())
    }
    /// Deletes a stored genome unless an unfinished job uses it; checked and deleted in one
    /// atomic step.
    async fn remove_genome(&self, _hash: &str) -> BackendResult<GenomeRemoval> {
        Err(no_genomes())
    }
    /// Deletes every genome no unfinished job uses and last used at or before `unused_before`
    /// (Unix seconds); returns their hashes. Each is checked and deleted atomically.
    async fn prune_genomes(&self, _unused_before: f64) -> BackendResult<Vec<String>> {
        Err(no_genomes())
    }
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
