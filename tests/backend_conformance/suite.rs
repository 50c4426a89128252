//! The conformance cases. Each takes a fresh [`Subject`] and checks one delivery or storage
//! promise of `src/backend/mod.rs` against hand-computed expectations.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use gridwatch::backend::{
    BackendError, ChunkResult, CreateOutcome, JobRecord, JobStatus, Lease, NackOutcome, NewTask,
    Priority, Progress, TaskId,
};
use serde_json::json;
use tokio::time::Instant;

use super::Subject;

/// Upper bound for anything the cases wait on; reached only when a backend is broken.
const DEADLINE: Duration = Duration::from_secs(20);

fn job_record(id: &str, created_at: f64) -> JobRecord {
    JobRecord {
        id: id.to_string(),
        kind: "search".to_string(),
        spec: json!({ "patterns": ["ACGT"] }),
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at,
        finished_at: None,
    }
}

fn task(job: &str, chunk: u32, priority: Priority) -> NewTask {
    NewTask {
        id: TaskId {
            job: job.to_string(),
            chunk,
        },
        priority,
        spec: json!({ "offset": chunk * 100 }),
        data: Bytes::from(format!("ACGT-{job}-{chunk}")),
    }
}

fn result(chunk: u32, matches: u64, worker: &str) -> ChunkResult {
    ChunkResult {
        chunk,
        matches,
        payload: json!({ "hits": matches, "by": worker }),
        worker: worker.to_string(),
    }
}

/// Creates job `id`, enqueues `chunks` medium-priority tasks for it and accepts it.
async fn submit(s: &Subject, id: &str, chunks: u32) {
    assert_eq!(
        s.store.create_job(&job_record(id, 1.0)).await.unwrap(),
        CreateOutcome::Created
    );
    let tasks = (0..chunks).map(|c| task(id, c, Priority::Medium)).collect();
    s.queue.enqueue(tasks).await.unwrap();
    s.store.accept_job(id, chunks).await.unwrap();
}

async fn job_now(s: &Subject, id: &str) -> JobRecord {
    let job = s.store.job(id).await.unwrap();
    job.unwrap_or_else(|| panic!("job {id} vanished"))
}

async fn lease_now(s: &Subject, worker: &str) -> Option<Lease> {
    s.queue.lease(worker, Duration::ZERO).await.unwrap()
}

async fn must_lease(s: &Subject, worker: &str) -> Lease {
    lease_now(s, worker)
        .await
        .unwrap_or_else(|| panic!("{worker} found no task to lease"))
}

/// Calls `reclaim_expired` until it has reclaimed `want` leases in total.
async fn reclaim_expired_until(s: &Subject, want: usize) {
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

pub async fn leased_task_is_hidden_until_acked(s: &Subject) {
    submit(s, "j", 1).await;
    let lease = must_lease(s, "w1").await;
    assert_eq!(
        lease.id,
        TaskId {
            job: "j".into(),
            chunk: 0
        }
    );
    assert_eq!(lease.spec, json!({ "offset": 0 }));
    assert_eq!(lease.data, Bytes::from("ACGT-j-0"));
    assert_eq!((lease.worker.as_str(), lease.attempt), ("w1", 1));
    assert!(
        lease_now(s, "w2").await.is_none(),
        "a leased task was delivered twice"
    );

    assert!(s
        .store
        .put_chunk_result("j", &result(0, 1, "w1"))
        .await
        .unwrap());
    s.queue.ack(&lease).await.unwrap();
    assert!(
        lease_now(s, "w2").await.is_none(),
        "an acked task came back"
    );
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 0);
    assert_eq!(s.queue.reclaim_expired().await.unwrap(), 0);
}

pub async fn lease_waits_for_a_task_enqueued_later(s: &Subject) {
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    let queue = s.queue.clone();
    let waiting = tokio::spawn(async move { queue.lease("w1", DEADLINE).await });
    // Give the lease time to start blocking, so the wake-up path is what gets tested; the
    // assertion holds either way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.queue
        .enqueue(vec![task("j", 7, Priority::Low)])
        .await
        .unwrap();
    let lease = waiting
        .await
        .unwrap()
        .unwrap()
        .expect("the waiting lease got nothing");
    assert_eq!(lease.id.chunk, 7);
}

pub async fn lease_on_an_empty_queue_times_out(s: &Subject) {
    let wait = Duration::from_millis(200);
    let started = Instant::now();
    assert!(s.queue.lease("w1", wait).await.unwrap().is_none());
    assert!(
        started.elapsed() >= wait,
        "returned before the wait was over"
    );
}

pub async fn higher_priority_is_leased_first(s: &Subject) {
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    let order = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Medium,
        Priority::Low,
        Priority::High,
    ];
    let tasks = order
        .iter()
        .enumerate()
        .map(|(c, p)| task("j", c as u32, *p))
        .collect();
    s.queue.enqueue(tasks).await.unwrap();
    let mut leased = Vec::new();
    while let Some(lease) = lease_now(s, "w1").await {
        leased.push(lease.id.chunk);
    }
    // High (2, 5), then medium (1, 3), then low (0, 4); first in, first out within a priority.
    assert_eq!(leased, vec![2, 5, 1, 3, 0, 4]);
}

pub async fn nack_retries_then_dead_letters_and_fails_the_job(s: &Subject) {
    submit(s, "j", 1).await;
    for attempt in 1..=3u32 {
        let lease = must_lease(s, "w1").await;
        assert_eq!(lease.attempt, attempt);
        let outcome = s
            .queue
            .nack(&lease, &format!("boom {attempt}"))
            .await
            .unwrap();
        let expected = if attempt < 3 {
            NackOutcome::Retrying {
                next_attempt: attempt + 1,
            }
        } else {
            NackOutcome::DeadLettered
        };
        assert_eq!(outcome, expected, "nack on attempt {attempt}");
    }
    assert!(
        lease_now(s, "w1").await.is_none(),
        "a dead-lettered task was delivered again"
    );
    let job = s.store.job("j").await.unwrap().expect("job j");
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("boom 3"),
        "the job's error is not the last one: {error:?}"
    );
}

pub async fn reclaim_worker_returns_only_that_workers_leases(s: &Subject) {
    submit(s, "j", 3).await;
    let w1 = must_lease(s, "w1").await;
    let w2 = must_lease(s, "w2").await;
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 1);

    // w3 gets the never-leased chunk and w1's chunk as a retry, and nothing of w2's.
    let mut leased = BTreeSet::new();
    while let Some(lease) = lease_now(s, "w3").await {
        leased.insert((lease.id.chunk, lease.attempt));
    }
    let untouched = 3 - w1.id.chunk - w2.id.chunk;
    assert_eq!(leased, BTreeSet::from([(w1.id.chunk, 2), (untouched, 1)]));
    assert!(s.queue.extend(&w2).await.unwrap(), "w2 lost its lease");
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 0);
}

pub async fn stale_lease_is_ignored_after_reclaim(s: &Subject) {
    submit(s, "j", 1).await;
    let old = must_lease(s, "w1").await;
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 1);
    assert_eq!(
        s.queue.nack(&old, "late").await.unwrap(),
        NackOutcome::Stale
    );
    assert!(!s.queue.extend(&old).await.unwrap());

    let current = must_lease(s, "w2").await;
    assert_eq!(current.attempt, 2, "the nack of a stale lease counted");
    s.queue.ack(&old).await.unwrap();
    assert!(
        s.queue.extend(&current).await.unwrap(),
        "a stale ack ended the current lease"
    );
    assert_eq!(s.queue.reclaim_worker("w2").await.unwrap(), 1);
}

pub async fn fresh_lease_is_not_reclaimed_as_expired(s: &Subject) {
    submit(s, "j", 1).await;
    let _lease = must_lease(s, "w1").await;
    assert_eq!(s.queue.reclaim_expired().await.unwrap(), 0);
    assert!(lease_now(s, "w2").await.is_none());
}

pub async fn expired_lease_is_reclaimed_for_another_worker(s: &Subject) {
    submit(s, "j", 1).await;
    let old = must_lease(s, "w1").await;
    reclaim_expired_until(s, 1).await;
    let retry = must_lease(s, "w2").await;
    assert_eq!((retry.id.chunk, retry.attempt), (0, 2));
    assert!(
        !s.queue.extend(&old).await.unwrap(),
        "the expired lease could still be extended"
    );
}

pub async fn extended_lease_outlives_the_visibility_timeout(s: &Subject) {
    submit(s, "j", 1).await;
    let lease = must_lease(s, "w1").await;
    // Extend every third of the timeout for twice the timeout: never reclaimed meanwhile.
    let step = super::EXTENDABLE / 3;
    let until = Instant::now() + super::EXTENDABLE * 2;
    while Instant::now() < until {
        tokio::time::sleep(step).await;
        assert!(s.queue.extend(&lease).await.unwrap());
        assert_eq!(
            s.queue.reclaim_expired().await.unwrap(),
            0,
            "an extended lease expired"
        );
    }
    // Once extensions stop, the lease expires like any other.
    reclaim_expired_until(s, 1).await;
    assert_eq!(must_lease(s, "w2").await.attempt, 2);
}

pub async fn crashing_deliveries_past_max_attempts_dead_letter(s: &Subject) {
    // A task whose every delivery kills its worker (a poison task) must not cycle forever: the
    // third reclaimed delivery is the last.
    submit(s, "j", 1).await;
    for attempt in 1..=3u32 {
        let lease = must_lease(s, &format!("w{attempt}")).await;
        assert_eq!(lease.attempt, attempt);
        assert_eq!(
            s.queue
                .reclaim_worker(&format!("w{attempt}"))
                .await
                .unwrap(),
            1
        );
    }
    assert!(
        lease_now(s, "w9").await.is_none(),
        "delivered a fourth time"
    );
    let job = s.store.job("j").await.unwrap().expect("job j");
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.is_some());
}

pub async fn first_chunk_result_wins(s: &Subject) {
    submit(s, "j", 1).await;
    assert!(s
        .store
        .put_chunk_result("j", &result(0, 3, "w1"))
        .await
        .unwrap());
    assert!(!s
        .store
        .put_chunk_result("j", &result(0, 9, "w2"))
        .await
        .unwrap());
    assert_eq!(
        s.store.chunk_results("j").await.unwrap(),
        vec![result(0, 3, "w1")]
    );
    let progress = s.store.progress("j").await.unwrap();
    assert_eq!(
        progress,
        Progress {
            total_chunks: 1,
            done_chunks: 1,
            matches: 3
        }
    );
}

pub async fn progress_is_derived_from_stored_results(s: &Subject) {
    submit(s, "j", 3).await;
    assert_eq!(
        s.store.progress("j").await.unwrap(),
        Progress {
            total_chunks: 3,
            ..Default::default()
        }
    );
    for (chunk, matches) in [(2, 5), (0, 2), (2, 100), (0, 7)] {
        s.store
            .put_chunk_result("j", &result(chunk, matches, "w1"))
            .await
            .unwrap();
    }
    let stored = s.store.chunk_results("j").await.unwrap();
    assert_eq!(stored, vec![result(0, 2, "w1"), result(2, 5, "w1")]);
    let progress = s.store.progress("j").await.unwrap();
    assert_eq!(
        progress,
        Progress {
            total_chunks: 3,
            done_chunks: 2,
            matches: 7
        }
    );
}

pub async fn status_follows_stored_results(s: &Subject) {
    submit(s, "j", 2).await;
    assert_eq!(job_now(s, "j").await.status, JobStatus::Pending);
    s.store
        .put_chunk_result("j", &result(1, 1, "w1"))
        .await
        .unwrap();
    assert_eq!(job_now(s, "j").await.status, JobStatus::Processing);
    s.store
        .put_chunk_result("j", &result(1, 1, "w2"))
        .await
        .unwrap();
    assert_eq!(
        job_now(s, "j").await.status,
        JobStatus::Processing,
        "a duplicate completed the job"
    );
    s.store
        .put_chunk_result("j", &result(0, 1, "w1"))
        .await
        .unwrap();
    let job = job_now(s, "j").await;
    assert_eq!(job.status, JobStatus::Completed);
    assert!(
        job.finished_at.is_some(),
        "a completed job has no finish time"
    );
}

pub async fn results_before_accept_complete_the_job_on_accept(s: &Subject) {
    // Workers may finish chunks while the upload is still streaming.
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    let tasks = (0..2).map(|c| task("j", c, Priority::High)).collect();
    s.queue.enqueue(tasks).await.unwrap();
    for chunk in 0..2 {
        s.store
            .put_chunk_result("j", &result(chunk, 2, "w1"))
            .await
            .unwrap();
    }
    let job = s.store.job("j").await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Uploading,
        "completed before the input was all in"
    );
    s.store.accept_job("j", 2).await.unwrap();
    let job = s.store.job("j").await.unwrap().unwrap();
    assert_eq!((job.status, job.total_chunks), (JobStatus::Completed, 2));
}

pub async fn cancel_removes_queued_tasks_and_refuses_late_results(s: &Subject) {
    submit(s, "j", 3).await;
    submit(s, "other", 1).await;
    let leased = must_lease(s, "w1").await;
    assert_eq!(leased.id.job, "j");
    s.store
        .set_status("j", JobStatus::Cancelled, None)
        .await
        .unwrap();
    assert_eq!(s.queue.cancel_job("j").await.unwrap(), 2);

    let next = must_lease(s, "w2").await;
    assert_eq!(next.id.job, "other", "a cancelled job's task was delivered");
    assert!(lease_now(s, "w2").await.is_none());
    let late = result(leased.id.chunk, 4, "w1");
    assert!(
        !s.store.put_chunk_result("j", &late).await.unwrap(),
        "late result stored"
    );
    s.queue.ack(&leased).await.unwrap();
    assert_eq!(s.store.progress("j").await.unwrap().done_chunks, 0);
    assert_eq!(
        s.store.job("j").await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

pub async fn create_job_is_idempotent(s: &Subject) {
    let first = job_record("j", 10.5);
    assert_eq!(
        s.store.create_job(&first).await.unwrap(),
        CreateOutcome::Created
    );
    let retry = JobRecord {
        kind: "julia".into(),
        ..job_record("j", 99.0)
    };
    assert_eq!(
        s.store.create_job(&retry).await.unwrap(),
        CreateOutcome::Exists(first.clone())
    );
    assert_eq!(s.store.job("j").await.unwrap(), Some(first));
    assert_eq!(s.store.job("nope").await.unwrap(), None);
    let err = s.store.accept_job("nope", 3).await.unwrap_err();
    assert!(
        matches!(err, BackendError::NoSuchJob(ref id) if id == "nope"),
        "{err}"
    );
}

pub async fn update_job_spec_replaces_the_spec(s: &Subject) {
    submit(s, "j", 1).await;
    let spec = json!({ "patterns": ["ACGT"], "records": [["chr1", 1000]] });
    s.store.update_job_spec("j", &spec).await.unwrap();
    let job = s.store.job("j").await.unwrap().unwrap();
    assert_eq!((job.spec, job.status), (spec.clone(), JobStatus::Pending));
    let err = s.store.update_job_spec("nope", &spec).await.unwrap_err();
    assert!(
        matches!(err, BackendError::NoSuchJob(ref id) if id == "nope"),
        "{err}"
    );
}

pub async fn finished_job_keeps_its_status(s: &Subject) {
    submit(s, "j", 1).await;
    assert_eq!(
        s.store.job("j").await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    s.store
        .set_status("j", JobStatus::Processing, None)
        .await
        .unwrap();
    s.store
        .set_status("j", JobStatus::Completed, None)
        .await
        .unwrap();
    s.store
        .set_status("j", JobStatus::Failed, Some("too late"))
        .await
        .unwrap();
    let job = s.store.job("j").await.unwrap().unwrap();
    assert_eq!((job.status, job.error), (JobStatus::Completed, None));
    assert_eq!(job.total_chunks, 1);
    assert!(job.finished_at.is_some());
}

pub async fn jobs_are_listed_newest_first(s: &Subject) {
    for (id, created_at) in [("a", 1.0), ("b", 3.0), ("c", 2.0)] {
        s.store
            .create_job(&job_record(id, created_at))
            .await
            .unwrap();
    }
    let ids: Vec<String> = s
        .store
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, ["b", "c", "a"]);
}

pub async fn alerts_are_returned_newest_first(s: &Subject) {
    for n in 1..=3 {
        s.store
            .push_alert(&json!({ "n": n, "severity": "WARNING" }))
            .await
            .unwrap();
    }
    let newest: Vec<_> = s
        .store
        .alerts(2)
        .await
        .unwrap()
        .iter()
        .map(|a| a["n"].clone())
        .collect();
    assert_eq!(newest, [json!(3), json!(2)]);
    assert_eq!(s.store.alerts(10).await.unwrap().len(), 3);
}

pub async fn worker_metrics_expire_after_their_ttl(s: &Subject) {
    let long = Duration::from_secs(600);
    s.store
        .put_worker_metrics("w1", &json!({ "cpu": 10.0 }), long)
        .await
        .unwrap();
    s.store
        .put_worker_metrics("w2", &json!({ "cpu": 20.0 }), Duration::from_millis(200))
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut metrics = s.store.worker_metrics().await.unwrap();
        metrics.sort_by(|a, b| a.0.cmp(&b.0));
        if metrics.len() == 1 {
            assert_eq!(metrics, vec![("w1".to_string(), json!({ "cpu": 10.0 }))]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "w2's metrics never expired: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.store
        .put_worker_metrics("w2", &json!({ "cpu": 30.0 }), long)
        .await
        .unwrap();
    assert_eq!(s.store.worker_metrics().await.unwrap().len(), 2);
}

pub async fn concurrent_workers_get_each_task_exactly_once(s: &Subject) {
    const CHUNKS: u32 = 200;
    submit(s, "j", CHUNKS).await;
    let mut workers = Vec::new();
    for w in 0..4 {
        let (queue, store) = (s.queue.clone(), s.store.clone());
        workers.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut done = Vec::new();
            while let Some(lease) = queue.lease(&worker, Duration::ZERO).await.unwrap() {
                let chunk_result = result(lease.id.chunk, 1, &worker);
                let stored = store.put_chunk_result("j", &chunk_result).await.unwrap();
                assert!(stored, "chunk {} stored twice", lease.id.chunk);
                queue.ack(&lease).await.unwrap();
                done.push(lease.id.chunk);
            }
            done
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        CHUNKS as usize,
        "some task was delivered twice or never"
    );
    assert_eq!(distinct, (0..CHUNKS).collect());
    let progress = s.store.progress("j").await.unwrap();
    assert_eq!(
        progress,
        Progress {
            total_chunks: CHUNKS,
            done_chunks: CHUNKS,
            matches: CHUNKS as u64
        }
    );
}
