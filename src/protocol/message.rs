//! Every message of the protocol, defined once as a serde enum tagged by `"type"` and shared by
//! both ends: job messages (`submit_job`, `query_status`, ...), the worker's lease cycle
//! (`lease`, `ack`, `nack`, ...), the watchman's messages, and `hello` / `error`. Raw data frames
//! are announced by the message before them (`submit_job.file_size`, `task.data_len`).

use serde::{Deserialize, Serialize};

use super::batch::{BatchJob, BatchJobAccepted, PurgeFilter};
use super::watchman::{Alert, RunningTask, WorkerReport, WorkerView};
use crate::records::live_output::{OutputPiece, TaskOutputView};
use crate::records::performance::WorkerPerformance;
use crate::records::{
    ChunkResult, GenomeRecord, GenomeRemoval, JobStatus, Priority, PruneReport, RefusalReason,
};

/// Which way an autoscaler moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleDirection {
    /// A worker was started.
    Up,
    /// A worker was stopped.
    Down,
}

impl ScaleDirection {
    /// `up` or `down`, as the metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleDirection::Up => "up",
            ScaleDirection::Down => "down",
        }
    }
}

/// One priority's backlog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueLevel {
    /// The priority.
    pub priority: Priority,
    /// Tasks of unfinished jobs waiting for a worker (no result, no lease).
    pub tasks: u64,
    /// Seconds the oldest task nobody holds has waited (0 when none waits).
    pub oldest_task_age_seconds: f64,
}

/// Version carried in `hello` and in every frame's `v`; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Who is on the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A command-line client (submit, status, ...).
    Client,
    /// A worker leasing tasks (embedded backend).
    Worker,
    /// A per-host agent.
    Agent,
    /// The collector.
    Collector,
}

/// Which server answered a `hello`: a client that dialled the wrong port is told what it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    /// The master (jobs, tasks, results).
    Master,
    /// The collector (agents' reports, liveness, alerts).
    Collector,
    /// A per-host agent (its worker's heartbeats).
    Agent,
}

impl ServerRole {
    /// The role's name, as the command that starts it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Master => "master",
            ServerRole::Collector => "collector",
            ServerRole::Agent => "agent",
        }
    }
}

/// The wire word of the code (`"unauthorized"`, ...), for error text and logs.
impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&word)
    }
}

/// Machine-readable reason carried by an `error` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not valid JSON.
    BadJson,
    /// The JSON has a `type` this server does not know.
    UnknownType,
    /// A known message with missing or ill-typed fields.
    BadMessage,
    /// A frame over the size limit.
    FrameTooLarge,
    /// A frame that could not be read (closed mid-frame, wrong place for data).
    BadFrame,
    /// A message that is valid but not expected at this point (e.g. no `hello` first).
    UnexpectedMessage,
    /// Protocol versions differ.
    VersionMismatch,
    /// Missing or wrong cluster token.
    Unauthorized,
    /// A worker id already held by another live worker (or a worker's live agent).
    IdInUse,
    /// A pattern with a letter outside the nucleotide and IUPAC alphabet, or none at all.
    BadPattern,
    /// The input is not a sequence file the chunker accepts.
    BadInput,
    /// The announced upload exceeds the maximum upload size.
    UploadTooLarge,
    /// The upload ended before `file_size` bytes arrived.
    UploadIncomplete,
    /// Too many jobs from this client in the last minute.
    RateLimited,
    /// A result refused: the sender does not hold the task's current lease, the task does not
    /// exist, or a value is out of range.
    ResultRefused,
    /// No job with that id.
    NoSuchJob,
    /// The job exists but is not in a state that allows the request.
    JobNotReady,
    /// The server is at its connection limit.
    Busy,
    /// No frame arrived within the read timeout.
    Timeout,
    /// Any server-side failure (backend unavailable, ...).
    Internal,
    /// No worker with that id is known.
    NoSuchWorker,
    /// The worker is alive, so the request (forgetting it) is refused.
    WorkerAlive,
}

/// How far a job is, in chunks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    /// Chunks in the job.
    pub total_chunks: u32,
    /// Chunks with a stored result.
    pub processed_chunks: u32,
    /// processed / total × 100.
    pub percentage: f64,
}

/// The job's running total so far (`partial_results`): matches for a search, iterations for a
/// Julia set, collisions for particles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialResults {
    /// Sum of the stored task results' progress counts (what the job view's `progress_figure`
    /// names; the field keeps its first name so older clients still read it).
    pub matches_found: u64,
}

/// What a job kind's running total counts, so every view names it for what it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressFigure {
    /// Pattern matches (search).
    #[default]
    Matches,
    /// Iterations summed over pixels (Julia sets).
    Iterations,
    /// Collisions (particle simulations).
    Collisions,
    /// Failed tasks (command jobs): the job fails when it ends above 0.
    Failures,
}

impl ProgressFigure {
    /// The figure's name, plural and lower-case, as views print it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressFigure::Matches => "matches",
            ProgressFigure::Iterations => "iterations",
            ProgressFigure::Collisions => "collisions",
            ProgressFigure::Failures => "failures",
        }
    }
}

/// A job's state as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job's id.
    pub job_id: String,
    /// Job kind (`search`, ...).
    pub kind: String,
    /// One line on what the job asks, from its kind (empty from masters that predate kinds).
    #[serde(default)]
    pub summary: String,
    /// Current status.
    pub status: JobStatus,
    /// Chunks done out of total.
    pub progress: ProgressView,
    /// The running total so far.
    pub partial_results: PartialResults,
    /// What the running total counts (absent from older masters, which meant matches).
    #[serde(default)]
    pub progress_figure: ProgressFigure,
    /// Why the job failed, if it did.
    pub error: Option<String>,
    /// Unix time the job was created.
    pub created_at: f64,
    /// Unix time the job finished, if it did.
    pub finished_at: Option<f64>,
    /// Queue priority (absent from masters that did not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// How the job's input arrived (search jobs, in `status` answers); boxed, as most views
    /// have none and this one travels in every status message.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Box<InputArrival>>,
}

/// How a job's input reached the master.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputArrival {
    /// Bytes the job's submit uploaded: 0 when its input was a genome stored already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
    /// Whether the job searched a genome stored by an earlier submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genome_reused: Option<bool>,
    /// Whether the job was answered from the result cache (a copy of an identical finished
    /// job's results; no task ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// For a job answered from the result cache: the job whose results it copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
}

/// What `remove_genomes` did with one named genome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenomeRemovalOutcome {
    /// The genome's full hash.
    pub hash: String,
    /// Removed, or kept because unfinished jobs use it.
    #[serde(flatten)]
    pub removal: GenomeRemoval,
}

/// What a nack led to, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum NackReply {
    /// Queued again; the next delivery is attempt `next_attempt`.
    Retrying {
        /// Attempt number of the next delivery.
        next_attempt: u32,
    },
    /// Attempts exhausted: dead-lettered, the job failed.
    DeadLettered,
    /// The lease was no longer held; nothing changed.
    Stale,
}

/// One task of a `tasks` reply: the fields of a `task` message. Its data frame follows the reply,
/// in the order of the tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskHeader {
    /// The job.
    pub job_id: String,
    /// The chunk.
    pub chunk: u32,
    /// The job kind's tag.
    pub kind: String,
    /// Kind-specific task spec.
    pub spec: serde_json::Value,
    /// 1 on first delivery.
    pub attempt: u32,
    /// Proof of this delivery, for extend/ack/nack.
    pub token: String,
    /// Size of this task's data frame.
    pub data_len: u64,
}

/// One finished task of a `complete_batch` request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletedTask {
    /// The job.
    pub job_id: String,
    /// The lease's token.
    pub token: String,
    /// The result, payload inline.
    pub result: ChunkResult,
}

/// What became of one task of a `complete_batch` request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CompletionReply {
    /// Stored (first: this write was the first for the chunk) and acked.
    Stored {
        /// True if this write was the first for (job, chunk).
        first: bool,
    },
    /// Refused: the sender does not hold the lease, or the result is out of range. Not acked.
    Refused {
        /// Why, as data; absent only from a master that predates it, where the lease is taken
        /// as not held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<RefusalReason>,
        /// Why, as the backend words it, for the log.
        message: String,
    },
    /// Not settled for another reason (the backend failed); the task may be sent again.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// One protocol message. Serialized as a JSON object whose `type` is the snake_case variant name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First frame of every connection.
    Hello {
        /// The sender's role.
        role: Role,
        /// The sender's protocol version.
        version: u32,
        /// The cluster token, when the cluster has one.
        #[serde(default)]
        token: Option<String>,
        /// Worker or agent id (`--id`).
        #[serde(default)]
        id: Option<String>,
        /// A worker process's random nonce: connections of one process share it, so a second
        /// live process with the same id is told apart and refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// The server's answer to `hello`.
    Welcome {
        /// The server's protocol version.
        version: u32,
        /// The server's software version.
        server: String,
        /// Which server this is (absent from servers that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<ServerRole>,
    },
    /// Starts a job of any kind. A kind that uploads its input (search) announces `file_size`
    /// and sends that many bytes of raw data frames after `ready`; other kinds are accepted at once.
    SubmitJob {
        /// Client-chosen id: a retried submit with the same id is idempotent.
        job_id: String,
        /// The job kind's tag; absent in submits that predate kinds, which were all searches.
        #[serde(default = "search_kind")]
        kind: String,
        /// The kind's own fields (for a search: filename, patterns, options, chunk_size). Submits
        /// that predate kinds wrote a search's fields at the top level instead: see
        /// [`Message::submitted_spec`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<serde_json::Value>,
        /// Exact number of bytes the upload will carry, for kinds that upload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_size: Option<u64>,
        /// Queue priority.
        #[serde(default)]
        priority: Priority,
        /// Any other top-level fields: a pre-kinds search's spec (and the frame's `v`).
        #[serde(flatten)]
        top_level: serde_json::Map<String, serde_json::Value>,
    },
    /// The server takes the upload: send the data frames now.
    Ready {
        /// The job being uploaded.
        job_id: String,
    },
    /// The job is accepted (after its last data frame, or at once for a retried id).
    Accepted {
        /// The job's id.
        job_id: String,
        /// Chunk tasks created.
        total_chunks: u32,
        /// Workers seen recently; 0 means the job waits for one.
        active_workers: u32,
        /// True when this id had already been accepted (idempotent retry).
        existing: bool,
        /// The BLAKE3 of the search input the job reads, as the master computed it from the
        /// upload (or found it stored): a client that hashed its file while sending checks it
        /// before remembering its hash.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        genome_hash: Option<String>,
    },
    /// Asks for a job's state.
    QueryStatus {
        /// The job.
        job_id: String,
    },
    /// A job's state.
    JobStatus {
        /// The job.
        job: JobView,
        /// Workers seen recently.
        active_workers: u32,
    },
    /// Asks for one stream of a command task's output from `from` on, while it runs or once
    /// it has finished; answered by `task_output_text`.
    TaskOutput {
        /// The job.
        job_id: String,
        /// The task's own number (array index or args-file line number).
        task: u64,
        /// Its stderr rather than its stdout.
        #[serde(default)]
        stderr: bool,
        /// The offset in the stream to start from.
        #[serde(default)]
        from: u64,
    },
    /// Answer to `task_output`.
    TaskOutputText {
        /// The piece of output and where the task stands.
        output: TaskOutputView,
    },
    /// Asks for a finished job's results; answered by `results_header` (its spec in data frames
    /// after it) then one `result_chunk` per stored chunk result (its payload in data frames after
    /// it), so no frame grows with the job.
    GetResults {
        /// The job.
        job_id: String,
    },
    /// Precedes `spec_parts` data frames, then `chunks` `result_chunk` messages.
    ResultsHeader {
        /// The job's state.
        job: JobView,
        /// The job's kind-specific spec inline, or null when it follows in `spec_parts` frames.
        #[serde(default)]
        spec: serde_json::Value,
        /// How many `result_chunk` messages follow.
        chunks: u32,
        /// Data frames that follow this message, carrying the spec's JSON text in order.
        #[serde(default)]
        spec_parts: u32,
    },
    /// One stored chunk result; its payload follows in `parts` data frames (JSON text, in order),
    /// or is inline when `parts` is 0.
    ResultChunk {
        /// The result.
        result: ChunkResult,
        /// Data frames that follow with the payload.
        #[serde(default)]
        parts: u32,
    },
    /// Cancels a job: queued tasks are removed, late results ignored.
    Cancel {
        /// The job.
        job_id: String,
    },
    /// The job is cancelled.
    Cancelled {
        /// The job.
        job_id: String,
        /// Queued tasks removed.
        removed_tasks: u32,
    },
    /// Lists jobs, newest first.
    ListJobs,
    /// The jobs.
    Jobs {
        /// Newest first.
        jobs: Vec<JobView>,
        /// Workers seen recently.
        active_workers: u32,
    },
    /// A worker asks for a task, waiting up to `wait_ms` for one.
    Lease {
        /// Longest wait in milliseconds.
        wait_ms: u64,
        /// The worker runs command tasks (started with --allow-commands): only then may it be
        /// handed one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        commands: bool,
        /// The worker's task slots: a command task taking more is never handed to it (absent:
        /// one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slots: Option<u32>,
        /// The id (32 hex digits) of the master's stored genomes' directory, which this worker
        /// reads on the master's host: tasks of genomes complete there come without their bases.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        genome_files: Option<String>,
        /// It also reads genomes still being uploaded into that directory, by the block list
        /// beside each: a first search's tasks come without their bases too.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        genome_partials: bool,
    },
    /// A leased task; one data frame of `data_len` bytes follows.
    Task {
        /// The job.
        job_id: String,
        /// The chunk.
        chunk: u32,
        /// The job kind's tag, which tells the worker how to run the task (absent from masters
        /// that predate kinds: search).
        #[serde(default = "search_kind")]
        kind: String,
        /// Kind-specific task spec.
        spec: serde_json::Value,
        /// 1 on first delivery.
        attempt: u32,
        /// Proof of this delivery, for extend/ack/nack.
        token: String,
        /// Size of the data frame that follows.
        data_len: u64,
    },
    /// No task arrived within the wait.
    NoTask,
    /// A worker asks for up to `max` tasks, waiting up to `wait_ms` for the first.
    LeaseBatch {
        /// Longest wait in milliseconds.
        wait_ms: u64,
        /// Most tasks wanted.
        max: u32,
        /// The worker runs command tasks (see `lease`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        commands: bool,
        /// The worker's task slots (see `lease`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slots: Option<u32>,
        /// The stored genomes' directory the worker reads (see `lease`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        genome_files: Option<String>,
        /// It reads uploads in progress there too (see `lease`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        genome_partials: bool,
    },
    /// Answer to `lease_batch`: the tasks leased (none if none arrived within the wait); one
    /// data frame per task follows, in order.
    Tasks {
        /// The tasks.
        tasks: Vec<TaskHeader>,
    },
    /// Stores the results of many leased tasks and acks each one stored, each fenced by its
    /// own lease.
    CompleteBatch {
        /// The finished tasks.
        tasks: Vec<CompletedTask>,
    },
    /// Answer to `complete_batch`: one outcome per task, in order.
    BatchCompleted {
        /// The outcomes.
        outcomes: Vec<CompletionReply>,
    },
    /// Extends a held lease's visibility deadline.
    Extend {
        /// The job.
        job_id: String,
        /// The chunk.
        chunk: u32,
        /// The delivery's token.
        token: String,
        /// A running command task's new output, kept while the lease is held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<OutputPiece>,
    },
    /// Answer to `extend`.
    Extended {
        /// False if the lease is no longer held.
        held: bool,
    },
    /// Stores a chunk result (first write wins), from the holder of the chunk's lease only.
    PutResult {
        /// The job.
        job_id: String,
        /// The lease's token: the proof that the sender holds the chunk's current delivery.
        #[serde(default)]
        token: String,
        /// The result; its payload is null when it follows in `parts` data frames.
        result: ChunkResult,
        /// Data frames that follow, carrying the payload's JSON text in order (0: inline).
        #[serde(default)]
        parts: u32,
    },
    /// Answer to `put_result`.
    ResultStored {
        /// True if this write was the first for (job, chunk).
        first: bool,
    },
    /// Completes a leased task (after its result is stored).
    Ack {
        /// The job.
        job_id: String,
        /// The chunk.
        chunk: u32,
        /// The delivery's token.
        token: String,
    },
    /// Answer to `ack`.
    Acked,
    /// Returns a leased task after a failure.
    Nack {
        /// The job.
        job_id: String,
        /// The chunk.
        chunk: u32,
        /// The delivery's token.
        token: String,
        /// What went wrong.
        error: String,
    },
    /// Answer to `nack`.
    Nacked {
        /// What happened to the task.
        #[serde(flatten)]
        outcome: NackReply,
    },
    /// A worker back after a lost connection names every lease it holds; the master returns
    /// to the queue whatever else is leased under the worker's id (tasks whose lease reply was
    /// lost with the connection).
    ReleaseUnheld {
        /// Tokens of the leases the worker has in hand.
        held: Vec<String>,
    },
    /// Answer to `release_unheld`.
    ReleasedUnheld {
        /// How many leases went back to the queue.
        released: u64,
    },
    /// A request failed; for frame-level errors the connection closes after this.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// What went wrong and what to do, for a human.
        message: String,
        /// With `result_refused`: why the result was refused, as data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<RefusalReason>,
    },
    /// Creates the jobs of one batch file (kinds that need no upload). Every job is checked
    /// before any is created; an id that exists already is left as it is.
    SubmitBatch {
        /// The batch file's name, kept with each job.
        source: String,
        /// The jobs, in file order.
        jobs: Vec<BatchJob>,
    },
    /// Answer to `submit_batch`: one entry per job, in order.
    BatchAccepted {
        /// What became of each job.
        jobs: Vec<BatchJobAccepted>,
        /// Workers seen recently.
        active_workers: u32,
    },
    /// Cancels every queued job that has not started (no task of it ever leased), among those the
    /// filter matches.
    PurgeQueue {
        /// Which jobs.
        #[serde(flatten)]
        filter: PurgeFilter,
    },
    /// Answer to `purge_queue`: the jobs cancelled.
    Purged {
        /// Their ids.
        job_ids: Vec<String>,
    },
    /// Deletes finished jobs (their results and stored input) that finished at least
    /// `older_than_secs` seconds ago; jobs not finished are never touched.
    Prune {
        /// Age, in seconds since the job finished, from which a job is deleted (0: every
        /// finished job).
        older_than_secs: f64,
    },
    /// Answer to `prune`: what was deleted and the space returned.
    Pruned {
        /// The report.
        #[serde(flatten)]
        report: PruneReport,
    },
    /// Client → master: stores a command input for the job `job_id` is about to submit. When the
    /// master holds an input with this hash and size already it answers `input_stored` at once
    /// (nothing is sent); otherwise `ready`, then `size` bytes of data frames, then
    /// `input_stored`. The master hashes what arrives and keeps it only under the announced hash.
    PutInput {
        /// The job that will use the input (it is kept while that job is unfinished).
        job_id: String,
        /// BLAKE3 of the file, 64 lowercase hex digits.
        hash: String,
        /// The file's size in bytes.
        size: u64,
    },
    /// Answer to `put_input`: the input is stored under `hash`.
    InputStored {
        /// The input's hash.
        hash: String,
        /// False when it was stored already and nothing was uploaded.
        uploaded: bool,
    },
    /// Worker → master: `len` bytes (at most the protocol's input piece) of the stored command
    /// input `hash`, from `offset`.
    ReadInput {
        /// The input's hash.
        hash: String,
        /// First byte.
        offset: u64,
        /// Bytes wanted.
        len: u64,
    },
    /// Answer to `read_input`: one data frame of `len` bytes follows.
    InputPiece {
        /// Bytes in the data frame that follows.
        len: u64,
    },
    /// Client → master: every stored genome.
    ListGenomes,
    /// Answer to `list_genomes`, oldest first.
    Genomes {
        /// The stored genomes.
        genomes: Vec<GenomeRecord>,
    },
    /// Client → master: deletes stored genomes, named by hash or unique hash prefix. A genome an
    /// unfinished job uses is kept. Nothing is deleted if a name matches no genome or several.
    RemoveGenomes {
        /// Hashes or prefixes.
        hashes: Vec<String>,
    },
    /// Answer to `remove_genomes`: what became of each named genome, in order.
    GenomesRemoved {
        /// One entry per name.
        outcomes: Vec<GenomeRemovalOutcome>,
    },
    /// Client → master: a stored genome (named by hash or unique hash prefix) as a UCSC `.2bit`
    /// file.
    ExportGenome {
        /// Hash or prefix.
        hash: String,
    },
    /// Answer to `export_genome`: data frames follow, `bytes` in all, the file's bytes in order.
    GenomeExport {
        /// The genome's full hash.
        hash: String,
        /// The `.2bit` file's size in bytes.
        bytes: u64,
    },
    /// Client → master: every worker's task counts and task times per job kind.
    ListPerformance,
    /// Answer to `list_performance`, by worker id.
    Performance {
        /// One entry per worker that completed a task.
        workers: Vec<WorkerPerformance>,
    },
    /// Autoscaler → master: it started or stopped a worker, and why; counted in /metrics.
    AutoscaleEvent {
        /// Up (a worker started) or down (one stopped).
        direction: ScaleDirection,
        /// The worker started or stopped.
        worker_id: String,
        /// Why, in a sentence.
        reason: String,
    },
    /// Client → master: the backlog per priority, for `status --queue` and autoscalers.
    QueryQueue,
    /// Answer to `query_queue`.
    QueueBacklog {
        /// One entry per priority, high first.
        priorities: Vec<QueueLevel>,
        /// Leases handed out by this master and not yet acknowledged or returned.
        leases_in_flight: u64,
        /// Workers seen recently.
        active_workers: u32,
    },
    // --- The watchman: worker ↔ agent, agent → collector, collector → master, queries. ---
    /// Worker → agent over the Unix socket, every second.
    Heartbeat {
        /// Unix time the heartbeat was sent.
        timestamp: f64,
        /// The worker's pid, which the agent probes when the connection drops.
        pid: u32,
        /// Tasks completed since the worker started.
        tasks_completed: u64,
        /// The task in progress (`job/chunk`), if any: the first of `running`, for agents
        /// that read only this.
        #[serde(default)]
        current_task: Option<String>,
        /// Every task in progress, with its child's pid when it runs as a child process.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        running: Vec<RunningTask>,
    },
    /// Worker → agent: a clean exit follows, not a crash.
    Goodbye {
        /// Why the worker leaves (`scaled down`), when it was told; shown by `workers`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Agent → worker: stop or resume leasing (a resource warning fired or resolved), so a hot
    /// machine takes no new work until it cools down.
    LeaseAdvice {
        /// True: finish the current task, then lease nothing until advised otherwise.
        pause: bool,
        /// The firing warning(s), when paused.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Agent → collector: one report.
    Metrics {
        /// The report.
        data: Box<WorkerReport>,
    },
    /// Collector → agent: the report was taken; carries the lease verdict for the worker.
    MetricsAck {
        /// The acknowledged report's sequence number.
        seq: u64,
        /// Whether the worker should stop leasing (a firing resource warning).
        pause_leasing: bool,
        /// The firing warning(s), when paused.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Agent → collector, between full reports (every second by default): the host and its
    /// link are up. Small, so the collector can judge a host lost within seconds.
    AgentHeartbeat {
        /// The worker this agent watches.
        worker_id: String,
        /// How often the agent sends these, seconds; the collector counts misses against it.
        interval_secs: f64,
    },
    /// Collector → agent: the heartbeat was taken; carries the lease verdict like `metrics_ack`.
    AgentHeartbeatAck {
        /// Whether the worker should stop leasing (a firing resource warning).
        pause_leasing: bool,
        /// The firing warning(s), when paused.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Collector → master: the worker is dead; reclaim its leases now.
    WorkerDown {
        /// The dead worker.
        worker_id: String,
        /// Unix time of the alert.
        timestamp: f64,
        /// The task it was last seen running.
        #[serde(default)]
        last_task_id: Option<String>,
        /// The alert's message.
        #[serde(default)]
        reason: String,
        /// Tasks the collector re-queued itself before telling the master (it reaches a shared
        /// backend directly); absent when it left that to the master.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requeued_by_collector: Option<u64>,
    },
    /// Master → collector: leases reclaimed.
    WorkerDownAck {
        /// The worker.
        worker_id: String,
        /// How many leases went back to the queue.
        reclaimed: u64,
    },
    /// Collector → master (embedded backend): append an alert event to the store's history.
    RecordAlert {
        /// The event.
        alert: Alert,
    },
    /// Collector → master (embedded backend): store a worker's latest view with a TTL.
    RecordWorker {
        /// The view.
        worker: Box<WorkerView>,
        /// Seconds until the stored view expires unless refreshed.
        ttl_secs: f64,
    },
    /// Answer to `record_alert` and `record_worker`.
    Recorded,
    /// Client → master or collector: every known worker's liveness view.
    ListWorkers,
    /// The workers, by id.
    Workers {
        /// One view per worker.
        workers: Vec<WorkerView>,
    },
    /// Client → master: drop a dead or inactive worker from the views (refused for a live one).
    ForgetWorker {
        /// The worker.
        worker_id: String,
    },
    /// Answer to `forget_worker`.
    WorkerForgotten {
        /// The worker.
        worker_id: String,
    },
    /// Client → master or collector: the most recent alert events.
    ListAlerts {
        /// At most this many.
        limit: u32,
    },
    /// Alert events, newest first.
    Alerts {
        /// The events.
        alerts: Vec<Alert>,
    },
}

fn search_kind() -> String {
    crate::records::DEFAULT_TASK_KIND.to_string()
}

/// Fields a frame carries besides its message's own.
const ENVELOPE_FIELDS: &[&str] = &["v"];

impl Message {
    /// A `submit_job`'s kind spec: its `spec` field, or else the fields a pre-kinds search
    /// submit wrote at the top level. `None` for any other message.
    pub fn submitted_spec(&self) -> Option<serde_json::Value> {
        let Message::SubmitJob {
            spec, top_level, ..
        } = self
        else {
            return None;
        };
        if let Some(spec) = spec {
            return Some(spec.clone());
        }
        let mut fields = top_level.clone();
        for envelope in ENVELOPE_FIELDS {
            fields.remove(*envelope);
        }
        Some(serde_json::Value::Object(fields))
    }

    /// The wire `type` of this message (`"query_status"`, ...), for error text and logs.
    pub fn type_name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| {
                value
                    .get("type")
                    .and_then(|t| t.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "message".into())
    }
}

/// Tells malformed JSON, an unknown `type` and a known type with bad fields apart.
pub fn classify_decode_error(frame: &[u8], err: &serde_json::Error) -> (ErrorCode, String) {
    let value: serde_json::Value = match serde_json::from_slice(frame) {
        Ok(value) => value,
        Err(parse) => return (ErrorCode::BadJson, format!("malformed JSON: {parse}")),
    };
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return (
            ErrorCode::BadMessage,
            "message has no \"type\" field; every frame is a JSON object with a type".into(),
        );
    };
    if !is_message_type(kind) {
        return (
            ErrorCode::UnknownType,
            format!("unknown message type {kind:?}"),
        );
    }
    (ErrorCode::BadMessage, format!("bad {kind} message: {err}"))
}

/// Whether `kind` is the `type` of a message: asked of the message type's own decoder, which
/// names an unknown tag through [`serde::de::Error::unknown_variant`], so no error text is read.
fn is_message_type(kind: &str) -> bool {
    use serde::de::value::MapDeserializer;
    use serde::Deserialize as _;

    /// Remembers whether decoding failed on an unknown variant, and nothing else.
    #[derive(Debug)]
    struct Probe {
        unknown_variant: bool,
    }
    impl std::fmt::Display for Probe {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "unknown variant: {}", self.unknown_variant)
        }
    }
    impl std::error::Error for Probe {}
    impl serde::de::Error for Probe {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Probe {
                unknown_variant: false,
            }
        }
        fn unknown_variant(_: &str, _: &'static [&'static str]) -> Self {
            Probe {
                unknown_variant: true,
            }
        }
    }
    let fields = MapDeserializer::<_, Probe>::new(std::iter::once(("type", kind)));
    !matches!(
        Message::deserialize(fields),
        Err(Probe {
            unknown_variant: true
        })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_the_wire_tags() {
        assert_eq!(Message::ListJobs.type_name(), "list_jobs");
        let nacked = Message::Nacked {
            outcome: NackReply::DeadLettered,
        };
        assert_eq!(nacked.type_name(), "nacked");
    }

    #[test]
    fn tags_are_snake_case_types() {
        let json = serde_json::to_value(Message::QueryStatus {
            job_id: "j1".into(),
        })
        .unwrap();
        assert_eq!(json["type"], "query_status");
        assert_eq!(json["job_id"], "j1");
    }

    #[test]
    fn decode_errors_are_classified() {
        let err = |frame: &[u8]| {
            let e = serde_json::from_slice::<Message>(frame).unwrap_err();
            classify_decode_error(frame, &e).0
        };
        assert_eq!(err(b"{not json"), ErrorCode::BadJson);
        assert_eq!(err(br#"{"type":"teleport"}"#), ErrorCode::UnknownType);
        assert_eq!(err(br#"{"type":"query_status"}"#), ErrorCode::BadMessage);
        assert_eq!(err(br#"{"job_id":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(
            err(br#"{"type":"hello","role":"pirate","version":1}"#),
            ErrorCode::BadMessage
        );
    }

    #[test]
    fn a_submit_without_kind_is_a_search_with_top_level_fields() {
        let frame = br#"{"v":1,"type":"submit_job","job_id":"old","filename":"g.fa",
            "patterns":[{"name":"p","sequence":"ACGT"}],"file_size":10,"chunk_size":null}"#;
        let message: Message = serde_json::from_slice(frame).unwrap();
        let Message::SubmitJob {
            ref kind,
            file_size,
            ..
        } = message
        else {
            panic!("not a submit_job: {message:?}");
        };
        assert_eq!(kind, "search");
        assert_eq!(file_size, Some(10));
        assert_eq!(
            message.submitted_spec(),
            Some(serde_json::json!({
                "filename": "g.fa",
                "patterns": [{"name": "p", "sequence": "ACGT"}],
                "chunk_size": null
            }))
        );
    }

    #[test]
    fn a_submit_with_kind_carries_its_spec_nested() {
        let message = Message::SubmitJob {
            job_id: "new".into(),
            kind: "julia".into(),
            spec: Some(serde_json::json!({ "width": 4 })),
            file_size: None,
            priority: Priority::High,
            top_level: Default::default(),
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["kind"], "julia");
        assert_eq!(json["spec"]["width"], 4);
        assert!(json.get("file_size").is_none());
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.submitted_spec(),
            Some(serde_json::json!({ "width": 4 }))
        );
        assert_eq!(back, message);
    }

    #[test]
    fn a_task_without_kind_is_a_search_task() {
        let frame = br#"{"type":"task","job_id":"j","chunk":0,"spec":{},"attempt":1,
            "token":"1","data_len":0}"#;
        match serde_json::from_slice::<Message>(frame).unwrap() {
            Message::Task { kind, .. } => assert_eq!(kind, "search"),
            other => panic!("not a task: {other:?}"),
        }
    }

    #[test]
    fn nacked_outcome_is_flattened() {
        let json = serde_json::to_value(Message::Nacked {
            outcome: NackReply::Retrying { next_attempt: 2 },
        })
        .unwrap();
        assert_eq!(json["type"], "nacked");
        assert_eq!(json["outcome"], "retrying");
        assert_eq!(json["next_attempt"], 2);
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(
            back,
            Message::Nacked {
                outcome: NackReply::Retrying { next_attempt: 2 }
            }
        );
    }
}
