//! What the conformance cases share: fixtures (jobs, tasks, results) and small steps (submit a
//! job, lease now, wait for expiry) written once.

use std::time::Duration;

use bytes::Bytes;
use gridwatch::backend::{
    BackendError, BackendResult, ChunkResult, CreateOutcome, JobRecord, JobStatus, Lease, NewTask,
    Priority, RefusalReason, TaskId,
};
use serde_json::json;
use tokio::time::Instant;

pub use super::Subject;
// The capabilities the cases call on a subject, in scope wherever the fixtures are.
pub use gridwatch::backend::{
    JobStore, Leases, MonitorSink, MonitorStore, QueueAdmin, ResultSink, ResultStore,
};

/// Upper bound for anything the cases wait on; reached only when a backend is broken.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn job_record(id: &str, created_at: f64) -> JobRecord {
    JobRecord {
        id: id.to_string(),
        kind: "search".to_string(),
        spec: json!({ "patterns": ["ACGT"] }),
        summary: format!("ACGT in {id}.fa"),
        priority: Priority::Low,
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at,
        finished_at: None,
    }
}

pub fn task(job: &str, chunk: u32, priority: Priority) -> NewTask {
    NewTask {
        id: TaskId {
            job: job.to_string(),
            chunk,
        },
        kind: "search".into(),
        priority,
        spec: json!({ "offset": chunk * 100 }),
        data: Bytes::from(format!("ACGT-{job}-{chunk}")),
        max_matches: MAX_MATCHES,
        slots: 1,
    }
}

/// The most matches a fixture task's result may claim.
pub const MAX_MATCHES: u64 = 1000;

pub fn result(chunk: u32, matches: u64, worker: &str) -> ChunkResult {
    ChunkResult {
        chunk,
        matches,
        payload: json!({ "hits": matches, "by": worker }),
        encoded: None,
        worker: worker.to_string(),
        run: Default::default(),
    }
}

/// Creates job `id`, enqueues `chunks` medium-priority tasks for it and accepts it.
pub async fn submit(s: &Subject, id: &str, chunks: u32) {
    assert_eq!(
        s.store.create_job(&job_record(id, 1.0)).await.unwrap(),
        CreateOutcome::Created
    );
    let tasks = (0..chunks).map(|c| task(id, c, Priority::Medium)).collect();
    s.queue.enqueue(tasks).await.unwrap();
    s.store.accept_job(id, chunks).await.unwrap();
}

/// Stored results without the records the store adds (checked by the records cases), to
/// compare with what was sent.
pub fn without_runs(results: Vec<ChunkResult>) -> Vec<ChunkResult> {
    results
        .into_iter()
        .map(|r| ChunkResult {
            run: Default::default(),
            ..r
        })
        .collect()
}

/// Stores `matches` as the result of `lease`'s chunk, as its holder.
pub async fn put(s: &Subject, lease: &Lease, matches: u64) -> BackendResult<bool> {
    let chunk_result = result(lease.id.chunk, matches, &lease.worker);
    s.store.put_chunk_result(lease, &chunk_result).await
}

/// The reason a store call was refused; panics if it was not.
pub fn refusal<T: std::fmt::Debug>(outcome: BackendResult<T>) -> RefusalReason {
    match outcome {
        Err(BackendError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `lease` with its fields changed as a forger would.
pub fn forged(lease: &Lease, edit: impl FnOnce(&mut Lease)) -> Lease {
    let mut forged = lease.clone();
    edit(&mut forged);
    forged
}

pub async fn job_now(s: &Subject, id: &str) -> JobRecord {
    let job = s.store.job(id).await.unwrap();
    job.unwrap_or_else(|| panic!("job {id} vanished"))
}

pub async fn lease_now(s: &Subject, worker: &str) -> Option<Lease> {
    s.queue.lease(worker, Duration::ZERO).await.unwrap()
}

pub async fn must_lease(s: &Subject, worker: &str) -> Lease {
    lease_now(s, worker)
        .await
        .unwrap_or_else(|| panic!("{worker} found no task to lease"))
}

/// Calls `reclaim_expired` until it has reclaimed `want` leases in total.
pub async fn reclaim_expired_until(s: &Subject, want: usize) {
    let deadline = Instant::now() + DEADLINE;
    let mut reclaimed = 0;
    while reclaimed < want {
        assert!(
            Instant::now() < deadline,
            "only {reclaimed} of {want} leases expired"
        );
        reclaimed += s.queue.reclaim_expired().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reclaimed, want);
}
