//! Delivery cases: leases, acks, nacks, retries, dead letters, reclaims, lease extension,
//! priorities and concurrent workers, each checked against hand-computed expectations.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use gridwatch::backend::{
    CreateOutcome, JobStatus, Lease, NackOutcome, Priority, Progress, TaskId,
};
use serde_json::json;
use tokio::time::Instant;

use super::fixtures::*;

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

    assert!(put(s, &lease, 1).await.unwrap());
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

pub async fn tasks_keep_their_kind_through_retries_and_reclaims(s: &Subject) {
    assert_eq!(
        s.store.create_job(&job_record("k", 1.0)).await.unwrap(),
        CreateOutcome::Created
    );
    let mut julia = task("k", 0, Priority::Medium);
    julia.kind = "julia".into();
    let search = task("k", 1, Priority::Medium);
    s.queue.enqueue(vec![julia, search]).await.unwrap();
    s.store.accept_job("k", 2).await.unwrap();
    let kinds = |a: &Lease, b: &Lease| {
        let mut kinds = [(a.id.chunk, a.kind.clone()), (b.id.chunk, b.kind.clone())];
        kinds.sort();
        kinds
    };
    let expected = [(0, "julia".to_string()), (1, "search".to_string())];
    let (first, second) = (must_lease(s, "w1").await, must_lease(s, "w1").await);
    assert_eq!(kinds(&first, &second), expected, "as enqueued");
    for lease in [&first, &second] {
        s.queue.nack(lease, "retry me").await.unwrap();
    }
    let (first, second) = (must_lease(s, "w2").await, must_lease(s, "w2").await);
    assert_eq!(kinds(&first, &second), expected, "after a nack");
    assert_eq!(s.queue.reclaim_worker("w2").await.unwrap(), 2);
    let (first, second) = (must_lease(s, "w3").await, must_lease(s, "w3").await);
    assert_eq!(kinds(&first, &second), expected, "after a reclaim");
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

/// A worker back from a lost connection names the leases it holds; the lease whose reply it
/// never received goes back to the queue at once, its others and other workers' stay.
pub async fn release_unheld_returns_only_the_leases_the_worker_does_not_name(s: &Subject) {
    submit(s, "j", 4).await;
    let kept = must_lease(s, "w1").await;
    let lost = must_lease(s, "w1").await;
    let others = must_lease(s, "w2").await;
    let held = [kept.token.clone()];
    assert_eq!(s.queue.release_unheld("w1", &held).await.unwrap(), 1);
    assert!(
        s.queue.extend(&kept).await.unwrap(),
        "the named lease was lost"
    );
    assert!(
        !s.queue.extend(&lost).await.unwrap(),
        "the unnamed lease stayed"
    );
    assert!(s.queue.extend(&others).await.unwrap(), "w2 lost its lease");

    // w3 gets the never-leased chunk and the released one as a retry.
    let mut leased = BTreeSet::new();
    while let Some(lease) = lease_now(s, "w3").await {
        leased.insert((lease.id.chunk, lease.attempt));
    }
    let untouched = 6 - kept.id.chunk - lost.id.chunk - others.id.chunk;
    assert_eq!(leased, BTreeSet::from([(lost.id.chunk, 2), (untouched, 1)]));
    assert_eq!(s.queue.release_unheld("w1", &held).await.unwrap(), 0);
    assert_eq!(s.queue.release_unheld("w2", &[]).await.unwrap(), 1);
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
                let stored = store.put_chunk_result(&lease, &chunk_result).await.unwrap();
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
