//! What a backend can do, one capability per trait, so that each process holds only what it
//! uses and a call a backend cannot serve does not compile:
//!
//! - a worker holds [`Leases`] (lease, extend, ack, nack, batches, release what it does not
//!   hold) and a [`ResultSink`] (store a result under its lease);
//! - the collector holds a [`MonitorSink`] (alerts and worker views in, worker views back);
//! - the master holds a [`MasterQueue`] ([`Leases`], [`QueueAdmin`], [`WorkerIds`]), a
//!   [`MasterStore`] ([`JobStore`], [`ResultStore`], [`ResultCache`], [`MonitorStore`]) and,
//!   where the backend keeps genomes, a [`GenomeStore`].
//!
//! A backend the master owns and serves (embedded, SQLite) and a shared one (Redis) implement
//! every trait; the remote backend (a worker or the collector reaching the embedded backend
//! through the master) implements only [`Leases`], [`ResultSink`] and [`MonitorSink`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::live_output::{LiveOutput, OutputPiece};
use super::{
    BackendError, BackendResult, ChunkResult, Completion, CompletionOutcome, CreateOutcome,
    GenomeRecord, GenomeRemoval, GenomeWriter, JobId, JobRecord, JobStatus, JobSummary, Lease,
    NackOutcome, NewTask, Priority, Progress, PruneReport, RefusalReason, StoredKind, StoredResult,
    TaskTimes, WorkerId, MAX_BATCH, RESULT_PART_BYTES,
};

/// How long a worker id's claim in a shared backend outlives its holder's last renewal; holders
/// renew every third of it.
pub const WORKER_ID_TTL: Duration = Duration::from_secs(10);

/// A worker's side of the task queue: at-least-once delivery with leases.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Leases the next task for `worker`, highest priority first, waiting up to `wait` for one.
    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>>;
    /// Pushes the lease's visibility deadline to now + the visibility timeout. False if the lease
    /// is no longer held.
    async fn extend(&self, lease: &Lease) -> BackendResult<bool>;
    /// Extends the lease as [`Leases::extend`] does and, while it is held, keeps `piece` (a
    /// running command task's new output) in the task's bounded live tail, dropped when the
    /// task ends. The default only extends: a backend that keeps no tail shows no output
    /// before the task's result is stored.
    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        let _ = piece;
        self.extend(lease).await
    }
    /// Completes the task (call after its result is stored) and frees its input bytes.
    async fn ack(&self, lease: &Lease) -> BackendResult<()>;
    /// Returns the task after a failure: retried up to `max_attempts`, then dead-lettered.
    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome>;
    /// Moves every lease held by `worker` back to the queue except those whose tokens are in
    /// `held`. A worker whose connection was lost during a lease call cannot know whether the
    /// backend handed it tasks whose reply never arrived; on reconnect it names every lease it
    /// has in hand, and whatever else the backend thinks it holds is returned at once instead
    /// of sitting out the visibility timeout. Returns how many were returned.
    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize>;
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
    /// Stores each item's result in `results` and, once it is stored, acks its lease: one
    /// outcome per item, in order (see [`CompletionOutcome`]). Every item is fenced by its own
    /// lease, so one stale token refuses that item only. A result is never acked before it is
    /// stored, so a crash at any point loses no task. The default settles item by item;
    /// backends that are their own store override it to settle the whole batch in one
    /// transaction or round trip, and then write to themselves whatever `results` is passed.
    async fn complete_batch(
        &self,
        results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let outcome = match results.put_chunk_result(&item.lease, &item.result).await {
                Ok(first) => self.ack(&item.lease).await.map(|()| first),
                Err(err) => Err(err),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
    /// Records what `worker` offers the tasks it leases (see [`WorkerOffer`]): whether it runs
    /// command tasks, and how many slots it has. Leases never hand a command task to a worker
    /// not recorded as running them, nor a task taking more slots ([`NewTask::slots`]) than the
    /// worker has. The default records nothing: a backend that keeps no record leases no
    /// command task to anyone but through a backend that does.
    async fn set_offer(&self, _worker: &str, _offer: WorkerOffer) -> BackendResult<()> {
        Ok(())
    }
}

/// What a worker offers the tasks it leases, recorded with [`Leases::set_offer`] before its
/// first lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerOffer {
    /// It runs command tasks (started with --allow-commands or an allow-list).
    pub commands: bool,
    /// Its task slots: a command task taking more (`--cpus`) is never leased to it, however
    /// many of them are free at the moment, so a wide task waits for a wide enough worker.
    pub slots: u32,
    /// The id of the stored genomes' directory this worker reads ranges from itself (it runs on
    /// the master's host, started with `--genome-dir`): a task reading a complete genome kept
    /// in that directory is then handed over without its bases. `None`: bases come with the task.
    pub genome_files: Option<u128>,
    /// It also reads genomes still being uploaded into that directory, by the block list
    /// written beside each one, so a first search's tasks reach it without their bases too.
    /// Workers that predate the block list say nothing, and receive those bases.
    pub genome_partials: bool,
}

impl Default for WorkerOffer {
    /// A worker that said nothing: no command tasks, one slot.
    fn default() -> Self {
        WorkerOffer {
            commands: false,
            slots: 1,
            genome_files: None,
            genome_partials: false,
        }
    }
}

/// How long a command task whose attempt failed on a worker is kept from that worker, so another
/// worker that is free takes the retry; past it the same worker may run it again, so a grid of
/// one worker still retries. A free worker waits in a lease call and is woken by the retry at
/// once, so this only needs to outlast a lease round trip.
pub const RETRY_ELSEWHERE: Duration = Duration::from_secs(2);

/// Where a worker stores a task's result, fenced by the task's lease.
#[async_trait]
pub trait ResultSink: Send + Sync {
    /// Stores `lease`'s chunk result if none is stored for the chunk and the job is not
    /// cancelled; returns true if this write was the first. A large payload is stored in parts
    /// that become visible together (see [`ResultStore::commit_chunk_result`]). Refused
    /// ([`BackendError::Refused`], nothing stored) unless `lease` is the task's current lease
    /// and `result.matches` is within the task's bound.
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool>;
}

/// The master's side of the task queue: what goes in, what is taken back, what waits.
#[async_trait]
pub trait QueueAdmin: Send + Sync {
    /// Adds tasks (and stores their input bytes).
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()>;
    /// Moves every lease held by `worker` back to the queue (the worker is dead). Returns how many.
    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize>;
    /// Moves every lease past its visibility deadline back to the queue. Returns how many.
    async fn reclaim_expired(&self) -> BackendResult<usize>;
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
    /// The most slots offered by a worker that runs command tasks and was live within `window`
    /// (0: no such worker), when the backend itself sees its workers (with Redis, workers never
    /// talk to the master). `None` when it does not: the embedded master sees its workers on its
    /// own connections.
    async fn command_slots_live(&self, _window: Duration) -> BackendResult<Option<u32>> {
        Ok(None)
    }
    /// The live tail of a running task's output (see [`Leases::extend_with_output`]); `None`
    /// when none is kept (the task is not running, has sent nothing yet, or has ended).
    async fn live_output(&self, _job: &str, _chunk: u32) -> BackendResult<Option<LiveOutput>> {
        Ok(None)
    }
    /// The running tasks of `job` whose output is kept, by chunk, their tails' text left out
    /// (at most [`MAX_LIVE_TASKS`](super::live_output::MAX_LIVE_TASKS)).
    async fn live_tasks(&self, _job: &str) -> BackendResult<Vec<LiveOutput>> {
        Ok(Vec::new())
    }
}

/// Worker ids claimed among every process sharing a backend.
#[async_trait]
pub trait WorkerIds: Send + Sync {
    /// Takes or renews the id `worker` for `holder` (a claim value naming one worker process)
    /// among every process sharing this backend, for [`WORKER_ID_TTL`] after the call; false
    /// while another live process holds it. A backend only its master reaches (embedded) leaves
    /// worker ids to the master's own registry: always true.
    async fn hold_worker_id(&self, worker: &str, holder: &str) -> BackendResult<bool>;
    /// Gives up `worker`'s id if `holder` still holds it, so the next claimant need not wait.
    async fn release_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()>;
}

/// Job records: what was asked and where each job stands.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records a new job, or returns the existing one with the same id.
    async fn create_job(&self, job: &JobRecord) -> BackendResult<CreateOutcome>;
    /// Replaces a job whose upload never completed (it failed, or is marked uploading, before
    /// it was accepted) with `job`, dropping the old one's tasks, results and stored input, so
    /// its id can be submitted again; false if the job is not such a one (or is gone).
    async fn restart_upload(&self, job: &JobRecord) -> BackendResult<bool>;
    /// Fetches a job.
    async fn job(&self, id: &str) -> BackendResult<Option<JobRecord>>;
    /// All jobs, newest first.
    async fn jobs(&self) -> BackendResult<Vec<JobRecord>>;
    /// Sets total chunks and status once the input is fully received and queued.
    async fn accept_job(&self, id: &str, total_chunks: u32) -> BackendResult<()>;
    /// Records new jobs in order, each exactly as [`JobStore::create_job`] would, in as few
    /// round trips and commits as the backend allows: a batch file brings thousands at once.
    async fn create_jobs(&self, jobs: &[JobRecord]) -> BackendResult<Vec<CreateOutcome>> {
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            outcomes.push(self.create_job(job).await?);
        }
        Ok(outcomes)
    }
    /// Accepts jobs, each exactly as [`JobStore::accept_job`] would with its chunk count.
    async fn accept_jobs(&self, jobs: &[(String, u32)]) -> BackendResult<()> {
        for (id, total_chunks) in jobs {
            self.accept_job(id, *total_chunks).await?;
        }
        Ok(())
    }
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
    /// Deletes every finished (completed, failed, cancelled) job that finished at or before
    /// `finished_before` (Unix seconds): its record, spec, results and any task input left, and
    /// returns the space to the system. A job still uploading, queued or running is never
    /// touched. Worker task times are not job data and stay.
    async fn prune_finished(&self, finished_before: f64) -> BackendResult<PruneReport>;
}

/// Stored results: written part by part under a lease, read back by the master.
#[async_trait]
pub trait ResultStore: ResultSink {
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
    /// How many results were refused, by reason, since the backend started counting.
    async fn refused_results(&self) -> BackendResult<Vec<(RefusalReason, u64)>>;
    /// Every worker's task counts and recent task times, per job kind. A task counts when its
    /// worker's result is the first stored for it; its time is kept when the result carries one.
    async fn task_times(&self) -> BackendResult<Vec<TaskTimes>>;
}

/// Stores `lease`'s chunk result in `store`, in parts when its payload is large: what a backend
/// that is its own result store answers [`ResultSink::put_chunk_result`] with.
pub async fn put_in_parts<S: ResultStore + ?Sized>(
    store: &S,
    lease: &Lease,
    result: &ChunkResult,
) -> BackendResult<bool> {
    let text = result.payload_text()?;
    if text.len() <= RESULT_PART_BYTES && result.encoded.is_none() {
        return store.commit_chunk_result(lease, result, 0).await;
    }
    let mut parts = 0u32;
    for start in (0..text.len()).step_by(RESULT_PART_BYTES) {
        let end = (start + RESULT_PART_BYTES).min(text.len());
        store
            .put_result_part(lease, parts, text.slice(start..end))
            .await?;
        parts += 1;
    }
    store
        .commit_chunk_result(lease, &result.header(), parts)
        .await
}

/// Where the collector sends what it sees: alerts and worker views, and the views it takes
/// back when it restarts.
#[async_trait]
pub trait MonitorSink: Send + Sync {
    /// Appends an alert (JSON) to the capped alert history.
    async fn push_alert(&self, alert: &serde_json::Value) -> BackendResult<()>;
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

/// The monitor's records as the master reads and edits them.
#[async_trait]
pub trait MonitorStore: MonitorSink {
    /// The most recent alerts, newest first.
    async fn alerts(&self, limit: usize) -> BackendResult<Vec<serde_json::Value>>;
    /// Removes a worker's stored metrics; false if there were none.
    async fn forget_worker_metrics(&self, worker: &str) -> BackendResult<bool>;
}

/// Genomes stored once for any number of searches.
#[async_trait]
pub trait GenomeStore: Send + Sync {
    /// Starts storing an object of `kind` as its upload streams in: a genome is kept packed
    /// two bits a base, a command input byte for byte, so the kind is needed before the
    /// first byte.
    async fn begin_genome(&self, kind: StoredKind) -> BackendResult<Box<dyn GenomeWriter>>;
    /// The complete genome stored under `hash`, if any, now recorded as used by `job`: one
    /// atomic step, so a removal or prune either happens before (and the job uploads again) or
    /// sees the job and keeps the genome.
    async fn use_genome(&self, hash: &str, job: &str) -> BackendResult<Option<GenomeRecord>>;
    /// `len` bases of a stored genome's sequence from `offset`, decoded (for a command input:
    /// its bytes). Reads only what the range needs, however the genome is kept.
    async fn read_genome(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes>;
    /// `len` bases from `offset` of the object stored under storage id `storage` (a record's
    /// [`GenomeRecord::storage`], or an upload's [`GenomeWriter::storage`]): readable while the
    /// upload is still in progress, for the bases its writer reports readable.
    async fn read_stored(&self, storage: &str, offset: u64, len: u64) -> BackendResult<Bytes>;
    /// Deletes the spare copies (see [`GenomeWriter::commit`]) whose job has ended (done,
    /// failed, cancelled or deleted); returns their storage ids.
    async fn sweep_spares(&self) -> BackendResult<Vec<String>>;
    /// Every stored genome, with how many existing jobs used it.
    async fn genomes(&self) -> BackendResult<Vec<GenomeRecord>>;
    /// Deletes a stored genome unless an unfinished job uses it; checked and deleted in one
    /// atomic step.
    async fn remove_genome(&self, hash: &str) -> BackendResult<GenomeRemoval>;
    /// Deletes every genome no unfinished job uses and last used at or before `unused_before`
    /// (Unix seconds); returns their hashes. Each is checked and deleted atomically.
    async fn prune_genomes(&self, unused_before: f64) -> BackendResult<Vec<String>>;
    /// The id of the directory of files complete genomes are kept in, which a worker on the
    /// same host may read ranges from itself instead of receiving them over the network.
    /// `None`: genomes are not kept as local files.
    fn files_id(&self) -> Option<u128> {
        None
    }
    /// Whether the copy under storage id `storage` is complete in that directory, in the
    /// layout such a worker reads.
    async fn in_files(&self, _storage: &str) -> BackendResult<bool> {
        Ok(false)
    }
    /// Whether the copy under storage id `storage` is being uploaded into that directory, its
    /// blocks written so far listed beside it for such a worker to read.
    fn writing_in_files(&self, _storage: &str) -> bool {
        false
    }
}

/// Finished jobs' results kept as the answer to identical later jobs. A job kind names a key
/// for everything that determines a job's answer (a search: its genome's hash and its
/// normalised spec); the master records each job under its key, and a later job with the same
/// key is created complete, with a copy of the results of a completed job under it, running no
/// task. Only a completed job answers: one that failed or was cancelled never does. Records are
/// stored with the jobs, so they outlive a master restart, and go when their job is deleted.
#[async_trait]
pub trait ResultCache: Send + Sync {
    /// Records `job` under `key`: it answers for the key while it is completed.
    async fn remember_answer(&self, key: &str, job: &str) -> BackendResult<()>;
    /// The most recently finished completed job recorded under `key`, if any.
    async fn cached_answer(&self, key: &str) -> BackendResult<Option<JobRecord>>;
    /// Creates `job` (its record as given, completed, with its chunk count) holding a copy of
    /// every stored result of `source`, and records it under `key`, in one atomic step, if
    /// `source` is still completed. The copy is the new job's own: deleting either job leaves
    /// the other whole.
    async fn copy_answer(
        &self,
        key: &str,
        source: &str,
        job: &JobRecord,
    ) -> BackendResult<AnswerCopy>;
}

/// What [`ResultCache::copy_answer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerCopy {
    /// The job was created with the source's results.
    Copied,
    /// A job with the new id exists already; nothing changed.
    IdTaken,
    /// The source is no longer a completed job (deleted meanwhile); nothing changed.
    SourceGone,
}

/// Most bytes of a stored command input one [`InputSource::read_input`] call returns: far below
/// the protocol's frame limit, so a worker fetches a large input in bounded pieces.
pub const INPUT_PIECE_BYTES: u64 = 4 << 20;

/// Where a worker reads the command inputs the store keeps (see [`GenomeStore`]): straight from
/// a shared backend, or through the master.
#[async_trait]
pub trait InputSource: Send + Sync {
    /// `len` bytes (at most [`INPUT_PIECE_BYTES`]) of the stored object `hash` from `offset`; the
    /// range must lie inside the object. A hash that is not 64 lowercase hex digits, or names
    /// nothing stored, is an error. The caller checks the whole against its hash.
    async fn read_input(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes>;
}

/// The queue as the master holds it: every queue capability.
pub trait MasterQueue: Leases + QueueAdmin + WorkerIds {}
impl<T: Leases + QueueAdmin + WorkerIds + ?Sized> MasterQueue for T {}

/// The store as the master holds it: jobs, results, the result cache and the monitor's records.
pub trait MasterStore: JobStore + ResultStore + ResultCache + MonitorStore {}
impl<T: JobStore + ResultStore + ResultCache + MonitorStore + ?Sized> MasterStore for T {}

/// Reads a piece of a stored object for a worker: what a backend that keeps the objects itself
/// answers [`InputSource::read_input`] with.
pub async fn read_input_piece<S: GenomeStore + ?Sized>(
    store: &S,
    hash: &str,
    offset: u64,
    len: u64,
) -> BackendResult<Bytes> {
    if !super::genome::is_genome_hash(hash) {
        return Err(BackendError::Other(format!(
            "input {:?} is not a BLAKE3 hash (64 lowercase hex digits)",
            hash.chars().take(80).collect::<String>()
        )));
    }
    if len > INPUT_PIECE_BYTES {
        return Err(BackendError::Other(format!(
            "a piece of {len} bytes; at most {INPUT_PIECE_BYTES} per read"
        )));
    }
    store.read_genome(hash, offset, len).await
}
