//! The embedded backend: SQLite (WAL) and spool files under `--data-dir`, owned by the master.
//! Workers reach it through the master's protocol (`backend::remote`). Everything persists, so a
//! master restarted on the same directory resumes every unfinished job.
//!
//! Layout: `gridwatch.db` (jobs, tasks, results, alerts, worker metrics; see `schema.sql`) and
//! `spool/<hex job id>.chunks` (each task's input bytes, referred to by offset and length;
//! tasks reading a stored genome carry none), and `spool/genomes/<storage id>.packed` (stored
//! genomes, readable by storage id while they are uploaded; see `genomes`).

mod cache;
mod db;
mod genome_dir;
mod genome_file;
mod genomes;
mod live;
mod queue;
mod records;
mod retention;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::capability::{
    put_in_parts, AnswerCopy, GenomeStore, JobStore, Leases, MonitorSink, MonitorStore, QueueAdmin,
    ResultCache, ResultSink, ResultStore, WorkerIds, WorkerOffer,
};
use super::live_output::{LiveOutput, OutputPiece};
use super::{
    BackendError, BackendResult, ChunkResult, Completion, CompletionOutcome, CreateOutcome,
    GenomeRecord, GenomeRemoval, GenomeWriter, JobRecord, JobStatus, JobSummary, Lease,
    NackOutcome, NewTask, Progress, PruneReport, RefusalReason, SharedResultCheck, StoredKind,
    StoredResult, TaskTimes, WorkerId, MAX_BATCH,
};
use db::Db;
pub use genome_dir::GenomeDir;

/// Current time in Unix seconds; injected so lease expiry is testable without waiting.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::time::unix_now)
}

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// How long a lease stays invisible to other workers unless extended.
    pub visibility_timeout: Duration,
    /// Deliveries before a failing task is dead-lettered.
    pub max_attempts: u32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(300),
            max_attempts: 3,
        }
    }
}

/// SQLite-backed: every capability (leases, queue admin, jobs, results, monitor, genomes).
pub struct EmbeddedBackend {
    db: Db,
    config: EmbeddedConfig,
    /// Woken whenever a task may have become leasable, so waiting leases return at once.
    task_ready: Notify,
    /// Results refused since the backend opened, by reason (in [`RefusalReason::ALL`] order).
    refused: [AtomicU64; RefusalReason::ALL.len()],
    /// Where stored genomes' sequences live (`spool/genomes`).
    genome_dir: std::path::PathBuf,
    /// The id written in that directory, which workers reading it in place report.
    files_id: Option<u128>,
    /// Genome uploads in progress, readable by storage id before they are stored.
    uploads: genomes::Uploads,
    /// What every result is checked against before it is stored.
    result_check: Option<SharedResultCheck>,
    /// What each worker offers (as its last lease request said); a worker not named offers the
    /// default: no command tasks.
    offers: std::sync::Mutex<std::collections::HashMap<String, WorkerOffer>>,
    /// Running command tasks' output so far, in memory only.
    live: live::LiveTails,
}

/// Where the embedded backend in `data_dir` keeps stored genomes, which a worker on the same
/// host may read ([`GenomeDir`]).
pub fn genome_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("spool").join("genomes")
}

impl EmbeddedBackend {
    /// How the complete object under storage id `storage` is kept; `None` if nothing complete is.
    async fn storage_format(
        &self,
        storage: &str,
    ) -> BackendResult<Option<crate::backend::packed::StoredFormat>> {
        let lookup = storage.to_string();
        self.db
            .call(move |state| genomes::storage_format(state, &lookup))
            .await
    }

    /// What `worker` said it offers.
    fn offer(&self, worker: &str) -> WorkerOffer {
        self.offers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(worker)
            .copied()
            .unwrap_or_default()
    }

    /// Opens (or creates) the backend in `data_dir` with the system clock.
    pub fn open(data_dir: &Path, config: EmbeddedConfig) -> BackendResult<Self> {
        Self::open_with_clock(data_dir, config, system_clock())
    }

    /// Opens the backend with an injected clock (tests of lease expiry).
    pub fn open_with_clock(
        data_dir: &Path,
        config: EmbeddedConfig,
        clock: Clock,
    ) -> BackendResult<Self> {
        let db = Db::open(data_dir, clock)?;
        let genome_dir = genome_dir(data_dir);
        std::fs::create_dir_all(&genome_dir).map_err(|err| {
            BackendError::Other(format!("cannot create {}: {err}", genome_dir.display()))
        })?;
        genomes::remove_partials(&genome_dir);
        // Without an id (a full disk at the first start) workers are sent every base instead.
        let files_id = genome_dir::ensure_id(&genome_dir)
            .map_err(|err| tracing::warn!(component = "embedded", error = %err, "stored genomes cannot be read in place by workers"))
            .ok();
        Ok(Self {
            files_id,
            db,
            config,
            task_ready: Notify::new(),
            offers: Default::default(),
            live: Default::default(),
            refused: Default::default(),
            genome_dir,
            uploads: Default::default(),
            result_check: None,
        })
    }

    /// Checks every result against its task's kind with `check` before storing it.
    pub fn with_result_check(mut self, check: SharedResultCheck) -> Self {
        self.result_check = Some(check);
        self
    }

    /// Returns every lease to the queue, not counting it as a failed attempt. The master calls
    /// this at start: a lease handed out just before the previous master stopped may never have
    /// reached its worker. A worker that did get one finds its result refused and its ack stale;
    /// the task's next delivery stores the result.
    pub async fn release_all_leases(&self) -> BackendResult<usize> {
        let moved = self.db.call(queue::release_all_leases).await?;
        self.task_ready.notify_waiters();
        Ok(moved)
    }

    /// The delivery settings.
    pub fn config(&self) -> &EmbeddedConfig {
        &self.config
    }

    /// Counts a refused result before passing the outcome on.
    fn count_refusal<T>(&self, outcome: BackendResult<T>) -> BackendResult<T> {
        if let Err(BackendError::Refused { reason, .. }) = &outcome {
            if let Some(index) = RefusalReason::ALL.iter().position(|r| r == reason) {
                self.refused[index].fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }
}

#[async_trait]
impl Leases for EmbeddedBackend {
    async fn set_offer(&self, worker: &str, offer: WorkerOffer) -> BackendResult<()> {
        self.offers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(worker.to_string(), offer);
        Ok(())
    }

    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so an enqueue between the look and the wait
            // still wakes us.
            let notified = self.task_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let config = self.config.clone();
            let owner = worker.to_string();
            let offer = self.offer(worker);
            let leased = self
                .db
                .call(move |state| queue::lease(state, &config, &owner, offer))
                .await?;
            if let Some((mut lease, range)) = leased {
                lease.data = tokio::task::spawn_blocking(move || range.read())
                    .await
                    .map_err(|err| BackendError::Other(format!("spool read: {err}")))??;
                return Ok(Some(lease));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.task_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let config = self.config.clone();
            let owner = worker.to_string();
            let offer = self.offer(worker);
            let leased = self
                .db
                .call(move |state| queue::lease_batch(state, &config, &owner, max, offer))
                .await?;
            if !leased.is_empty() {
                return tokio::task::spawn_blocking(move || {
                    leased
                        .into_iter()
                        .map(|(mut lease, range)| {
                            lease.data = range.read()?;
                            Ok(lease)
                        })
                        .collect()
                })
                .await
                .map_err(|err| BackendError::Other(format!("spool read: {err}")))?;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Settles the batch in one transaction. A result whose payload is too large for one part
    /// is stored in parts, as alone, and settled on its own.
    async fn complete_batch(
        &self,
        _results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let check = self.result_check.clone();
        let mut small = Vec::with_capacity(items.len());
        let mut large = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if item.result.in_parts() {
                large.push(index);
            } else {
                small.push(item.clone());
            }
        }
        let settled = self
            .db
            .call(move |state| queue::complete_batch(state, &small, check.as_deref()))
            .await?;
        let mut settled = settled.into_iter();
        let mut outcomes = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let outcome = if large.contains(&index) {
                match self.put_chunk_result(&item.lease, &item.result).await {
                    Ok(first) => self.ack(&item.lease).await.map(|()| first),
                    Err(err) => Err(err),
                }
            } else {
                settled
                    .next()
                    .unwrap_or_else(|| Err(BackendError::Other("batch outcome missing".into())))
            };
            // Stored (or refused): the task no longer runs under this lease either way.
            self.live.forget(&item.lease);
            outcomes.push(self.count_refusal(outcome));
        }
        Ok(outcomes)
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        let (config, lease) = (self.config.clone(), lease.clone());
        self.db
            .call(move |state| queue::extend(state, &config, &lease))
            .await
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        let held = self.extend(lease).await?;
        if held {
            self.live.record(lease, piece, crate::time::unix_now());
        }
        Ok(held)
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        self.live.forget(lease);
        let lease = lease.clone();
        self.db.call(move |state| queue::ack(state, &lease)).await
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        self.live.forget(lease);
        let (config, lease, error) = (self.config.clone(), lease.clone(), error.to_string());
        let outcome = self
            .db
            .call(move |state| queue::nack(state, &config, &lease, &error))
            .await?;
        self.task_ready.notify_waiters();
        Ok(outcome)
    }

    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize> {
        let (config, worker) = (self.config.clone(), worker.to_string());
        let held: std::collections::HashSet<String> = held.iter().cloned().collect();
        let moved = self
            .db
            .call(move |state| queue::release_unheld(state, &config, &worker, &held))
            .await?;
        self.task_ready.notify_waiters();
        Ok(moved)
    }
}

#[async_trait]
impl ResultSink for EmbeddedBackend {
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool> {
        put_in_parts(self, lease, result).await
    }
}

#[async_trait]
impl QueueAdmin for EmbeddedBackend {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        self.db
            .call(move |state| queue::enqueue(state, tasks))
            .await?;
        self.task_ready.notify_waiters();
        Ok(())
    }

    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize> {
        self.live.forget_worker(worker);
        let (config, worker) = (self.config.clone(), worker.to_string());
        let moved = self
            .db
            .call(move |state| queue::reclaim_worker(state, &config, &worker))
            .await?;
        self.task_ready.notify_waiters();
        Ok(moved)
    }

    async fn oldest_waiting(&self) -> BackendResult<Vec<(crate::backend::Priority, f64)>> {
        self.db.call(queue::oldest_waiting).await
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        let config = self.config.clone();
        let moved = self
            .db
            .call(move |state| queue::reclaim_expired(state, &config))
            .await?;
        self.task_ready.notify_waiters();
        Ok(moved)
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        self.live.forget_job(job);
        let job = job.to_string();
        self.db
            .call(move |state| queue::cancel_job(state, &job))
            .await
    }

    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool> {
        let job = job.to_string();
        self.db
            .call(move |state| queue::cancel_if_unstarted(state, &job))
            .await
    }

    async fn live_output(&self, job: &str, chunk: u32) -> BackendResult<Option<LiveOutput>> {
        Ok(self.live.get(job, chunk, crate::time::unix_now()))
    }

    async fn live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        Ok(self.live.of_job(job, crate::time::unix_now()))
    }
}

/// Only the master reaches this backend: worker ids are its own registry's to keep.
#[async_trait]
impl WorkerIds for EmbeddedBackend {
    async fn hold_worker_id(&self, _worker: &str, _holder: &str) -> BackendResult<bool> {
        Ok(true)
    }

    async fn release_worker_id(&self, _worker: &str, _holder: &str) -> BackendResult<()> {
        Ok(())
    }
}

#[async_trait]
impl JobStore for EmbeddedBackend {
    async fn create_job(&self, job: &JobRecord) -> BackendResult<CreateOutcome> {
        let job = job.clone();
        self.db
            .call(move |state| store::create_job(state, &job))
            .await
    }

    async fn restart_upload(&self, job: &JobRecord) -> BackendResult<bool> {
        let job = job.clone();
        self.db
            .call(move |state| store::restart_upload(state, &job))
            .await
    }

    async fn job(&self, id: &str) -> BackendResult<Option<JobRecord>> {
        let id = id.to_string();
        self.db.call(move |state| store::job(state, &id)).await
    }

    async fn jobs(&self) -> BackendResult<Vec<JobRecord>> {
        self.db.call(store::jobs).await
    }

    async fn accept_job(&self, id: &str, total_chunks: u32) -> BackendResult<()> {
        let id = id.to_string();
        self.db
            .call(move |state| store::accept_job(state, &id, total_chunks))
            .await
    }

    async fn create_jobs(&self, jobs: &[JobRecord]) -> BackendResult<Vec<CreateOutcome>> {
        let jobs = jobs.to_vec();
        self.db
            .call(move |state| store::create_jobs(state, &jobs))
            .await
    }

    async fn accept_jobs(&self, jobs: &[(String, u32)]) -> BackendResult<()> {
        let jobs = jobs.to_vec();
        self.db
            .call(move |state| store::accept_jobs(state, &jobs))
            .await
    }

    async fn update_job_spec(&self, id: &str, spec: &serde_json::Value) -> BackendResult<()> {
        let (id, spec) = (id.to_string(), spec.clone());
        self.db
            .call(move |state| store::update_job_spec(state, &id, &spec))
            .await
    }

    async fn set_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> BackendResult<()> {
        let (id, error) = (id.to_string(), error.map(str::to_string));
        self.db
            .call(move |state| store::set_status(state, &id, status, error.as_deref()))
            .await
    }

    async fn job_summaries(&self, limit: usize) -> BackendResult<Vec<JobSummary>> {
        self.db
            .call(move |state| store::job_summaries(state, limit))
            .await
    }

    async fn prune_finished(&self, finished_before: f64) -> BackendResult<PruneReport> {
        self.db
            .call(move |state| retention::prune_finished(state, finished_before))
            .await
    }
}

#[async_trait]
impl ResultCache for EmbeddedBackend {
    async fn remember_answer(&self, key: &str, job: &str) -> BackendResult<()> {
        let (key, job) = (key.to_string(), job.to_string());
        self.db
            .call(move |state| cache::remember_answer(state, &key, &job))
            .await
    }

    async fn cached_answer(&self, key: &str) -> BackendResult<Option<JobRecord>> {
        let key = key.to_string();
        self.db
            .call(move |state| cache::cached_answer(state, &key))
            .await
    }

    async fn copy_answer(
        &self,
        key: &str,
        source: &str,
        job: &JobRecord,
    ) -> BackendResult<AnswerCopy> {
        let (key, source, job) = (key.to_string(), source.to_string(), job.clone());
        self.db
            .call(move |state| cache::copy_answer(state, &key, &source, &job))
            .await
    }
}

#[async_trait]
impl ResultStore for EmbeddedBackend {
    async fn put_result_part(&self, lease: &Lease, part: u32, bytes: Bytes) -> BackendResult<()> {
        let lease = lease.clone();
        let outcome = self
            .db
            .call(move |state| store::put_result_part(state, &lease, part, &bytes))
            .await;
        self.count_refusal(outcome)
    }

    async fn commit_chunk_result(
        &self,
        lease: &Lease,
        result: &ChunkResult,
        parts: u32,
    ) -> BackendResult<bool> {
        let (lease, result) = (lease.clone(), result.clone());
        let check = self.result_check.clone();
        let outcome = self
            .db
            .call(move |state| {
                store::commit_chunk_result(state, &lease, &result, parts, check.as_deref())
            })
            .await;
        self.count_refusal(outcome)
    }

    async fn progress(&self, job: &str) -> BackendResult<Progress> {
        let job = job.to_string();
        self.db
            .call(move |state| store::progress(state, &job))
            .await
    }

    async fn result_headers(&self, job: &str) -> BackendResult<Vec<StoredResult>> {
        let job = job.to_string();
        self.db
            .call(move |state| store::result_headers(state, &job))
            .await
    }

    async fn result_headers_in(
        &self,
        job: &str,
        tasks: std::ops::Range<u32>,
    ) -> BackendResult<Vec<StoredResult>> {
        let job = job.to_string();
        self.db
            .call(move |state| store::result_headers_in(state, &job, tasks))
            .await
    }

    async fn result_part(&self, job: &str, chunk: u32, part: u32) -> BackendResult<Bytes> {
        let job = job.to_string();
        let bytes = self
            .db
            .call(move |state| store::result_part(state, &job, chunk, part))
            .await?;
        Ok(Bytes::from(bytes))
    }

    async fn refused_results(&self) -> BackendResult<Vec<(RefusalReason, u64)>> {
        Ok(RefusalReason::ALL
            .iter()
            .zip(&self.refused)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
            .collect())
    }

    async fn task_times(&self) -> BackendResult<Vec<TaskTimes>> {
        self.db.call(records::task_times).await
    }
}

#[async_trait]
impl MonitorSink for EmbeddedBackend {
    async fn push_alert(&self, alert: &serde_json::Value) -> BackendResult<()> {
        let alert = alert.clone();
        self.db
            .call(move |state| store::push_alert(state, &alert))
            .await
    }

    async fn put_worker_metrics(
        &self,
        worker: &str,
        metrics: &serde_json::Value,
        ttl: Duration,
    ) -> BackendResult<()> {
        let (worker, metrics) = (worker.to_string(), metrics.clone());
        self.db
            .call(move |state| store::put_worker_metrics(state, &worker, &metrics, ttl))
            .await
    }

    async fn worker_metrics(&self) -> BackendResult<Vec<(WorkerId, serde_json::Value)>> {
        self.db.call(store::worker_metrics).await
    }
}

#[async_trait]
impl MonitorStore for EmbeddedBackend {
    async fn alerts(&self, limit: usize) -> BackendResult<Vec<serde_json::Value>> {
        self.db.call(move |state| store::alerts(state, limit)).await
    }

    async fn forget_worker_metrics(&self, worker: &str) -> BackendResult<bool> {
        let worker = worker.to_string();
        self.db
            .call(move |state| store::forget_worker_metrics(state, &worker))
            .await
    }
}

#[async_trait]
impl crate::backend::InputSource for EmbeddedBackend {
    async fn read_input(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        crate::backend::read_input_piece(self, hash, offset, len).await
    }
}

#[async_trait]
impl GenomeStore for EmbeddedBackend {
    async fn begin_genome(&self, kind: StoredKind) -> BackendResult<Box<dyn GenomeWriter>> {
        let writer = genomes::EmbeddedGenomeWriter::create(
            self.db.clone(),
            self.genome_dir.clone(),
            kind,
            self.uploads.clone(),
        )
        .await?;
        Ok(Box::new(writer))
    }

    async fn use_genome(&self, hash: &str, job: &str) -> BackendResult<Option<GenomeRecord>> {
        let (hash, job) = (hash.to_string(), job.to_string());
        self.db
            .call(move |state| genomes::use_genome(state, &hash, &job))
            .await
    }

    async fn read_genome(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        if !super::genome::is_genome_hash(hash) {
            return Err(BackendError::Other(format!(
                "{hash:?} is not a genome hash"
            )));
        }
        let dir = self.genome_dir.clone();
        let lookup = hash.to_string();
        let (storage, format) = self
            .db
            .call(move |state| genomes::stored_at(state, &lookup))
            .await?
            .ok_or_else(|| BackendError::Other(format!("no genome {hash} is stored")))?;
        tokio::task::spawn_blocking(move || {
            genomes::read_range(&dir, &storage, format, offset, len)
        })
        .await
        .map_err(|err| BackendError::Other(format!("genome read: {err}")))?
    }

    async fn read_stored(&self, storage: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        if !super::genome::is_genome_hash(storage) {
            return Err(BackendError::Other(format!(
                "{storage:?} is not a storage id"
            )));
        }
        if let Some(written) = genomes::uploading(&self.uploads, storage) {
            return tokio::task::spawn_blocking(move || {
                genome_file::read_written(&written, offset, len)
            })
            .await
            .map_err(|err| BackendError::Other(format!("genome read: {err}")))?;
        }
        let format = self
            .storage_format(storage)
            .await?
            .ok_or_else(|| BackendError::Other(format!("nothing is stored under {storage}")))?;
        let (dir, storage) = (self.genome_dir.clone(), storage.to_string());
        tokio::task::spawn_blocking(move || {
            genomes::read_range(&dir, &storage, format, offset, len)
        })
        .await
        .map_err(|err| BackendError::Other(format!("genome read: {err}")))?
    }

    fn files_id(&self) -> Option<u128> {
        self.files_id
    }

    fn writing_in_files(&self, storage: &str) -> bool {
        super::genome::is_genome_hash(storage)
            && genomes::uploading(&self.uploads, storage).is_some()
    }

    async fn in_files(&self, storage: &str) -> BackendResult<bool> {
        if !super::genome::is_genome_hash(storage)
            || genomes::uploading(&self.uploads, storage).is_some()
        {
            return Ok(false);
        }
        let format = self.storage_format(storage).await?;
        Ok(format == Some(crate::backend::packed::StoredFormat::Packed))
    }

    async fn sweep_spares(&self) -> BackendResult<Vec<String>> {
        let dir = self.genome_dir.clone();
        self.db
            .call(move |state| genomes::sweep_spares(state, &dir))
            .await
    }

    async fn genomes(&self) -> BackendResult<Vec<GenomeRecord>> {
        self.db.call(genomes::genomes).await
    }

    async fn remove_genome(&self, hash: &str) -> BackendResult<GenomeRemoval> {
        if !super::genome::is_genome_hash(hash) {
            return Ok(GenomeRemoval::NotFound);
        }
        let (dir, hash) = (self.genome_dir.clone(), hash.to_string());
        self.db
            .call(move |state| genomes::remove(state, &dir, &hash))
            .await
    }

    async fn prune_genomes(&self, unused_before: f64) -> BackendResult<Vec<String>> {
        let dir = self.genome_dir.clone();
        self.db
            .call(move |state| genomes::prune(state, &dir, unused_before))
            .await
    }
}

#[cfg(test)]
mod tests;
