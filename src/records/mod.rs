//! The records shared by the wire and the stores: jobs, tasks, leases, results, genomes and
//! what listings show of them. The protocol sends them and the backends keep them in the same
//! shape, so they sit below both: this module imports neither.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod live_output;
pub mod performance;

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
    pub fn payload_text(&self) -> Result<Bytes, PayloadError> {
        match &self.encoded {
            Some(text) => Ok(text.clone()),
            None => serde_json::to_vec(&self.payload)
                .map(Bytes::from)
                .map_err(PayloadError),
        }
    }

    /// Size of the payload's JSON text.
    pub fn payload_len(&self) -> usize {
        match &self.encoded {
            Some(text) => text.len(),
            None => self.payload_text().map_or(0, |text| text.len()),
        }
    }

    /// Whether the payload is stored in parts (see `put_chunk_result`) rather than
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

/// Why a result (or a part of one) was refused. Travels as data in protocol replies (its
/// snake_case word, as [`RefusalReason::as_str`] spells it), so a refusal keeps its reason
/// across the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a stored object holds: a genome's decoded bases, or a command input's exact bytes.
/// Both are kept under the BLAKE3 of the uploaded file, in one store with one retention policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredKind {
    /// A search genome: its sequence without line breaks, records one after another.
    #[default]
    Genome,
    /// A command task's input file, byte for byte.
    Input,
}

impl StoredKind {
    /// `genome` or `input`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredKind::Genome => "genome",
            StoredKind::Input => "input",
        }
    }

    /// The kind a stored word names; anything unknown reads as a genome, the first kind.
    pub fn parse(word: &str) -> StoredKind {
        match word {
            "input" => StoredKind::Input,
            _ => StoredKind::Genome,
        }
    }

    fn is_genome(&self) -> bool {
        *self == StoredKind::Genome
    }
}

/// A genome stored once for any number of searches: the decoded sequence of an uploaded file
/// (bases without line breaks, records one after another) under the BLAKE3 of the file's bytes.
/// A command input is stored the same way with [`StoredKind::Input`]: its bytes as uploaded,
/// `bases` equal to `size_bytes`, no records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenomeRecord {
    /// Whether this is a genome or a command input.
    #[serde(default, skip_serializing_if = "StoredKind::is_genome")]
    pub kind: StoredKind,
    /// BLAKE3 of the uploaded file's bytes, as 64 lowercase hex digits.
    pub hash: String,
    /// Where its bytes are kept: the storage id its upload chose. A record written before
    /// storage ids existed is kept under its hash.
    #[serde(default)]
    pub storage: String,
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

/// A chunk result's payload could not be turned into JSON text.
#[derive(Debug)]
pub struct PayloadError(pub serde_json::Error);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chunk result payload: {}", self.0)
    }
}

impl std::error::Error for PayloadError {}

#[cfg(test)]
mod tests {
    use super::{JobStatus, RefusalReason};

    #[test]
    fn status_words_round_trip_and_match_serde() {
        for status in JobStatus::ALL {
            let word = status.as_str();
            assert_eq!(JobStatus::from_word(word), Some(status));
            assert_eq!(serde_json::to_value(status).ok(), Some(word.into()));
        }
        assert_eq!(JobStatus::from_word("done"), None);
    }

    #[test]
    fn refusal_reasons_travel_as_their_words() {
        for reason in RefusalReason::ALL {
            let word = serde_json::to_value(reason).ok();
            assert_eq!(word, Some(reason.as_str().into()));
            assert_eq!(RefusalReason::from_word(reason.as_str()), Some(reason));
        }
    }
}
