//! The embedded backend as a worker reaches it: a real master serves a temporary embedded
//! backend on a free port, and the worker's capabilities (`Leases`, `ResultSink`) go over the
//! protocol through one `RemoteBackend` per worker id, as in a running grid. The capabilities the
//! master keeps for itself (`QueueAdmin`, `JobStore`, `ResultStore`, `ResultCache`,
//! `MonitorStore`), which `RemoteBackend` does not implement, go to the master's own backend,
//! where a running grid uses them too; so do the part-by-part result calls, which the master makes for a worker's
//! `put_result`. Stored genomes and inputs are written on the master's backend and read as a
//! worker reads them, with `read_input` over the protocol.
//!
//! One adjustment: the master's periodic sweep of expired leases is turned off (its queue
//! answers `reclaim_expired` with 0), because the cases sweep themselves and count what each
//! sweep returns; a sweep in between would take their lease first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gridwatch::backend::embedded::{EmbeddedBackend, EmbeddedConfig};
use gridwatch::backend::live_output::{LiveOutput, OutputPiece};
use gridwatch::backend::remote::RemoteBackend;
use gridwatch::backend::{
    AnswerCopy, BackendResult, ChunkResult, Completion, CompletionOutcome, CreateOutcome,
    JobRecord, JobStatus, JobStore, JobSummary, Lease, Leases, MonitorSink, MonitorStore,
    NackOutcome, NewTask, Progress, PruneReport, QueueAdmin, RefusalReason, ResultCache,
    ResultSink, ResultStore, StoredResult, TaskTimes, WorkerId, WorkerIds, WorkerOffer,
};
use gridwatch::master::{MasterConfig, MasterState};
use tokio::net::TcpListener;

use super::Subject;

/// Starts a master over a fresh embedded backend and returns the worker-side subject; the
/// master stops when the subject is dropped.
pub async fn subject(visibility_timeout: Duration) -> Subject {
    let dir = tempfile::tempdir().expect("temp data dir");
    let config = EmbeddedConfig {
        visibility_timeout,
        ..EmbeddedConfig::default()
    };
    let owner =
        Arc::new(EmbeddedBackend::open(dir.path(), config).expect("opening the embedded backend"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let address = listener.local_addr().expect("bound address").to_string();
    let master_config = MasterConfig {
        listen: address.clone(),
        data_dir: dir.path().to_path_buf(),
        chunk_size: 1024,
        max_upload: 1 << 20,
        max_input: 64 << 20,
        max_positions: 10_000_000,
        jobs_per_minute: 1000,
        tasks_per_minute: 1_000_000,
        max_batch_file: 64 << 20,
        max_batch_tasks: 100_000,
        max_connections: 64,
        max_connections_per_address: 64,
        connection_queue: 64,
        max_unauthenticated: 64,
        queue_timeout: Duration::from_secs(30),
        max_frame: gridwatch::protocol::DEFAULT_MAX_FRAME,
        hello_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        frame_timeout: Duration::from_secs(60),
        visibility_timeout,
        max_attempts: 3,
        work_caps: gridwatch::jobs::WorkCaps::DEFAULT,
        token: None,
        insecure: false,
        http: None,
        keep_finished: gridwatch::master::Retention(None),
        keep_genomes: gridwatch::master::Retention(None),
    };
    let queue = Arc::new(WithoutSweep(owner.clone()));
    let state = Arc::new(
        MasterState::new(queue, owner.clone(), master_config).with_genomes(Some(owner.clone())),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gridwatch::master::run(listener, state, async move {
        let _ = stopped.await;
    }));
    let reader = Arc::new(RemoteBackend::new(address.clone(), "input-reader", None));
    let worker_side = Arc::new(WorkerSide {
        owner: owner.clone(),
        master: address,
        workers: Mutex::new(HashMap::new()),
    });
    Subject {
        queue: worker_side.clone(),
        store: worker_side,
        genomes: owner,
        inputs: reader,
        files: None,
        _keep_alive: Box::new((stop, dir)),
    }
}

/// The master's queue with its periodic expiry sweep turned off (see the module comment).
struct WithoutSweep(Arc<EmbeddedBackend>);

#[async_trait]
impl Leases for WithoutSweep {
    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        self.0.lease(worker, wait).await
    }

    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        self.0.lease_batch(worker, max, wait).await
    }

    async fn complete_batch(
        &self,
        results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        self.0.complete_batch(results, items).await
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        self.0.extend(lease).await
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        self.0.extend_with_output(lease, piece).await
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        self.0.ack(lease).await
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        self.0.nack(lease, error).await
    }

    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize> {
        self.0.release_unheld(worker, held).await
    }

    async fn set_offer(&self, worker: &str, offer: WorkerOffer) -> BackendResult<()> {
        self.0.set_offer(worker, offer).await
    }
}

#[async_trait]
impl WorkerIds for WithoutSweep {
    async fn hold_worker_id(&self, worker: &str, holder: &str) -> BackendResult<bool> {
        self.0.hold_worker_id(worker, holder).await
    }
    async fn release_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()> {
        self.0.release_worker_id(worker, holder).await
    }
}

#[async_trait]
impl QueueAdmin for WithoutSweep {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        self.0.enqueue(tasks).await
    }

    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize> {
        self.0.reclaim_worker(worker).await
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        Ok(0)
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        self.0.cancel_job(job).await
    }

    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool> {
        self.0.cancel_if_unstarted(job).await
    }

    async fn live_output(&self, job: &str, chunk: u32) -> BackendResult<Option<LiveOutput>> {
        self.0.live_output(job, chunk).await
    }

    async fn live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        self.0.live_tasks(job).await
    }
}

/// Worker calls over the protocol, one `RemoteBackend` per worker id (the master knows a
/// worker by its hello); everything else on the master's own backend.
struct WorkerSide {
    owner: Arc<EmbeddedBackend>,
    master: String,
    workers: Mutex<HashMap<String, Arc<RemoteBackend>>>,
}

impl WorkerSide {
    fn worker(&self, id: &str) -> Arc<RemoteBackend> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(RemoteBackend::new(self.master.clone(), id, None)))
            .clone()
    }
}

#[async_trait]
impl Leases for WorkerSide {
    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        self.worker(worker).lease(worker, wait).await
    }

    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        self.worker(worker).lease_batch(worker, max, wait).await
    }

    /// One worker's batch (the cases never mix workers in one), over the protocol.
    async fn complete_batch(
        &self,
        _results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        self.worker(&first.lease.worker)
            .complete_batch(self, items)
            .await
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        self.worker(&lease.worker).extend(lease).await
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        self.worker(&lease.worker)
            .extend_with_output(lease, piece)
            .await
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        self.worker(&lease.worker).ack(lease).await
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        self.worker(&lease.worker).nack(lease, error).await
    }

    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize> {
        self.worker(worker).release_unheld(worker, held).await
    }

    /// Said by the worker's own connection with each lease request, as a real worker does.
    async fn set_offer(&self, worker: &str, offer: WorkerOffer) -> BackendResult<()> {
        self.worker(worker).set_offer(worker, offer).await
    }
}

#[async_trait]
impl WorkerIds for WorkerSide {
    async fn hold_worker_id(&self, worker: &str, holder: &str) -> BackendResult<bool> {
        self.owner.hold_worker_id(worker, holder).await
    }
    async fn release_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()> {
        self.owner.release_worker_id(worker, holder).await
    }
}

#[async_trait]
impl QueueAdmin for WorkerSide {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        self.owner.enqueue(tasks).await
    }

    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize> {
        self.owner.reclaim_worker(worker).await
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        self.owner.reclaim_expired().await
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        self.owner.cancel_job(job).await
    }

    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool> {
        self.owner.cancel_if_unstarted(job).await
    }

    async fn live_output(&self, job: &str, chunk: u32) -> BackendResult<Option<LiveOutput>> {
        self.owner.live_output(job, chunk).await
    }

    async fn live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        self.owner.live_tasks(job).await
    }
}

#[async_trait]
impl ResultSink for WorkerSide {
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool> {
        self.worker(&lease.worker)
            .put_chunk_result(lease, result)
            .await
    }
}

#[async_trait]
impl JobStore for WorkerSide {
    async fn restart_upload(&self, job: &JobRecord) -> BackendResult<bool> {
        self.owner.restart_upload(job).await
    }
    async fn create_job(&self, job: &JobRecord) -> BackendResult<CreateOutcome> {
        self.owner.create_job(job).await
    }

    async fn job(&self, id: &str) -> BackendResult<Option<JobRecord>> {
        self.owner.job(id).await
    }

    async fn jobs(&self) -> BackendResult<Vec<JobRecord>> {
        self.owner.jobs().await
    }

    async fn accept_job(&self, id: &str, total_chunks: u32) -> BackendResult<()> {
        self.owner.accept_job(id, total_chunks).await
    }

    async fn update_job_spec(&self, id: &str, spec: &serde_json::Value) -> BackendResult<()> {
        self.owner.update_job_spec(id, spec).await
    }

    async fn set_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> BackendResult<()> {
        self.owner.set_status(id, status, error).await
    }

    async fn job_summaries(&self, limit: usize) -> BackendResult<Vec<JobSummary>> {
        self.owner.job_summaries(limit).await
    }

    async fn prune_finished(&self, finished_before: f64) -> BackendResult<PruneReport> {
        self.owner.prune_finished(finished_before).await
    }
}

/// The master's own calls: the result cache is never reached through the protocol.
#[async_trait]
impl ResultCache for WorkerSide {
    async fn remember_answer(&self, key: &str, job: &str) -> BackendResult<()> {
        self.owner.remember_answer(key, job).await
    }

    async fn cached_answer(&self, key: &str) -> BackendResult<Option<JobRecord>> {
        self.owner.cached_answer(key).await
    }

    async fn copy_answer(
        &self,
        key: &str,
        source: &str,
        job: &JobRecord,
    ) -> BackendResult<AnswerCopy> {
        self.owner.copy_answer(key, source, job).await
    }
}

#[async_trait]
impl ResultStore for WorkerSide {
    async fn put_result_part(&self, lease: &Lease, part: u32, bytes: Bytes) -> BackendResult<()> {
        self.owner.put_result_part(lease, part, bytes).await
    }

    async fn commit_chunk_result(
        &self,
        lease: &Lease,
        result: &ChunkResult,
        parts: u32,
    ) -> BackendResult<bool> {
        self.owner.commit_chunk_result(lease, result, parts).await
    }

    async fn progress(&self, job: &str) -> BackendResult<Progress> {
        self.owner.progress(job).await
    }

    async fn result_headers(&self, job: &str) -> BackendResult<Vec<StoredResult>> {
        self.owner.result_headers(job).await
    }

    async fn result_part(&self, job: &str, chunk: u32, part: u32) -> BackendResult<Bytes> {
        self.owner.result_part(job, chunk, part).await
    }

    async fn refused_results(&self) -> BackendResult<Vec<(RefusalReason, u64)>> {
        self.owner.refused_results().await
    }

    async fn task_times(&self) -> BackendResult<Vec<TaskTimes>> {
        self.owner.task_times().await
    }
}

#[async_trait]
impl MonitorSink for WorkerSide {
    async fn push_alert(&self, alert: &serde_json::Value) -> BackendResult<()> {
        self.owner.push_alert(alert).await
    }

    async fn put_worker_metrics(
        &self,
        worker: &str,
        metrics: &serde_json::Value,
        ttl: Duration,
    ) -> BackendResult<()> {
        self.owner.put_worker_metrics(worker, metrics, ttl).await
    }

    async fn worker_metrics(&self) -> BackendResult<Vec<(WorkerId, serde_json::Value)>> {
        self.owner.worker_metrics().await
    }
}

#[async_trait]
impl MonitorStore for WorkerSide {
    async fn forget_worker_metrics(&self, worker: &str) -> BackendResult<bool> {
        self.owner.forget_worker_metrics(worker).await
    }
    async fn alerts(&self, limit: usize) -> BackendResult<Vec<serde_json::Value>> {
        self.owner.alerts(limit).await
    }
}
