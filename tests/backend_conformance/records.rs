//! Per-task records, worker task times and retention: what a stored result says about how its
//! task ran, what a worker's history counts, and which jobs a prune deletes.

use gridwatch::backend::{JobStatus, Lease, TaskRun, TaskTimes};
use serde_json::json;

use super::fixtures::*;

/// Stores `lease`'s result as a worker that spent `secs` on it.
async fn put_timed(s: &Subject, lease: &Lease, matches: u64, secs: f64) -> bool {
    let mut chunk_result = result(lease.id.chunk, matches, &lease.worker);
    *chunk_result.run = TaskRun {
        elapsed_secs: Some(secs),
        metrics: json!({ "matches": matches, "pixels": 7 }),
        ..TaskRun::default()
    };
    s.store
        .put_chunk_result(lease, &chunk_result)
        .await
        .expect("storing a held lease's result")
}

pub async fn stored_results_carry_their_task_record(s: &Subject) {
    submit(s, "rec", 2).await;
    let before = gridwatch::time::unix_now();
    let lease = must_lease(s, "w1").await;
    assert!(put_timed(s, &lease, 3, 0.25).await);
    let after = gridwatch::time::unix_now();
    let headers = s.store.result_headers("rec").await.unwrap();
    assert_eq!(headers.len(), 1);
    let run = &headers[0].run;
    assert_eq!(headers[0].worker, "w1");
    assert_eq!(run.kind, "search");
    // The fixture task's spec, as enqueued: the record's parameters.
    assert_eq!(run.parameters, json!({ "offset": lease.id.chunk * 100 }));
    assert_eq!(run.elapsed_secs, Some(0.25));
    assert_eq!(run.metrics, json!({ "matches": 3, "pixels": 7 }));
    let stored_at = run.completed_at.expect("a completion time");
    assert!(
        stored_at >= before - 1.0 && stored_at <= after + 1.0,
        "completed_at {stored_at} outside [{before}, {after}]"
    );
    // The assembled result carries the same record.
    let results = s.store.chunk_results("rec").await.unwrap();
    assert_eq!(&*results[0].run, run);
}

pub async fn task_times_count_first_results_per_worker_and_kind(s: &Subject) {
    submit(s, "times", 4).await;
    let first = must_lease(s, "w1").await;
    let second = must_lease(s, "w1").await;
    let third = must_lease(s, "w2").await;
    assert!(put_timed(s, &first, 1, 0.5).await);
    assert!(put_timed(s, &second, 1, 1.5).await);
    assert!(put_timed(s, &third, 1, 2.0).await);
    // A second result for a chunk already stored is not a completed task.
    assert!(!put_timed(s, &first, 1, 9.0).await);
    // A result without a time counts the task but adds no time.
    let fourth = must_lease(s, "w2").await;
    let untimed = result(fourth.id.chunk, 1, "w2");
    assert!(s.store.put_chunk_result(&fourth, &untimed).await.unwrap());
    let mut times = s.store.task_times().await.unwrap();
    times.sort_by(|a, b| a.worker.cmp(&b.worker));
    let expected = vec![
        TaskTimes {
            worker: "w1".into(),
            kind: "search".into(),
            completed: 2,
            recent_secs: vec![1.5, 0.5],
        },
        TaskTimes {
            worker: "w2".into(),
            kind: "search".into(),
            completed: 2,
            recent_secs: vec![2.0],
        },
    ];
    assert_eq!(times, expected);
}

pub async fn prune_deletes_only_finished_jobs_past_the_cutoff(s: &Subject) {
    // done: completed (1 result); gone: cancelled with a queued task; busy: running.
    submit(s, "done", 1).await;
    let lease = must_lease(s, "w1").await;
    assert!(put_timed(s, &lease, 2, 0.1).await);
    s.queue.ack(&lease).await.unwrap();
    assert_eq!(job_now(s, "done").await.status, JobStatus::Completed);
    submit(s, "gone", 2).await;
    s.store
        .set_status("gone", JobStatus::Cancelled, None)
        .await
        .unwrap();
    s.queue.cancel_job("gone").await.unwrap();
    submit(s, "busy", 2).await;
    let running = must_lease(s, "w1").await;
    assert_eq!(running.id.job, "busy");
    assert!(put_timed(s, &running, 1, 0.1).await);
    assert_eq!(job_now(s, "busy").await.status, JobStatus::Processing);

    // A cutoff before every finish deletes nothing.
    let nothing = s.store.prune_finished(0.0).await.unwrap();
    assert!(nothing.job_ids.is_empty(), "{nothing:?}");
    assert_eq!(nothing.results, 0);

    let far_future = gridwatch::time::unix_now() + 86_400.0;
    let report = s.store.prune_finished(far_future).await.unwrap();
    let mut pruned = report.job_ids.clone();
    pruned.sort();
    assert_eq!(pruned, ["done", "gone"]);
    assert_eq!(report.results, 1);
    for id in ["done", "gone"] {
        assert!(s.store.job(id).await.unwrap().is_none(), "{id} kept");
        assert!(s.store.result_headers(id).await.unwrap().is_empty());
    }
    let listed: Vec<String> = s
        .store
        .job_summaries(100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(listed, ["busy"]);
    // The running job keeps everything and still runs to its end.
    assert_eq!(s.store.result_headers("busy").await.unwrap().len(), 1);
    let last = must_lease(s, "w2").await;
    assert_eq!(last.id.job, "busy");
    assert!(put_timed(s, &last, 1, 0.1).await);
    assert_eq!(job_now(s, "busy").await.status, JobStatus::Completed);
    // Pruning is not job data's only owner: worker task times stay.
    let times = s.store.task_times().await.unwrap();
    let counted: u64 = times.iter().map(|t| t.completed).sum();
    assert_eq!(counted, 3);
}
