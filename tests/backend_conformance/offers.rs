//! What a worker offers decides what it leases: command tasks only to workers that run them, a
//! task taking N slots only to a worker with N or more, and a failed command task's retry to
//! another worker first (its own worker takes it back only after a moment, so a grid of one
//! worker still retries).

use std::time::Duration;

use gridwatch::backend::{NackOutcome, Priority, WorkerOffer, RETRY_ELSEWHERE};
use serde_json::json;
use tokio::time::Instant;

use super::fixtures::*;

/// A command task of `job` taking `slots` slots.
fn command_task(job: &str, chunk: u32, slots: u32) -> gridwatch::backend::NewTask {
    let mut task = task(job, chunk, Priority::Medium);
    task.kind = "command".into();
    task.spec = json!({ "index": chunk, "cpus": slots });
    task.slots = slots;
    task
}

async fn offer(s: &Subject, worker: &str, commands: bool, slots: u32) {
    let offer = WorkerOffer {
        commands,
        slots,
        genome_files: None,
        genome_partials: false,
    };
    s.queue.set_offer(worker, offer).await.unwrap();
}

/// Leases for `worker` until a task comes, or panics at the deadline.
async fn lease_eventually(s: &Subject, worker: &str) -> gridwatch::backend::Lease {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let wait = Duration::from_millis(300);
        if let Some(lease) = s.queue.lease(worker, wait).await.unwrap() {
            return lease;
        }
        assert!(Instant::now() < deadline, "{worker} never got the task");
    }
}

pub async fn a_task_taking_more_slots_than_a_worker_has_waits_for_a_wider_one(s: &Subject) {
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    offer(s, "plain", false, 8).await;
    offer(s, "narrow", true, 2).await;
    offer(s, "wide", true, 4).await;
    s.queue
        .enqueue(vec![command_task("j", 0, 3)])
        .await
        .unwrap();
    assert!(
        lease_now(s, "plain").await.is_none(),
        "a worker that runs no commands got one"
    );
    assert!(
        lease_now(s, "narrow").await.is_none(),
        "a 2-slot worker got a 3-slot task"
    );
    // A narrower task queued behind it is not held up for the narrow worker.
    s.queue
        .enqueue(vec![command_task("j", 1, 2)])
        .await
        .unwrap();
    let narrow = must_lease(s, "narrow").await;
    assert_eq!((narrow.id.chunk, narrow.attempt), (1, 1));
    assert!(
        lease_now(s, "narrow").await.is_none(),
        "a 2-slot worker got a 3-slot task"
    );
    let wide = must_lease(s, "wide").await;
    assert_eq!(
        (wide.id.chunk, wide.attempt),
        (0, 1),
        "set aside is not a delivery"
    );
    assert!(put(s, &wide, 0).await.unwrap());
    s.queue.ack(&wide).await.unwrap();
    assert!(
        lease_now(s, "wide").await.is_none(),
        "an acked task came back"
    );
}

pub async fn a_task_set_aside_for_a_wider_worker_is_not_reclaimed_as_expired(s: &Subject) {
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    offer(s, "narrow", true, 1).await;
    offer(s, "wide", true, 2).await;
    s.queue
        .enqueue(vec![command_task("j", 0, 2)])
        .await
        .unwrap();
    assert!(lease_now(s, "narrow").await.is_none());
    // Well past the visibility timeout: nothing is anyone's lease, so nothing expires.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(s.queue.reclaim_expired().await.unwrap(), 0);
    let wide = must_lease(s, "wide").await;
    assert_eq!((wide.id.chunk, wide.attempt), (0, 1));
}

pub async fn a_failed_command_task_is_retried_on_another_worker_first(s: &Subject) {
    s.store.create_job(&job_record("j", 1.0)).await.unwrap();
    offer(s, "w1", true, 1).await;
    offer(s, "w2", true, 1).await;
    s.queue
        .enqueue(vec![command_task("j", 0, 1)])
        .await
        .unwrap();
    let first = must_lease(s, "w1").await;
    let nacked = s.queue.nack(&first, "exit 3").await.unwrap();
    assert_eq!(nacked, NackOutcome::Retrying { next_attempt: 2 });
    assert!(
        lease_now(s, "w1").await.is_none(),
        "the worker the task just failed on got its retry while another was free"
    );
    let second = must_lease(s, "w2").await;
    assert_eq!((second.id.chunk, second.attempt), (0, 2));
    // Now w2 is the only worker asking: after a moment it runs the retry itself.
    let nacked = s.queue.nack(&second, "exit 3").await.unwrap();
    assert_eq!(nacked, NackOutcome::Retrying { next_attempt: 3 });
    let asked = Instant::now();
    let third = lease_eventually(s, "w2").await;
    assert_eq!((third.id.chunk, third.attempt), (0, 3));
    assert!(
        asked.elapsed() + Duration::from_millis(100) >= RETRY_ELSEWHERE,
        "the retry went back to the worker it failed on at once"
    );
}
