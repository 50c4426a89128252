//! Batch cases: `lease_batch` and `complete_batch` keep every per-task guarantee of the single
//! calls (priority order, own tokens and deadlines, fencing per item, no task lost or counted
//! twice), checked against hand-computed expectations.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use gridwatch::backend::{Completion, JobStatus, Lease, Priority, RefusalReason};
use tokio::time::Instant;

use super::fixtures::*;

async fn lease_batch_now(s: &Subject, worker: &str, max: usize) -> Vec<Lease> {
    s.queue
        .lease_batch(worker, max, Duration::ZERO)
        .await
        .unwrap()
}

fn completions(leases: &[Lease], matches: u64) -> Vec<Completion> {
    leases
        .iter()
        .map(|lease| Completion {
            lease: lease.clone(),
            result: result(lease.id.chunk, matches, &lease.worker),
        })
        .collect()
}

fn chunks(leases: &[Lease]) -> Vec<u32> {
    leases.iter().map(|lease| lease.id.chunk).collect()
}

pub async fn batch_lease_returns_distinct_tasks_in_priority_order(s: &Subject) {
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    // Enqueued low, low, high, medium, medium: served high, then medium, then low, each in the
    // order enqueued.
    let tasks = vec![
        task("j", 0, Priority::Low),
        task("j", 1, Priority::Low),
        task("j", 2, Priority::High),
        task("j", 3, Priority::Medium),
        task("j", 4, Priority::Medium),
    ];
    s.queue.enqueue(tasks).await.unwrap();
    s.store.accept_job("j", 5).await.unwrap();

    let first = lease_batch_now(s, "w1", 4).await;
    assert_eq!(chunks(&first), vec![2, 3, 4, 0]);
    for lease in &first {
        assert_eq!((lease.worker.as_str(), lease.attempt), ("w1", 1));
        assert_eq!(
            lease.data,
            Bytes::from(format!("ACGT-j-{}", lease.id.chunk))
        );
    }
    let tokens: BTreeSet<&str> = first.iter().map(|lease| lease.token.as_str()).collect();
    assert_eq!(tokens.len(), 4, "leases of one batch share a token");

    let rest = lease_batch_now(s, "w2", 10).await;
    assert_eq!(
        chunks(&rest),
        vec![1],
        "the batch's tasks were delivered twice"
    );
    assert!(lease_batch_now(s, "w3", 10).await.is_empty());
    assert!(lease_now(s, "w3").await.is_none());
}

pub async fn batch_leases_expire_independently(s: &Subject) {
    submit(s, "j", 2).await;
    let leases = lease_batch_now(s, "w1", 2).await;
    assert_eq!(chunks(&leases), vec![0, 1]);
    let (kept, dropped) = (&leases[0], &leases[1]);
    // Extend one lease of the batch every third of the timeout for twice the timeout: the
    // other, never extended, expires alone.
    let step = super::EXTENDABLE / 3;
    let until = Instant::now() + super::EXTENDABLE * 2;
    let mut reclaimed = 0;
    while Instant::now() < until {
        tokio::time::sleep(step).await;
        assert!(
            s.queue.extend(kept).await.unwrap(),
            "the extended lease was lost"
        );
        reclaimed += s.queue.reclaim_expired().await.unwrap();
    }
    assert_eq!(reclaimed, 1, "exactly the unextended lease expires");
    assert!(!s.queue.extend(dropped).await.unwrap());
    let retry = must_lease(s, "w2").await;
    assert_eq!((retry.id.chunk, retry.attempt), (1, 2));
    assert!(lease_now(s, "w3").await.is_none());
}

pub async fn batch_result_with_one_stale_token_refuses_only_that_item(s: &Subject) {
    submit(s, "j", 3).await;
    let leases = lease_batch_now(s, "w1", 3).await;
    assert_eq!(chunks(&leases), vec![0, 1, 2]);
    let mut items = completions(&leases, 5);
    items[1].lease = forged(&leases[1], |lease| lease.token = "t0123456789abcdef".into());
    let outcomes = s
        .queue
        .complete_batch(s.store.as_ref(), &items)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(*outcomes[0].as_ref().unwrap());
    assert!(*outcomes[2].as_ref().unwrap());
    let stale = outcomes.into_iter().nth(1).unwrap();
    assert_eq!(refusal(stale), RefusalReason::NotHolder);

    let stored: Vec<u32> = s
        .store
        .chunk_results("j")
        .await
        .unwrap()
        .iter()
        .map(|r| r.chunk)
        .collect();
    assert_eq!(stored, vec![0, 2], "the refused item was stored");
    // The refused item's real lease was not acked: it is still held, and its holder settles it.
    assert!(s.queue.extend(&leases[1]).await.unwrap());
    let holder = completions(&leases[1..2], 7);
    let outcomes = s
        .queue
        .complete_batch(s.store.as_ref(), &holder)
        .await
        .unwrap();
    assert!(*outcomes[0].as_ref().unwrap());
    let progress = s.store.progress("j").await.unwrap();
    assert_eq!((progress.done_chunks, progress.matches), (3, 5 + 7 + 5));
    assert_eq!(job_now(s, "j").await.status, JobStatus::Completed);
}

pub async fn batch_acked_tasks_never_come_back(s: &Subject) {
    submit(s, "j", 3).await;
    let leases = lease_batch_now(s, "w1", 8).await;
    assert_eq!(chunks(&leases), vec![0, 1, 2]);
    let items = completions(&leases, 2);
    let outcomes = s
        .queue
        .complete_batch(s.store.as_ref(), &items)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Ok(true))));
    assert!(
        lease_batch_now(s, "w2", 8).await.is_empty(),
        "an acked task came back"
    );
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 0);
    assert_eq!(s.queue.reclaim_expired().await.unwrap(), 0);
    // Settling the same batch again stores nothing twice: the leases ended with their acks.
    let again = s
        .queue
        .complete_batch(s.store.as_ref(), &items)
        .await
        .unwrap();
    for outcome in again {
        assert_eq!(refusal(outcome), RefusalReason::NotHolder);
    }
    let progress = s.store.progress("j").await.unwrap();
    assert_eq!((progress.done_chunks, progress.matches), (3, 6));
    assert_eq!(job_now(s, "j").await.status, JobStatus::Completed);
}

pub async fn batch_leases_of_a_dead_worker_are_reclaimed(s: &Subject) {
    submit(s, "j", 4).await;
    let dead = lease_batch_now(s, "w1", 3).await;
    assert_eq!(chunks(&dead), vec![0, 1, 2]);
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 3);
    let mut retried = lease_batch_now(s, "w2", 8).await;
    retried.sort_by_key(|lease| lease.id.chunk);
    let attempts: Vec<(u32, u32)> = retried
        .iter()
        .map(|lease| (lease.id.chunk, lease.attempt))
        .collect();
    assert_eq!(attempts, vec![(0, 2), (1, 2), (2, 2), (3, 1)]);
    // The dead worker's late batch is refused item by item and stores nothing.
    let late = s
        .queue
        .complete_batch(s.store.as_ref(), &completions(&dead, 1))
        .await
        .unwrap();
    for outcome in late {
        assert_eq!(refusal(outcome), RefusalReason::NotHolder);
    }
    assert_eq!(s.store.progress("j").await.unwrap().done_chunks, 0);
    let outcomes = s
        .queue
        .complete_batch(s.store.as_ref(), &completions(&retried, 1))
        .await
        .unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Ok(true))));
    assert_eq!(job_now(s, "j").await.status, JobStatus::Completed);
}
