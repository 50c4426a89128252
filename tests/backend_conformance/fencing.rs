//! Fencing cases: a result, ack or extension counts only from the holder of the task's current
//! lease, for a task that exists, with a match count the task can hold; refusals are counted.
//! Large results are stored in parts that become visible together. Listings carry no specs.

use bytes::Bytes;
use gridwatch::backend::{
    BackendError, ChunkResult, Priority, Progress, RefusalReason, RESULT_PART_BYTES,
};
use serde_json::json;

use super::fixtures::*;

/// The refusal counters as a map, zeros included.
async fn refused(s: &Subject) -> Vec<(RefusalReason, u64)> {
    let mut counts = s.store.refused_results().await.unwrap();
    counts.sort();
    counts
}

pub async fn results_are_taken_only_from_the_lease_holder(s: &Subject) {
    submit(s, "j", 2).await;
    let held = must_lease(s, "w1").await;
    let other = must_lease(s, "w2").await;
    assert_ne!(held.id.chunk, other.id.chunk);

    // Another worker's token for a chunk it does not hold; the holder's token under another
    // worker's name; a made-up token.
    let not_holder = [
        forged(&held, |l| {
            l.token = other.token.clone();
            l.worker = other.worker.clone();
        }),
        forged(&held, |l| l.worker = "w2".into()),
        forged(&held, |l| l.token = format!("{}x", l.token)),
    ];
    for forgery in &not_holder {
        assert_eq!(
            refusal(put(s, forgery, 1).await),
            RefusalReason::NotHolder,
            "{forgery:?}"
        );
        assert!(
            !s.queue.extend(forgery).await.unwrap(),
            "extended by a forger"
        );
        s.queue.ack(forgery).await.unwrap();
    }
    // Chunks and jobs that do not exist.
    let missing = [
        forged(&held, |l| l.id.chunk = 7),
        forged(&held, |l| l.id.job = "nope".into()),
    ];
    for forgery in &missing {
        assert_eq!(
            refusal(put(s, forgery, 1).await),
            RefusalReason::NoSuchTask,
            "{forgery:?}"
        );
    }
    // Values the task cannot hold, from the holder itself.
    for huge in [MAX_MATCHES + 1, i64::MAX as u64, u64::MAX] {
        assert_eq!(
            refusal(put(s, &held, huge).await),
            RefusalReason::OutOfRange
        );
    }
    assert_eq!(s.store.progress("j").await.unwrap().done_chunks, 0);

    // The forged acks changed nothing: the holders still hold their leases.
    assert!(
        lease_now(s, "w3").await.is_none(),
        "a forged ack freed a task"
    );
    assert!(s.queue.extend(&held).await.unwrap());
    assert!(put(s, &held, MAX_MATCHES).await.unwrap());
    assert!(put(s, &other, 2).await.unwrap());
    s.queue.ack(&held).await.unwrap();
    s.queue.ack(&other).await.unwrap();
    assert_eq!(
        s.store.progress("j").await.unwrap(),
        Progress {
            total_chunks: 2,
            done_chunks: 2,
            matches: MAX_MATCHES + 2
        }
    );
    assert_eq!(
        refused(s).await,
        vec![
            (RefusalReason::NotHolder, 3),
            (RefusalReason::NoSuchTask, 2),
            (RefusalReason::OutOfRange, 3),
            (RefusalReason::BadPayload, 0),
        ]
    );
}

pub async fn a_lease_lost_to_a_reclaim_cannot_store_its_result(s: &Subject) {
    submit(s, "j", 1).await;
    let stale = must_lease(s, "w1").await;
    assert_eq!(s.queue.reclaim_worker("w1").await.unwrap(), 1);
    let current = must_lease(s, "w2").await;
    assert_eq!(refusal(put(s, &stale, 5).await), RefusalReason::NotHolder);
    s.queue.ack(&stale).await.unwrap();
    assert!(put(s, &current, 1).await.unwrap());
    s.queue.ack(&current).await.unwrap();
    assert_eq!(s.store.progress("j").await.unwrap().matches, 1);
    assert_eq!(s.store.chunk_results("j").await.unwrap()[0].worker, "w2");
}

/// A payload whose JSON text spans three parts.
fn large_payload(tag: &str) -> serde_json::Value {
    let filler = tag.repeat(RESULT_PART_BYTES / tag.len() + 10);
    json!({ "hits": [filler.clone(), filler], "tag": tag })
}

pub async fn large_results_are_stored_in_parts_that_appear_together(s: &Subject) {
    submit(s, "j", 2).await;
    let first = must_lease(s, "w1").await;
    let second = must_lease(s, "w2").await;

    // Parts staged without their commit stay invisible.
    s.store
        .put_result_part(&second, 0, Bytes::from_static(b"{\"partial\":"))
        .await
        .unwrap();
    assert!(s.store.result_headers("j").await.unwrap().is_empty());
    // A forger cannot stage parts, and a commit naming parts never staged stores nothing.
    let forgery = forged(&second, |l| l.worker = "w9".into());
    assert_eq!(
        refusal(
            s.store
                .put_result_part(&forgery, 0, Bytes::from_static(b"x"))
                .await
        ),
        RefusalReason::NotHolder
    );
    let header = |lease: &gridwatch::backend::Lease| ChunkResult {
        chunk: lease.id.chunk,
        matches: 4,
        payload: serde_json::Value::Null,
        encoded: None,
        worker: lease.worker.clone(),
        run: Default::default(),
    };
    let err = s
        .store
        .commit_chunk_result(&second, &header(&second), 3)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Other(_)), "{err}");
    assert!(s.store.result_headers("j").await.unwrap().is_empty());

    let payload = large_payload("ACGT");
    let big = ChunkResult {
        chunk: first.id.chunk,
        matches: 4,
        payload: payload.clone(),
        encoded: None,
        worker: "w1".into(),
        run: Default::default(),
    };
    assert!(s.store.put_chunk_result(&first, &big).await.unwrap());
    assert!(!s.store.put_chunk_result(&first, &big).await.unwrap());
    let small = result(second.id.chunk, 2, "w2");
    assert!(s.store.put_chunk_result(&second, &small).await.unwrap());

    let headers = s.store.result_headers("j").await.unwrap();
    let parts: Vec<(u32, u32)> = headers.iter().map(|h| (h.chunk, h.parts)).collect();
    let mut expected = vec![(first.id.chunk, 3), (second.id.chunk, 1)];
    expected.sort();
    assert_eq!(parts, expected);
    for header in &headers {
        for part in 0..header.parts {
            let bytes = s.store.result_part("j", header.chunk, part).await.unwrap();
            assert!(bytes.len() <= RESULT_PART_BYTES);
        }
    }
    let mut stored = without_runs(s.store.chunk_results("j").await.unwrap());
    stored.sort_by_key(|r| r.chunk);
    let mut want = vec![big, small];
    want.sort_by_key(|r| r.chunk);
    assert_eq!(stored, want);
    assert_eq!(s.store.progress("j").await.unwrap().matches, 6);
}

pub async fn job_summaries_list_progress_without_specs(s: &Subject) {
    submit(s, "a", 2).await;
    let mut big = job_record("b", 5.0);
    big.spec = json!({ "records": vec!["x".repeat(1000); 1000] });
    big.priority = Priority::High;
    s.store.create_job(&big).await.unwrap();
    s.store.accept_job("b", 1).await.unwrap();
    let lease = must_lease(s, "w1").await;
    put(s, &lease, 3).await.unwrap();

    let summaries = s.store.job_summaries(10).await.unwrap();
    let listed: Vec<(&str, &str, u32, u32, u64)> = summaries
        .iter()
        .map(|j| {
            let p = &j.progress;
            (
                j.id.as_str(),
                j.summary.as_str(),
                p.total_chunks,
                p.done_chunks,
                p.matches,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("b", "ACGT in b.fa", 1, 0, 0),
            ("a", "ACGT in a.fa", 2, 1, 3)
        ]
    );
    let priorities: Vec<Priority> = summaries.iter().map(|j| j.priority).collect();
    assert_eq!(priorities, [Priority::High, Priority::Low]);
    let newest = s.store.job_summaries(1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].id, "b");
    let text = serde_json::to_string(&summaries).unwrap();
    assert!(text.len() < 2000, "a summary carries the spec: {text}");
}
