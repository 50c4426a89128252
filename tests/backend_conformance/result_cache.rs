//! The result cache: a completed job recorded under a key answers it with a copy of its results,
//! large ones (in parts) included; the copy is the new job's own, so deleting the source leaves
//! it whole; a job that is still running, failed or was cancelled never answers.

use gridwatch::backend::{AnswerCopy, ChunkResult, JobRecord, JobStatus, RESULT_PART_BYTES};
use serde_json::json;

use super::fixtures::*;

/// Runs every task of job `id` to completion as worker `w1`; the task of chunk 0 stores a
/// payload spanning several parts.
async fn complete(s: &Subject, id: &str, chunks: u32) {
    for _ in 0..chunks {
        let lease = must_lease(s, "w1").await;
        assert_eq!(lease.id.job, id);
        let mut stored = result(lease.id.chunk, 2, "w1");
        if lease.id.chunk == 0 {
            let filler = "ACGT".repeat(RESULT_PART_BYTES / 4 + 10);
            stored.payload = json!({ "hits": [filler.clone(), filler], "chunk": 0 });
        }
        assert!(s.store.put_chunk_result(&lease, &stored).await.unwrap());
        s.queue.ack(&lease).await.unwrap();
    }
    assert_eq!(job_now(s, id).await.status, JobStatus::Completed);
}

/// The record of a job answered from the cache, finished at `finished_at`.
fn answered(id: &str, chunks: u32, finished_at: f64) -> JobRecord {
    JobRecord {
        status: JobStatus::Completed,
        total_chunks: chunks,
        finished_at: Some(finished_at),
        ..job_record(id, finished_at)
    }
}

/// Payloads by chunk, as a reader of the job's results sees them.
async fn payloads(s: &Subject, id: &str) -> Vec<(u32, u64, serde_json::Value)> {
    let results: Vec<ChunkResult> = s.store.chunk_results(id).await.unwrap();
    results
        .into_iter()
        .map(|r| (r.chunk, r.matches, r.payload))
        .collect()
}

pub async fn a_completed_job_answers_its_key_with_a_copy_of_its_results(s: &Subject) {
    submit(s, "first", 3).await;
    s.store.remember_answer("key-a", "first").await.unwrap();
    // Running: no answer yet.
    assert!(s.store.cached_answer("key-a").await.unwrap().is_none());
    complete(s, "first", 3).await;
    let source = s.store.cached_answer("key-a").await.unwrap();
    assert_eq!(source.map(|job| job.id).as_deref(), Some("first"));
    assert!(s.store.cached_answer("key-b").await.unwrap().is_none());

    let now = gridwatch::time::unix_now();
    let later = now + 1000.0;
    let again_record = answered("again", 3, later);
    let outcome = s.store.copy_answer("key-a", "first", &again_record).await;
    assert_eq!(outcome.unwrap(), AnswerCopy::Copied);
    let stored = job_now(s, "again").await;
    assert_eq!(stored.status, JobStatus::Completed);
    assert_eq!(stored.total_chunks, 3);
    let original = payloads(s, "first").await;
    assert_eq!(original.len(), 3);
    assert_eq!(payloads(s, "again").await, original);
    let progress = s.store.progress("again").await.unwrap();
    assert_eq!((progress.done_chunks, progress.matches), (3, 6));
    // Nothing was queued for the copy.
    assert!(lease_now(s, "w1").await.is_none());
    // The id is taken now.
    let twice = s.store.copy_answer("key-a", "first", &again_record).await;
    assert_eq!(twice.unwrap(), AnswerCopy::IdTaken);

    // Deleting the source leaves the copy whole, and the copy answers the key from then on.
    let report = s.store.prune_finished(now + 1.0).await.unwrap();
    assert_eq!(report.job_ids, ["first"]);
    assert_eq!(payloads(s, "again").await, original);
    let answer = s.store.cached_answer("key-a").await.unwrap();
    assert_eq!(answer.map(|job| job.id).as_deref(), Some("again"));
    let third_record = answered("third", 3, later);
    let gone = s.store.copy_answer("key-a", "first", &third_record).await;
    assert_eq!(gone.unwrap(), AnswerCopy::SourceGone);
    assert!(s.store.job("third").await.unwrap().is_none());
    // Deleting the copy too leaves the key without an answer.
    s.store.prune_finished(later + 1.0).await.unwrap();
    assert!(s.store.cached_answer("key-a").await.unwrap().is_none());
}

pub async fn failed_cancelled_or_running_jobs_never_answer(s: &Subject) {
    submit(s, "failed", 1).await;
    submit(s, "cancelled", 1).await;
    submit(s, "running", 1).await;
    for id in ["failed", "cancelled", "running"] {
        s.store.remember_answer("key-c", id).await.unwrap();
    }
    s.store
        .set_status("failed", JobStatus::Failed, Some("a task failed"))
        .await
        .unwrap();
    s.store
        .set_status("cancelled", JobStatus::Cancelled, None)
        .await
        .unwrap();
    assert!(s.store.cached_answer("key-c").await.unwrap().is_none());
    for source in ["failed", "cancelled", "running"] {
        let record = answered(&format!("from-{source}"), 1, gridwatch::time::unix_now());
        let outcome = s.store.copy_answer("key-c", source, &record).await.unwrap();
        assert_eq!(outcome, AnswerCopy::SourceGone, "{source}");
        assert!(s.store.job(&record.id).await.unwrap().is_none());
    }
}
