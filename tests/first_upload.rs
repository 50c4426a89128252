//! A genome's first upload is stored once and its tasks read it while it is still being
//! written, against real master and worker processes (and a real `redis-server`): on Redis each
//! stored byte crosses from the master to Redis once (counted by Redis's own `INFO stats`); a
//! worker finishes tasks of a job whose upload is still sending, and on the embedded backend a
//! worker on the master's host reads them from the file being written, sent no base; the
//! embedded spool never holds a task-data file for a genome upload; the same genome uploaded twice at once ends as one
//! stored copy, the other deleted once its job ended, and both jobs count exactly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::genome_reuse::{begin_upload, cli_ok, grid_on, input_counters, Backend};
use crate::support::grid::{parse_total, write_fasta, Bases, Grid, Records};
use crate::support::redis::{info_number, RedisServer};
use crate::support::{gridwatch_bin, wait_for};
use gridwatch::protocol::{Connection, Message};
use redis::AsyncCommands;
use tokio::net::TcpStream;

const JOB_TIMEOUT: Duration = Duration::from_secs(180);
const PATTERN: &str = "GATTACA";

/// Records of `total` bases in all, of uneven lengths.
fn genome(seed: u64, total: usize) -> Records {
    let mut bases = Bases::new(seed);
    let first = total / 3 + 12_345;
    vec![
        ("chr1".to_string(), bases.take(first)),
        ("chr2".to_string(), bases.take(777)),
        ("chr3".to_string(), bases.take(total - first - 777)),
    ]
}

/// Forward-strand occurrences of `pattern` in `records`, overlaps included: a plain scan.
fn naive_count(records: &Records, pattern: &str) -> u64 {
    let pattern = pattern.as_bytes();
    records
        .iter()
        .map(|(_, seq)| seq.windows(pattern.len()).filter(|w| *w == pattern).count() as u64)
        .sum()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn inspector(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("inspector connection")
}

/// The one stored genome's storage id, from `genomes --json`.
fn storage_id(grid: &Grid) -> String {
    let listed: serde_json::Value =
        serde_json::from_str(&cli_ok(grid, &["genomes", "--json"])).expect("genomes --json");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "one stored genome: {listed:?}");
    listed[0]["storage"]
        .as_str()
        .expect("a storage id")
        .to_string()
}

fn job_count(grid: &Grid, job: &str) -> u64 {
    parse_total(&cli_ok(grid, &["results", job, "--format", "count"]))
}

#[test]
fn a_first_upload_moves_each_stored_byte_to_redis_once() {
    let backend = Backend::Redis(RedisServer::start());
    let Backend::Redis(server) = &backend else {
        unreachable!("a Redis backend")
    };
    let mut grid = grid_on(&backend, &[]);
    let records = genome(21, 6 << 20);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let runtime = runtime();
    let mut conn = runtime.block_on(inspector(server));
    let before = runtime.block_on(info_number(&mut conn, "stats", "total_net_input_bytes"));
    // Accepted once the whole upload is stored and its tasks queued; no worker adds traffic.
    let path = file.display().to_string();
    cli_ok(
        &grid,
        &["submit", &path, "-p", PATTERN, "--job-id", "first"],
    );
    let after = runtime.block_on(info_number(&mut conn, "stats", "total_net_input_bytes"));
    let storage = storage_id(&grid);
    let packed: u64 = runtime.block_on(async {
        let keys: Vec<String> = conn
            .keys(format!("genome:{storage}:*"))
            .await
            .expect("KEYS");
        let mut total = 0u64;
        for key in keys {
            let len: u64 = conn.strlen(&key).await.expect("STRLEN");
            total += len;
        }
        total
    });
    let sent = after - before;
    let ratio = sent as f64 / packed as f64;
    eprintln!("the master sent Redis {sent} bytes for {packed} packed bytes stored: {ratio:.3}x");
    assert!(packed > (6 << 20) / 4, "{packed} packed bytes");
    assert!(
        ratio < 1.5,
        "{sent} bytes sent to Redis for {packed} stored: each byte should cross once"
    );
    grid.start_worker("w1", 2);
    grid.wait_finished("first", JOB_TIMEOUT);
    assert_eq!(job_count(&grid, "first"), naive_count(&records, PATTERN));
}

/// Sends the hello, then `submit_job` announcing `upload`'s size with no hash, as a client that
/// has not hashed the file does.
async fn begin_raw_submit(grid: &Grid, job: &str, upload: &[u8]) -> Connection<TcpStream> {
    let spec = serde_json::json!({
        "filename": "g.fa",
        "patterns": [{ "name": "p", "sequence": PATTERN }],
        "chunk_size": 1_000_000,
    });
    begin_upload(grid, job, spec, upload.len() as u64).await
}

async fn send(conn: &mut Connection<TcpStream>, bytes: &[u8]) {
    for piece in bytes.chunks(64 * 1024) {
        conn.send_frame(piece).await.expect("upload frame");
    }
    conn.flush().await.expect("flush");
}

/// Files in the embedded master's spool that hold tasks' own bytes.
fn chunk_spools(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("spool"))
        .expect("the spool directory")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".chunks"))
        .collect()
}

fn workers_start_before_the_upload_ends(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    let embedded = matches!(backend, Backend::Embedded);
    if embedded {
        // On the master's host: it reads the genome's blocks from the file being written.
        let dir = grid.data_dir().join("spool").join("genomes");
        grid.start_worker_with("w1", 2, &["--genome-dir", &dir.display().to_string()]);
    } else {
        grid.start_worker("w1", 2);
    }
    // Three blocks of bases and some: the first blocks are stored while the rest is unsent.
    let records = genome(33, 14 << 20);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let upload = std::fs::read(&file).expect("fixture");
    let split = upload.len() * 3 / 4;
    let runtime = runtime();
    let mut conn = runtime.block_on(async {
        let mut conn = begin_raw_submit(&grid, "early", &upload).await;
        send(&mut conn, &upload[..split]).await;
        conn
    });
    // Event: a chunk's result is stored while a quarter of the upload has not even been sent.
    let status = wait_for("a task of the uploading job to finish", JOB_TIMEOUT, || {
        let status = grid.status("early");
        let done = status["job"]["progress"]["processed_chunks"]
            .as_u64()
            .unwrap_or(0);
        (done > 0).then_some(status)
    });
    assert_eq!(status["job"]["status"], "uploading", "{status}");
    if embedded {
        assert_eq!(chunk_spools(&grid.data_dir()), Vec::<String>::new());
        let [_, sent, in_place] = input_counters(&grid);
        assert!(in_place > 0.0, "a task read in place during the upload");
        assert_eq!(sent, 0.0, "no base sent by the master");
    }
    let reply = runtime.block_on(async {
        send(&mut conn, &upload[split..]).await;
        conn.expect_message().await.expect("a reply")
    });
    assert!(matches!(reply, Message::Accepted { .. }), "{reply:?}");
    grid.wait_finished("early", JOB_TIMEOUT);
    assert_eq!(job_count(&grid, "early"), naive_count(&records, PATTERN));
    if embedded {
        assert_eq!(chunk_spools(&grid.data_dir()), Vec::<String>::new());
        let [enqueued, sent, in_place] = input_counters(&grid);
        assert_eq!(
            (in_place, sent),
            (enqueued, 0.0),
            "every base read in place"
        );
        // The commit renamed the file being written and deleted its block list.
        let dir = grid.data_dir().join("spool").join("genomes");
        let left: Vec<String> = std::fs::read_dir(&dir)
            .expect("the stored genomes' directory")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".partial") || name.ends_with(".blocks"))
            .collect();
        assert_eq!(
            left,
            Vec::<String>::new(),
            "nothing of the upload in progress left"
        );
    }
}

#[test]
fn workers_finish_tasks_while_the_upload_is_still_sending_embedded() {
    workers_start_before_the_upload_ends(Backend::Embedded);
}

#[test]
fn workers_finish_tasks_while_the_upload_is_still_sending_redis() {
    workers_start_before_the_upload_ends(Backend::Redis(RedisServer::start()));
}

#[test]
fn the_same_genome_uploaded_twice_at_once_on_redis_keeps_one_copy() {
    let backend = Backend::Redis(RedisServer::start());
    let Backend::Redis(server) = &backend else {
        unreachable!("a Redis backend")
    };
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 2);
    let records = genome(45, 9 << 20);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let path = file.display().to_string();
    let submits: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|job| {
            Command::new(gridwatch_bin())
                .args(["submit", &path, "-p", PATTERN, "--job-id", job, "--wait"])
                .args(["--master", &grid.addr])
                .env("XDG_CACHE_HOME", grid.path(job))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("a concurrent submit")
        })
        .collect();
    let expected = naive_count(&records, PATTERN);
    for submit in submits {
        let output = submit.wait_with_output().expect("submit output");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            parse_total(&String::from_utf8_lossy(&output.stdout)),
            expected
        );
    }
    let storage = storage_id(&grid);
    let runtime = runtime();
    let mut conn = runtime.block_on(inspector(server));
    // Whichever upload committed second kept its copy as a spare for its job, deleted by the
    // master once that job ended: one copy's keys remain.
    wait_for("one stored copy", JOB_TIMEOUT, || {
        runtime.block_on(async {
            let metas: Vec<String> = conn.keys("genome-storage:*").await.expect("KEYS");
            let spares: u64 = conn.hlen("genome-spares").await.expect("HLEN");
            (metas == vec![format!("genome-storage:{storage}")] && spares == 0).then_some(())
        })
    });
    let blocks: Vec<String> = runtime.block_on(conn.keys("genome:*:*")).expect("KEYS");
    let strays: Vec<&String> = blocks
        .iter()
        .filter(|key| !key.starts_with(&format!("genome:{storage}:")) && !key.ends_with(":jobs"))
        .collect();
    assert!(strays.is_empty(), "blocks of no stored copy: {strays:?}");
}

#[test]
fn a_first_upload_is_hashed_as_it_is_sent_and_a_repeat_announces_the_hash() {
    let backend = Backend::Embedded;
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 2);
    let records = genome(51, 300_000);
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let hash = blake3::hash(&std::fs::read(&file).expect("fixture"))
        .to_hex()
        .to_string();
    let path = file.display().to_string();
    let cache = grid
        .path("cache")
        .join("gridwatch")
        .join("genome-hashes.json");
    assert!(!cache.exists(), "no hash is cached before the first submit");
    let first = cli_ok(
        &grid,
        &["submit", &path, "-p", PATTERN, "--job-id", "one", "--wait"],
    );
    assert_eq!(parse_total(&first), naive_count(&records, PATTERN));
    let cached = std::fs::read_to_string(&cache).expect("the hash cache after the upload");
    assert!(
        cached.contains(&hash),
        "the sent bytes' hash is remembered: {cached}"
    );
    let second = cli_ok(
        &grid,
        &["submit", &path, "-p", PATTERN, "--job-id", "two", "--wait"],
    );
    assert_eq!(parse_total(&second), naive_count(&records, PATTERN));
    let status = grid.status("two");
    assert_eq!(status["job"]["genome_reused"], true, "{status}");
    assert_eq!(status["job"]["uploaded_bytes"], 0, "{status}");
}
