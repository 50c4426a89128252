//! Queue overhead with tiny tasks: how many tasks per second go through enqueue → lease →
//! store result → ack, on Redis and on the embedded backend, each driven in-process by
//! concurrent consumers (as worker slots): one task per call, then [`BATCH`] tasks per call
//! (`lease_batch`, `complete_batch`), with the batched rate's ratio to the single one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch::backend::embedded::{EmbeddedBackend, EmbeddedConfig};
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::remote::RemoteBackend;
use gridwatch::backend::{
    ChunkResult, Completion, JobRecord, JobStatus, Leases, MasterQueue, MasterStore, NewTask,
    Priority, ResultSink, TaskId,
};
use gridwatch::master::{MasterConfig, MasterState};
use serde_json::json;
use tokio::net::TcpListener;

use crate::redis_server::RedisServer;

/// Concurrent consumers, as worker slots leasing in parallel.
const CONSUMERS: usize = 8;

/// Tasks per batch call in the batched rows.
const BATCH: usize = 16;

/// What one backend achieved.
struct Measurement {
    enqueue_per_s: f64,
    drain_per_s: f64,
    batched_per_s: f64,
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
    let remote = measure_through_master(tasks).await;

    println!("queue overhead, {tasks} tiny tasks, {CONSUMERS} concurrent consumers");
    println!(
        "{:<10} {:>12} {:>14} {:>18} {:>8}",
        "backend",
        "enqueue/s",
        "single/s",
        format!("batch of {BATCH}/s"),
        "ratio"
    );
    for (name, m) in [
        ("redis", &redis),
        ("embedded", &embedded),
        ("emb+master", &remote),
    ] {
        println!(
            "{name:<10} {:>12.0} {:>14.0} {:>18.0} {:>7.2}x",
            m.enqueue_per_s,
            m.drain_per_s,
            m.batched_per_s,
            m.batched_per_s / m.drain_per_s
        );
    }
    println!(
        "(single/s and batch/s: lease + result + ack per second; emb+master: the embedded \
         backend reached through a master, as workers reach it)"
    );
    println!(
        "redis/embedded drain ratio: single {:.2}, batched {:.2}",
        redis.drain_per_s / embedded.drain_per_s,
        redis.batched_per_s / embedded.batched_per_s
    );
}

/// Each consumer's handles on the backend: the same as the owner's in-process, or a worker's
/// connection to a master.
type Consumers = Arc<dyn Fn(usize) -> (Arc<dyn Leases>, Arc<dyn ResultSink>) + Send + Sync>;

async fn measure(
    queue: Arc<dyn MasterQueue>,
    store: Arc<dyn MasterStore>,
    tasks: u32,
) -> Measurement {
    let (q, st) = (queue.clone(), store.clone());
    let consumers: Consumers = Arc::new(move |_| {
        let leases: Arc<dyn Leases> = q.clone();
        let results: Arc<dyn ResultSink> = st.clone();
        (leases, results)
    });
    measure_with(queue, store, consumers, tasks).await
}

/// The embedded backend as workers reach it: a real master on a free port serves it, and each
/// consumer is a worker with its own `RemoteBackend` (leases, results and acks over the protocol).
async fn measure_through_master(tasks: u32) -> Measurement {
    let dir = tempfile::tempdir().expect("temp data dir");
    let owner = Arc::new(
        EmbeddedBackend::open(dir.path(), EmbeddedConfig::default())
            .expect("opening the embedded backend"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let address = listener.local_addr().expect("bound address").to_string();
    let config = MasterConfig {
        listen: address.clone(),
        data_dir: dir.path().to_path_buf(),
        chunk_size: 1024,
        max_upload: 1 << 20,
        max_input: 1 << 30,
        max_positions: 10_000_000,
        jobs_per_minute: 1000,
        tasks_per_minute: 1_000_000,
        max_batch_file: 64 << 20,
        max_batch_tasks: 100_000,
        max_connections: 256,
        max_connections_per_address: 256,
        connection_queue: 64,
        max_unauthenticated: 64,
        queue_timeout: Duration::from_secs(30),
        max_frame: gridwatch::protocol::DEFAULT_MAX_FRAME,
        hello_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        frame_timeout: Duration::from_secs(60),
        visibility_timeout: Duration::from_secs(300),
        max_attempts: 3,
        work_caps: gridwatch::jobs::WorkCaps::DEFAULT,
        token: None,
        insecure: false,
        http: None,
        keep_finished: gridwatch::master::Retention(None),
        keep_genomes: gridwatch::master::Retention(None),
    };
    let state = Arc::new(MasterState::new(owner.clone(), owner.clone(), config));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let master = tokio::spawn(gridwatch::master::run(listener, state, async move {
        let _ = stopped.await;
    }));
    let workers: Vec<Arc<RemoteBackend>> = (0..CONSUMERS)
        .map(|n| Arc::new(RemoteBackend::new(address.clone(), format!("w{n}"), None)))
        .collect();
    let consumers: Consumers = Arc::new(move |n| {
        let worker = workers[n].clone();
        let leases: Arc<dyn Leases> = worker.clone();
        let results: Arc<dyn ResultSink> = worker;
        (leases, results)
    });
    let measured = measure_with(owner.clone(), owner, consumers, tasks).await;
    let _ = stop.send(());
    let _ = master.await;
    drop(dir);
    measured
}

async fn measure_with(
    queue: Arc<dyn MasterQueue>,
    store: Arc<dyn MasterStore>,
    consumers: Consumers,
    tasks: u32,
) -> Measurement {
    let (enqueue_per_s, drain_per_s) =
        drain_job(&queue, &store, &consumers, "bench", tasks, 1).await;
    let (_, batched_per_s) =
        drain_job(&queue, &store, &consumers, "bench-batched", tasks, BATCH).await;
    Measurement {
        enqueue_per_s,
        drain_per_s,
        batched_per_s,
    }
}

/// Enqueues job `id` of `tasks` tasks, drains it with [`CONSUMERS`] consumers taking `batch`
/// tasks per call (1: the single-task calls) and checks every task was done once. Returns
/// (enqueued/s, drained/s).
async fn drain_job(
    queue: &Arc<dyn MasterQueue>,
    store: &Arc<dyn MasterStore>,
    consumers: &Consumers,
    id: &str,
    tasks: u32,
    batch: usize,
) -> (f64, f64) {
    let job = JobRecord {
        id: id.into(),
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
                job: id.into(),
                chunk,
            },
            kind: "search".into(),
            priority: Priority::Medium,
            spec: json!({ "offset": chunk }),
            data: Bytes::from_static(b"ACGTACGTACGTACGT"),
            max_matches: u64::MAX,
            slots: 1,
        })
        .collect();
    let started = Instant::now();
    queue.enqueue(new_tasks).await.expect("enqueue");
    let enqueue_s = started.elapsed().as_secs_f64();
    store.accept_job(id, tasks).await.expect("accept");

    let started = Instant::now();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|n| {
            let (queue, store) = consumers(n);
            let worker = format!("w{n}");
            tokio::spawn(async move {
                if batch == 1 {
                    drain(&*queue, &*store, &worker).await
                } else {
                    drain_batched(&*queue, &*store, &worker, batch).await
                }
            })
        })
        .collect();
    let mut drained = 0;
    for consumer in consumers {
        drained += consumer.await.expect("consumer panicked");
    }
    let drain_s = started.elapsed().as_secs_f64();
    assert_eq!(drained, tasks as usize, "every task drained exactly once");
    let progress = store.progress(id).await.expect("progress");
    assert_eq!(progress.done_chunks, tasks);
    (tasks as f64 / enqueue_s, tasks as f64 / drain_s)
}

fn result_of(chunk: u32, worker: &str) -> ChunkResult {
    ChunkResult {
        chunk,
        matches: 0,
        payload: json!({ "hits": [] }),
        encoded: None,
        worker: worker.to_string(),
        run: Default::default(),
    }
}

async fn drain(queue: &dyn Leases, store: &dyn ResultSink, worker: &str) -> usize {
    let mut done = 0;
    while let Some(lease) = queue.lease(worker, Duration::ZERO).await.expect("lease") {
        let result = result_of(lease.id.chunk, worker);
        store
            .put_chunk_result(&lease, &result)
            .await
            .expect("store result");
        queue.ack(&lease).await.expect("ack");
        done += 1;
    }
    done
}

async fn drain_batched(
    queue: &dyn Leases,
    store: &dyn ResultSink,
    worker: &str,
    batch: usize,
) -> usize {
    let mut done = 0;
    loop {
        let leases = queue
            .lease_batch(worker, batch, Duration::ZERO)
            .await
            .expect("lease batch");
        if leases.is_empty() {
            return done;
        }
        let items: Vec<Completion> = leases
            .into_iter()
            .map(|lease| Completion {
                result: result_of(lease.id.chunk, worker),
                lease,
            })
            .collect();
        let outcomes = queue
            .complete_batch(store, &items)
            .await
            .expect("complete batch");
        for outcome in outcomes {
            assert!(outcome.expect("result stored and acked"), "first result");
            done += 1;
        }
    }
}
