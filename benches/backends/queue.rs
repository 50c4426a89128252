//! Queue overhead with tiny tasks: how many tasks per second go through enqueue → lease →
//! store result → ack, on Redis and on the embedded backend, each driven in-process by
//! concurrent consumers (as worker slots).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch::backend::embedded::{EmbeddedBackend, EmbeddedConfig};
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::{
    ChunkResult, JobRecord, JobStatus, NewTask, Priority, Queue, Store, TaskId,
};
use serde_json::json;

use crate::redis_server::RedisServer;

/// Concurrent consumers, as worker slots leasing in parallel.
const CONSUMERS: usize = 8;

/// What one backend achieved.
struct Measurement {
    enqueue_per_s: f64,
    drain_per_s: f64,
}

/// Measures both backends with `tasks` tiny tasks and prints a table.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn run(tasks: u32) {
    let server = RedisServer::start();
    let redis = Arc::new(
        RedisBackend::connect(&server.url(), RedisOptions::default())
            .await
            .expect("connecting to the benchmark redis-server"),
    );
    let redis = measure(redis.clone(), redis, tasks).await;

    let dir = tempfile::tempdir().expect("temp data dir");
    let embedded = Arc::new(
        EmbeddedBackend::open(dir.path(), EmbeddedConfig::default())
            .expect("opening the embedded backend"),
    );
    let embedded = measure(embedded.clone(), embedded, tasks).await;

    println!("queue overhead, {tasks} tiny tasks, {CONSUMERS} concurrent consumers");
    println!(
        "{:<10} {:>14} {:>22}",
        "backend", "enqueue/s", "lease+result+ack/s"
    );
    for (name, m) in [("redis", &redis), ("embedded", &embedded)] {
        println!(
            "{name:<10} {:>14.0} {:>22.0}",
            m.enqueue_per_s, m.drain_per_s
        );
    }
    println!(
        "redis/embedded drain ratio: {:.2}",
        redis.drain_per_s / embedded.drain_per_s
    );
}

async fn measure(queue: Arc<dyn Queue>, store: Arc<dyn Store>, tasks: u32) -> Measurement {
    let job = JobRecord {
        id: "bench".into(),
        kind: "search".into(),
        spec: json!({}),
        summary: String::new(),
        priority: Default::default(),
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: 0.0,
        finished_at: None,
    };
    store.create_job(&job).await.expect("create job");
    let new_tasks: Vec<NewTask> = (0..tasks)
        .map(|chunk| NewTask {
            id: TaskId {
                job: "bench".into(),
                chunk,
            },
            kind: "search".into(),
            priority: Priority::Medium,
            spec: json!({ "offset": chunk }),
            data: Bytes::from_static(b"ACGTACGTACGTACGT"),
            max_matches: u64::MAX,
        })
        .collect();
    let started = Instant::now();
    queue.enqueue(new_tasks).await.expect("enqueue");
    let enqueue_s = started.elapsed().as_secs_f64();
    store.accept_job("bench", tasks).await.expect("accept");

    let started = Instant::now();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|n| {
            let (queue, store) = (queue.clone(), store.clone());
            tokio::spawn(async move { drain(&*queue, &*store, &format!("w{n}")).await })
        })
        .collect();
    let mut drained = 0;
    for consumer in consumers {
        drained += consumer.await.expect("consumer panicked");
    }
    let drain_s = started.elapsed().as_secs_f64();
    assert_eq!(drained, tasks as usize, "every task drained exactly once");
    let progress = store.progress("bench").await.expect("progress");
    assert_eq!(progress.done_chunks, tasks);
    Measurement {
        enqueue_per_s: tasks as f64 / enqueue_s,
        drain_per_s: tasks as f64 / drain_s,
    }
}

async fn drain(queue: &dyn Queue, store: &dyn Store, worker: &str) -> usize {
    let mut done = 0;
    while let Some(lease) = queue.lease(worker, Duration::ZERO).await.expect("lease") {
        let result = ChunkResult {
            chunk: lease.id.chunk,
            matches: 0,
            payload: json!({ "hits": [] }),
            worker: worker.to_string(),
            run: Default::default(),
        };
        store
            .put_chunk_result(&lease, &result)
            .await
            .expect("store result");
        queue.ack(&lease).await.expect("ack");
        done += 1;
    }
    done
}
