//! Storage cases: first-write-wins results, progress and status derived from them, cancel and
//! the cancel of jobs not started, job records, alerts and worker metrics, each checked against
//! hand-computed expectations.

use std::time::Duration;

use gridwatch::backend::{
    BackendError, CreateOutcome, JobRecord, JobStatus, NackOutcome, Priority, Progress,
};
use serde_json::json;
use tokio::time::Instant;

use super::fixtures::*;

pub async fn first_chunk_result_wins(s: &Subject) {
    submit(s, "j", 1).await;
    let lease = must_lease(s, "w1").await;
    assert!(put(s, &lease, 3).await.unwrap());
    // The same holder sending again (a reply lost on the way) changes nothing.
    assert!(!put(s, &lease, 9).await.unwrap());
    assert_eq!(
        without_runs(s.store.chunk_results("j").await.unwrap()),
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
    let leases = [
        must_lease(s, "w1").await,
        must_lease(s, "w1").await,
        must_lease(s, "w1").await,
    ];
    let lease_of = |chunk: u32| leases.iter().find(|l| l.id.chunk == chunk).unwrap();
    for (chunk, matches) in [(2, 5), (0, 2), (2, 100), (0, 7)] {
        put(s, lease_of(chunk), matches).await.unwrap();
    }
    let stored = without_runs(s.store.chunk_results("j").await.unwrap());
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
    let first = must_lease(s, "w1").await;
    let second = must_lease(s, "w2").await;
    put(s, &second, 1).await.unwrap();
    assert_eq!(job_now(s, "j").await.status, JobStatus::Processing);
    put(s, &second, 1).await.unwrap();
    assert_eq!(
        job_now(s, "j").await.status,
        JobStatus::Processing,
        "a duplicate completed the job"
    );
    put(s, &first, 1).await.unwrap();
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
    for _ in 0..2 {
        let lease = must_lease(s, "w1").await;
        assert!(put(s, &lease, 2).await.unwrap());
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
    assert!(
        !s.queue.extend(&leased).await.unwrap(),
        "a cancelled job's running task was told its lease still holds, so it would not stop"
    );

    let next = must_lease(s, "w2").await;
    assert_eq!(next.id.job, "other", "a cancelled job's task was delivered");
    assert!(lease_now(s, "w2").await.is_none());
    assert!(!put(s, &leased, 4).await.unwrap(), "late result stored");
    s.queue.ack(&leased).await.unwrap();
    assert_eq!(s.store.progress("j").await.unwrap().done_chunks, 0);
    assert_eq!(
        s.store.job("j").await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

pub async fn cancel_if_unstarted_spares_a_job_whose_task_is_leased(s: &Subject) {
    submit(s, "running", 2).await;
    submit(s, "queued", 2).await;
    let first = must_lease(s, "w1").await;
    assert_eq!((first.id.job.as_str(), first.id.chunk), ("running", 0));

    assert!(
        !s.queue.cancel_if_unstarted("running").await.unwrap(),
        "a job with a leased task was cancelled"
    );
    assert!(s.queue.cancel_if_unstarted("queued").await.unwrap());

    // The running job keeps both its tasks: its other chunk is still delivered, the cancelled
    // job's are not.
    let second = must_lease(s, "w2").await;
    assert_eq!((second.id.job.as_str(), second.id.chunk), ("running", 1));
    assert!(
        lease_now(s, "w3").await.is_none(),
        "a cancelled job's task was delivered"
    );
    // The held lease completes as if nothing happened.
    assert!(s.queue.extend(&first).await.unwrap());
    assert!(put(s, &first, 3).await.unwrap());
    s.queue.ack(&first).await.unwrap();
    assert!(put(s, &second, 4).await.unwrap());
    s.queue.ack(&second).await.unwrap();
    let running = job_now(s, "running").await;
    assert_eq!(running.status, JobStatus::Completed);
    assert_eq!(
        s.store.progress("running").await.unwrap(),
        Progress {
            total_chunks: 2,
            done_chunks: 2,
            matches: 7
        }
    );
    assert!(!s.queue.cancel_if_unstarted("running").await.unwrap());

    // The status is the caller's to set; asking again finds nothing started and nothing left.
    assert_eq!(job_now(s, "queued").await.status, JobStatus::Pending);
    assert_eq!(s.store.progress("queued").await.unwrap().done_chunks, 0);
    assert!(s.queue.cancel_if_unstarted("queued").await.unwrap());
}

pub async fn cancel_if_unstarted_counts_a_returned_or_reclaimed_lease_as_started(s: &Subject) {
    submit(s, "reclaimed", 1).await;
    submit(s, "returned", 1).await;
    submit(s, "untouched", 1).await;
    let lost = must_lease(s, "w2").await;
    assert_eq!(lost.id.job, "reclaimed");
    let failed = must_lease(s, "w1").await;
    assert_eq!(failed.id.job, "returned");
    assert_eq!(
        s.queue.nack(&failed, "boom").await.unwrap(),
        NackOutcome::Retrying { next_attempt: 2 }
    );
    assert_eq!(s.queue.reclaim_worker("w2").await.unwrap(), 1);

    // Neither task is leased now, but both were delivered once: both jobs started.
    assert!(!s.queue.cancel_if_unstarted("reclaimed").await.unwrap());
    assert!(!s.queue.cancel_if_unstarted("returned").await.unwrap());
    assert!(s.queue.cancel_if_unstarted("untouched").await.unwrap());

    let mut delivered = Vec::new();
    while let Some(lease) = lease_now(s, "w3").await {
        delivered.push((lease.id.job, lease.attempt));
    }
    delivered.sort();
    assert_eq!(
        delivered,
        vec![("reclaimed".to_string(), 2), ("returned".to_string(), 2)]
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

pub async fn jobs_are_created_and_accepted_in_groups_as_one_by_one(s: &Subject) {
    let old = job_record("old", 1.0);
    s.store.create_job(&old).await.unwrap();
    let group = [
        job_record("a", 2.0),
        JobRecord {
            kind: "julia".into(),
            ..job_record("old", 3.0)
        },
        job_record("b", 4.0),
    ];
    assert_eq!(
        s.store.create_jobs(&group).await.unwrap(),
        vec![
            CreateOutcome::Created,
            CreateOutcome::Exists(old.clone()),
            CreateOutcome::Created
        ]
    );
    assert_eq!(s.store.job("a").await.unwrap(), Some(group[0].clone()));
    assert_eq!(s.store.job("b").await.unwrap(), Some(group[2].clone()));
    assert_eq!(s.store.job("old").await.unwrap(), Some(old));
    s.store
        .accept_jobs(&[("a".to_string(), 3), ("b".to_string(), 1)])
        .await
        .unwrap();
    for (id, chunks) in [("a", 3), ("b", 1)] {
        let job = s.store.job(id).await.unwrap().unwrap();
        assert_eq!((job.status, job.total_chunks), (JobStatus::Pending, chunks));
    }
    let err = s
        .store
        .accept_jobs(&[("nope".to_string(), 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::NoSuchJob(ref id) if id == "nope"),
        "{err}"
    );
    assert_eq!(s.store.create_jobs(&[]).await.unwrap(), vec![]);
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
