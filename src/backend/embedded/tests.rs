//! Embedded-specific behaviour beyond the shared conformance suite: persistence across reopen,
//! lease expiry under an injected clock, and status settling from stored results.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::db::sql_error;
use super::*;
use crate::backend::{Priority, TaskId};

fn job(id: &str) -> JobRecord {
    JobRecord {
        id: id.into(),
        kind: "search".into(),
        spec: serde_json::json!({}),
        summary: String::new(),
        priority: Default::default(),
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: 1.0,
        finished_at: None,
    }
}

fn task(job: &str, chunk: u32, data: &str) -> NewTask {
    NewTask {
        id: TaskId {
            job: job.into(),
            chunk,
        },
        kind: "search".into(),
        priority: Priority::Medium,
        spec: serde_json::json!({ "chunk": chunk }),
        data: Bytes::from(data.to_string()),
        max_matches: 100,
        slots: 1,
    }
}

fn result(chunk: u32, matches: u64) -> ChunkResult {
    ChunkResult {
        chunk,
        matches,
        payload: serde_json::json!({}),
        encoded: None,
        worker: "w1".into(),
        run: Default::default(),
    }
}

/// A clock the test moves by hand (seconds).
fn manual_clock() -> (Clock, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(1_000));
    let reader = now.clone();
    (Arc::new(move || reader.load(Ordering::SeqCst) as f64), now)
}

#[tokio::test]
async fn spooled_tasks_and_leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
        backend.create_job(&job("j")).await.unwrap();
        backend
            .enqueue(vec![task("j", 0, "ACGT"), task("j", 1, "TTTT")])
            .await
            .unwrap();
        let first = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(&first.data[..], b"ACGT");
    }
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    let second = backend.lease("w2", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((second.id.chunk, &second.data[..]), (1, &b"TTTT"[..]));
    assert!(backend.lease("w2", Duration::ZERO).await.unwrap().is_none());
    assert_eq!(
        backend.job("j").await.unwrap().unwrap().status,
        JobStatus::Uploading
    );
}

#[tokio::test]
async fn lease_expires_only_after_the_visibility_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = manual_clock();
    let config = EmbeddedConfig {
        visibility_timeout: Duration::from_secs(30),
        max_attempts: 3,
    };
    let backend = EmbeddedBackend::open_with_clock(dir.path(), config, clock).unwrap();
    backend.enqueue(vec![task("j", 0, "A")]).await.unwrap();
    let lease = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    now.fetch_add(29, Ordering::SeqCst);
    assert_eq!(backend.reclaim_expired().await.unwrap(), 0);
    assert!(backend.extend(&lease).await.unwrap());
    now.fetch_add(29, Ordering::SeqCst);
    assert_eq!(backend.reclaim_expired().await.unwrap(), 0);
    now.fetch_add(2, Ordering::SeqCst);
    assert_eq!(backend.reclaim_expired().await.unwrap(), 1);
    let again = backend.lease("w2", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(again.attempt, 2);
    assert!(
        !backend.extend(&lease).await.unwrap(),
        "old delivery is stale"
    );
}

#[tokio::test]
async fn job_completes_when_results_arrive_before_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    backend.create_job(&job("j")).await.unwrap();
    backend
        .enqueue(vec![task("j", 0, "A"), task("j", 1, "C")])
        .await
        .unwrap();
    let first = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    let second = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    assert!(backend
        .put_chunk_result(&first, &result(0, 2))
        .await
        .unwrap());
    assert!(backend
        .put_chunk_result(&second, &result(1, 3))
        .await
        .unwrap());
    assert!(!backend
        .put_chunk_result(&second, &result(1, 9))
        .await
        .unwrap());
    assert_eq!(
        backend.job("j").await.unwrap().unwrap().status,
        JobStatus::Uploading
    );
    backend.accept_job("j", 2).await.unwrap();
    let stored = backend.job("j").await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Completed);
    let progress = backend.progress("j").await.unwrap();
    assert_eq!((progress.done_chunks, progress.matches), (2, 5));
}

/// Another connection that sees one delivery's token learns nothing about the next one's.
#[tokio::test]
async fn lease_tokens_are_random_not_serial() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    backend.enqueue(vec![task("j", 0, "A")]).await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let lease = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
        tokens.push(lease.token.clone());
        backend.nack(&lease, "again").await.unwrap();
        backend.release_all_leases().await.unwrap();
    }
    for token in &tokens {
        assert!(token.len() >= 32, "short token {token:?}");
        assert!(token.parse::<i64>().is_err(), "numeric token {token:?}");
    }
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2]);
}

/// A result left over from an older database (inline payload, no parts) reads as one part.
#[tokio::test]
async fn results_stored_before_parts_read_as_one_part() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("gridwatch.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL,
                status TEXT NOT NULL, total_chunks INTEGER NOT NULL DEFAULT 0, error TEXT,
                created_at REAL NOT NULL, finished_at REAL);
             INSERT INTO jobs VALUES ('old', 'search', '{}', 'completed', 2, NULL, 1.0, 2.0);
             INSERT INTO jobs VALUES ('batch', 'julia', '{\"job_meta\":{\"priority\":\"high\"}}',
                'pending', 1, NULL, 0.5, NULL);
             CREATE TABLE results (job TEXT NOT NULL, chunk INTEGER NOT NULL,
                matches INTEGER NOT NULL, payload TEXT NOT NULL, worker TEXT NOT NULL,
                PRIMARY KEY (job, chunk));
             INSERT INTO results VALUES ('old', 0, 9223372036854775807, '{\"n\":1}', 'w1'),
                                        ('old', 1, 9223372036854775807, '{\"n\":2}', 'w1');",
        )
        .unwrap();
    }
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    let stored = backend.chunk_results("old").await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].payload, serde_json::json!({ "n": 2 }));
    // Two huge stored counts saturate instead of overflowing.
    assert_eq!(backend.progress("old").await.unwrap().matches, u64::MAX);
    let listed = backend.job_summaries(10).await.unwrap();
    assert_eq!(listed[0].progress.matches, u64::MAX);
    assert_eq!(listed[0].summary, "");
    // A priority kept in the spec only is copied to the job's row.
    let priorities: Vec<Priority> = listed.iter().map(|job| job.priority).collect();
    assert_eq!(priorities, [Priority::Medium, Priority::High]);
}

#[tokio::test]
async fn acking_the_last_task_frees_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    backend.enqueue(vec![task("j", 0, "ACGT")]).await.unwrap();
    let spool = dir.path().join("spool");
    // Beside the stored genomes' directory, one spool file while the task lives.
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 2);
    let lease = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    backend.ack(&lease).await.unwrap();
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1);
}

#[tokio::test]
async fn an_orphan_spool_is_removed_when_the_backend_opens() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    backend
        .enqueue(vec![task("kept", 0, "ACGT")])
        .await
        .unwrap();
    drop(backend);
    let spool = dir.path().join("spool");
    // Job "gone" (hex 676f6e65) has no task: its file is what a failed upload leaves behind.
    std::fs::write(spool.join("676f6e65.chunks"), "ACGT").unwrap();
    std::fs::write(spool.join("not-a-spool.txt"), "x").unwrap();
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["6b657074.chunks", "genomes", "not-a-spool.txt"]);
    let lease = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(&lease.data[..], b"ACGT");
}

/// A database written before tasks carried a kind: its queued tasks are searches.
#[tokio::test]
async fn a_database_without_task_kinds_opens_and_its_tasks_are_searches() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    // The spool file of job "old" (its id in hex).
    std::fs::write(dir.path().join("spool").join("6f6c64.chunks"), "ACGT").unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("gridwatch.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE tasks (
                job TEXT NOT NULL, chunk INTEGER NOT NULL, priority INTEGER NOT NULL,
                spec TEXT NOT NULL, state TEXT NOT NULL, worker TEXT, deadline REAL,
                attempts INTEGER NOT NULL DEFAULT 0, token INTEGER NOT NULL DEFAULT 0,
                spool_offset INTEGER NOT NULL, spool_len INTEGER NOT NULL, last_error TEXT,
                PRIMARY KEY (job, chunk));
             INSERT INTO tasks (job, chunk, priority, spec, state, spool_offset, spool_len)
                VALUES ('old', 0, 1, '{}', 'queued', 0, 4);",
        )
        .unwrap();
    }
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    let old = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((old.id.job.as_str(), old.kind.as_str()), ("old", "search"));
    assert_eq!(&old.data[..], b"ACGT");
    let mut julia = task("new", 0, "");
    julia.kind = "julia".into();
    backend.enqueue(vec![julia]).await.unwrap();
    let new = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(new.kind, "julia");
    drop(backend);
    // Reopening does not add the column twice.
    EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
}

#[tokio::test]
async fn a_panic_inside_a_database_call_fails_that_call_and_not_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::open(dir.path(), EmbeddedConfig::default()).unwrap();
    backend.enqueue(vec![task("j", 0, "A")]).await.unwrap();
    let panicked = backend
        .db
        .call(|state| -> BackendResult<()> {
            let tx = state.conn.transaction().map_err(sql_error)?;
            tx.execute("DELETE FROM tasks", []).map_err(sql_error)?;
            panic!("a bug inside a transaction");
        })
        .await;
    assert!(panicked.is_err(), "the panicking call reports an error");
    let lease = backend.lease("w1", Duration::ZERO).await.unwrap();
    let lease = lease.expect("the task survives: the transaction rolled back");
    assert_eq!(&lease.data[..], b"A");
}

#[tokio::test]
async fn a_task_whose_spec_does_not_decode_is_leased_alone_as_in_a_batch_and_can_be_nacked() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        visibility_timeout: Duration::from_secs(3600),
        max_attempts: 3,
    };
    let backend = EmbeddedBackend::open(dir.path(), config).unwrap();
    backend.create_job(&job("j")).await.unwrap();
    backend.enqueue(vec![task("j", 0, "A")]).await.unwrap();
    backend
        .db
        .call(|state| {
            state
                .conn
                .execute("UPDATE tasks SET spec = '{not json'", [])
                .map_err(sql_error)
        })
        .await
        .unwrap();
    let lease = backend.lease("w1", Duration::ZERO).await.unwrap();
    let lease = lease.expect("leased, not an error that leaves it invisible");
    assert!(lease.spec.is_null(), "{:?}", lease.spec);
    backend.nack(&lease, "bad task spec").await.unwrap();
    let again = backend.lease("w2", Duration::ZERO).await.unwrap();
    assert_eq!(
        again.map(|l| l.attempt),
        Some(2),
        "back at once, not after an hour"
    );
}
