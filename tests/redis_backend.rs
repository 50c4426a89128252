//! Redis-only promises, checked with `redis-cli`-style reads against a real `redis-server`:
//! memory hygiene (no acked entries, no chunk bytes left), the readable key names, the dead-letter
//! stream, and surviving a Redis restart or a lost connection.

use std::future::Future;
use std::time::Duration;

use crate::support::redis::RedisServer;
use bytes::Bytes;
use gridwatch::backend::redis::keys::{self, DEAD_LETTER_STREAM, GROUP, TASK_STREAMS};
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::{
    BackendError, BackendResult, ChunkResult, JobRecord, JobStatus, JobStore, Lease, Leases,
    MonitorSink, NackOutcome, NewTask, Priority, QueueAdmin, RefusalReason, ResultSink,
    ResultStore, TaskId,
};
use redis::AsyncCommands;
use serde_json::json;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(server: &RedisServer, options: RedisOptions) -> RedisBackend {
    RedisBackend::connect(&server.url(), options)
        .await
        .expect("connecting to the test redis-server")
}

async fn inspector(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Creates job `id` with `chunks` tasks of `chunk_bytes` input each, and accepts it.
async fn submit(backend: &RedisBackend, id: &str, chunks: u32, chunk_bytes: usize) {
    let record = JobRecord {
        id: id.into(),
        kind: "search".into(),
        spec: json!({}),
        summary: String::new(),
        priority: Default::default(),
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: 1.0,
        finished_at: None,
    };
    backend.create_job(&record).await.unwrap();
    let tasks = (0..chunks)
        .map(|chunk| NewTask {
            id: TaskId {
                job: id.into(),
                chunk,
            },
            kind: "search".into(),
            priority: [Priority::High, Priority::Medium, Priority::Low][chunk as usize % 3],
            spec: json!({ "chunk": chunk }),
            data: Bytes::from(vec![b"ACGT"[chunk as usize % 4]; chunk_bytes]),
            max_matches: 1000,
            slots: 1,
        })
        .collect();
    backend.enqueue(tasks).await.unwrap();
    backend.accept_job(id, chunks).await.unwrap();
}

/// Stores the lease's result and acks it, as a worker does.
async fn complete(backend: &RedisBackend, lease: &Lease) -> BackendResult<()> {
    let result = ChunkResult {
        chunk: lease.id.chunk,
        matches: 1,
        payload: json!({}),
        encoded: None,
        worker: lease.worker.clone(),
        run: Default::default(),
    };
    backend.put_chunk_result(lease, &result).await?;
    backend.ack(lease).await
}

/// Retries `step` while Redis is unavailable (restarting), up to the deadline.
async fn until_available<T, F, Fut>(mut step: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = BackendResult<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match step().await {
            Ok(value) => return value,
            Err(BackendError::Unavailable(why)) if Instant::now() < deadline => {
                tracing::debug!(%why, "redis unavailable, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("backend step failed: {e}"),
        }
    }
}

/// Asserts that nothing of job `id` remains in the queue: no stream entries (acked or not), no
/// pending deliveries, no task refs, no input bytes.
async fn assert_queue_is_clean(conn: &mut redis::aio::MultiplexedConnection, id: &str) {
    for stream in TASK_STREAMS {
        let len: usize = conn.xlen(stream).await.unwrap();
        assert_eq!(len, 0, "{stream} still holds entries");
        let pending: redis::streams::StreamPendingReply =
            conn.xpending(stream, GROUP).await.unwrap();
        assert_eq!(pending.count(), 0, "{stream} still has pending deliveries");
    }
    for key in [keys::job_chunks(id), keys::job_tasks(id)] {
        let exists: bool = conn.exists(&key).await.unwrap();
        assert!(!exists, "{key} still exists");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_job_leaves_no_acked_entries_or_chunk_bytes() {
    let server = RedisServer::start();
    let backend = connect(&server, RedisOptions::default()).await;
    submit(&backend, "j", 60, 4096).await;

    // A worker that dies holding three leases, and a worker that fails every chunk once.
    for _ in 0..3 {
        backend
            .lease("doomed", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(backend.reclaim_worker("doomed").await.unwrap(), 3);
    while let Some(lease) = backend.lease("w1", Duration::ZERO).await.unwrap() {
        if lease.attempt == 1 && lease.id.chunk % 5 == 0 {
            backend.nack(&lease, "transient").await.unwrap();
        } else {
            complete(&backend, &lease).await.unwrap();
        }
    }
    assert_eq!(backend.progress("j").await.unwrap().done_chunks, 60);
    assert_queue_is_clean(&mut inspector(&server).await, "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inputs_come_back_byte_for_byte() {
    let server = RedisServer::start();
    let backend = connect(&server, RedisOptions::default()).await;
    // Sizes around the inline limit of the lease reply, and a 1 MiB chunk.
    let sizes = [0usize, 1, 65_535, 65_536, 65_537, 1 << 20];
    let record = JobRecord {
        id: "big".into(),
        kind: "search".into(),
        spec: json!({}),
        summary: String::new(),
        priority: Default::default(),
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: 1.0,
        finished_at: None,
    };
    backend.create_job(&record).await.unwrap();
    let input = |chunk: usize| -> Vec<u8> {
        (0..sizes[chunk])
            .map(|i| b"ACGTNacgt"[(i * 7 + chunk) % 9])
            .collect()
    };
    let tasks = (0..sizes.len())
        .map(|chunk| NewTask {
            id: TaskId {
                job: "big".into(),
                chunk: chunk as u32,
            },
            kind: "search".into(),
            priority: Priority::Medium,
            spec: json!({}),
            data: Bytes::from(input(chunk)),
            max_matches: 1000,
            slots: 1,
        })
        .collect();
    backend.enqueue(tasks).await.unwrap();
    while let Some(lease) = backend.lease("w1", Duration::ZERO).await.unwrap() {
        let chunk = lease.id.chunk as usize;
        assert!(lease.data == input(chunk), "chunk {chunk} input differs");
        complete(&backend, &lease).await.unwrap();
    }
    assert_eq!(
        backend.progress("big").await.unwrap().done_chunks,
        sizes.len() as u32
    );
    assert_queue_is_clean(&mut inspector(&server).await, "big").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_result_of_an_expired_lease_is_refused_and_its_retry_runs() {
    let server = RedisServer::start();
    let options = RedisOptions {
        visibility_timeout: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let backend = connect(&server, options).await;
    submit(&backend, "j", 1, 100).await;
    let slow = backend
        .lease("slow", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while backend.reclaim_expired().await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The slow worker finishes after all, but its lease is gone: its result is refused and its
    // ack changes nothing. The retry does the work.
    match complete(&backend, &slow).await {
        Err(BackendError::Refused { reason, .. }) => assert_eq!(reason, RefusalReason::NotHolder),
        other => panic!("a late result of an expired lease was taken: {other:?}"),
    }
    backend.ack(&slow).await.unwrap();
    let retry = backend.lease("w2", Duration::ZERO).await.unwrap();
    let retry = retry.expect("the retry is still queued");
    assert_eq!(retry.attempt, 2);
    complete(&backend, &retry).await.unwrap();
    assert!(backend.lease("w2", Duration::ZERO).await.unwrap().is_none());
    assert_eq!(backend.progress("j").await.unwrap().done_chunks, 1);
    assert_queue_is_clean(&mut inspector(&server).await, "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_stream_records_the_last_failure() {
    let server = RedisServer::start();
    let backend = connect(&server, RedisOptions::default()).await;
    submit(&backend, "j", 1, 10).await;
    for attempt in 1..=3 {
        let lease = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
        backend
            .nack(&lease, &format!("bad input {attempt}"))
            .await
            .unwrap();
    }
    let mut conn = inspector(&server).await;
    let dead: redis::streams::StreamRangeReply = conn.xrange_all(DEAD_LETTER_STREAM).await.unwrap();
    assert_eq!(dead.ids.len(), 1);
    let entry = &dead.ids[0];
    let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
    assert_eq!(
        (
            field("job"),
            field("chunk"),
            field("attempt"),
            field("error")
        ),
        ("j".into(), "0".into(), "3".into(), "bad input 3".into())
    );
    assert_queue_is_clean(&mut conn, "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_of_the_enqueuer_bind_every_worker() {
    let server = RedisServer::start();
    let master_options = RedisOptions {
        max_attempts: 2,
        ..RedisOptions::default()
    };
    let master = connect(&server, master_options).await;
    let worker = connect(&server, RedisOptions::default()).await;
    submit(&master, "j", 1, 10).await;
    let first = worker.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    let outcome = worker.nack(&first, "one").await.unwrap();
    assert_eq!(outcome, NackOutcome::Retrying { next_attempt: 2 });
    let second = worker.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(
        worker.nack(&second, "two").await.unwrap(),
        NackOutcome::DeadLettered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_workers_are_those_that_leased_within_the_window() {
    let server = RedisServer::start();
    let backend = connect(&server, RedisOptions::default()).await;
    submit(&backend, "j", 2, 10).await;
    backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();
    backend.lease("w2", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(backend.reclaim_worker("w2").await.unwrap(), 1);
    let recent = backend
        .recent_workers(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        recent,
        Some(vec!["w1".to_string()]),
        "w2 was reclaimed as dead"
    );
    let none = backend.recent_workers(Duration::ZERO).await.unwrap();
    assert_eq!(none, Some(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_readable_words_as_redis_cli_shows_them() {
    let server = RedisServer::start();
    let options = RedisOptions {
        alert_history_cap: 5,
        ..RedisOptions::default()
    };
    let backend = connect(&server, options).await;
    let mut conn = inspector(&server).await;
    submit(&backend, "550e8400", 2, 10).await;
    let lease = backend
        .lease("worker1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    complete(&backend, &lease).await.unwrap();

    let status: String = conn.get("job:550e8400:status").await.unwrap();
    assert_eq!(status, "processing");
    let stats: Vec<(String, u64)> = conn.hgetall("job:550e8400:stats").await.unwrap();
    let mut stats = stats;
    stats.sort();
    let expected = [
        ("chunks_processed", 1),
        ("total_chunks", 2),
        ("total_matches", 1),
    ];
    assert_eq!(stats, expected.map(|(k, v)| (k.to_string(), v)));
    let results: usize = conn.hlen("job:550e8400:results").await.unwrap();
    assert_eq!(results, 1);
    let lease = backend
        .lease("worker1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    complete(&backend, &lease).await.unwrap();
    let status: String = conn.get("job:550e8400:status").await.unwrap();
    assert_eq!(status, "completed");

    let metrics = json!({ "worker_id": "worker1", "cpu_percent": 95.2 });
    backend
        .put_worker_metrics("worker1", &metrics, Duration::from_secs(60))
        .await
        .unwrap();
    let stored: String = conn.get("worker:worker1:metrics").await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
        metrics
    );
    let ttl_ms: i64 = conn.pttl("worker:worker1:metrics").await.unwrap();
    assert!((1..=60_000).contains(&ttl_ms), "TTL {ttl_ms} ms");

    for n in 1..=8 {
        backend.push_alert(&json!({ "n": n })).await.unwrap();
    }
    let history: Vec<String> = conn.lrange("alerts:history", 0, -1).await.unwrap();
    let kept: Vec<i64> = history
        .iter()
        .map(|a| {
            serde_json::from_str::<serde_json::Value>(a).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        kept,
        [8, 7, 6, 5, 4],
        "alerts:history is not capped newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_in_flight_survives_a_redis_restart_with_aof() {
    let mut server = RedisServer::start_with_aof();
    let backend = connect(&server, RedisOptions::default()).await;
    submit(&backend, "j", 3, 1000).await;
    let held = backend.lease("w1", Duration::ZERO).await.unwrap().unwrap();

    server.stop_gracefully();
    let err = backend.lease("w2", Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Unavailable(_)),
        "while down: {err}"
    );
    server.start_again();

    // The lease held across the restart is still valid, and the other tasks are still queued.
    until_available(|| complete(&backend, &held)).await;
    let mut done = vec![held.id.chunk];
    while let Some(lease) = until_available(|| backend.lease("w2", Duration::ZERO)).await {
        complete(&backend, &lease).await.unwrap();
        done.push(lease.id.chunk);
    }
    done.sort();
    assert_eq!(done, [0, 1, 2]);
    assert_eq!(backend.progress("j").await.unwrap().done_chunks, 3);
    assert_queue_is_clean(&mut inspector(&server).await, "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_is_recreated_after_redis_lost_its_data() {
    let mut server = RedisServer::start();
    let backend = connect(&server, RedisOptions::default()).await;
    server.restart(); // no persistence: streams and group are gone
    until_available(|| async { submit_after_restart(&backend).await }).await;
    let lease = until_available(|| backend.lease("w1", Duration::ZERO)).await;
    assert_eq!(lease.expect("no task after the restart").id.chunk, 0);
}

async fn submit_after_restart(backend: &RedisBackend) -> BackendResult<()> {
    let record = JobRecord {
        id: "j".into(),
        kind: "search".into(),
        spec: json!({}),
        summary: String::new(),
        priority: Default::default(),
        status: JobStatus::Pending,
        total_chunks: 1,
        error: None,
        created_at: 1.0,
        finished_at: None,
    };
    backend.create_job(&record).await?;
    let task = NewTask {
        id: TaskId {
            job: "j".into(),
            chunk: 0,
        },
        kind: "search".into(),
        priority: Priority::Medium,
        spec: json!({}),
        data: Bytes::from_static(b"ACGT"),
        max_matches: 1000,
        slots: 1,
    };
    backend.enqueue(vec![task]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_separate_connections_share_one_queue() {
    let server = RedisServer::start();
    let producer = connect(&server, RedisOptions::default()).await;
    submit(&producer, "j", 90, 256).await;
    let mut hosts = Vec::new();
    for host in 0..3 {
        // One backend per "host": its own connections, as on separate machines.
        let backend = connect(&server, RedisOptions::default()).await;
        hosts.push(tokio::spawn(async move {
            let worker = format!("host{host}");
            let mut done = Vec::new();
            while let Some(lease) = backend.lease(&worker, Duration::ZERO).await.unwrap() {
                complete(&backend, &lease).await.unwrap();
                done.push(lease.id.chunk);
            }
            done
        }));
    }
    let mut all = Vec::new();
    for host in hosts {
        all.extend(host.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (0..90).collect::<Vec<u32>>());
    assert_queue_is_clean(&mut inspector(&server).await, "j").await;
}
