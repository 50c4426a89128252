//! The grid end to end on Redis: a real `redis-server`, master and worker processes started with
//! `--backend redis://...`, checked against a brute-force matcher. Covers exact positions, a
//! worker killed mid-job, the master stopped while workers keep draining the queue, and Redis
//! restarted (with its append-only file) mid-job. After every job the task streams are empty and
//! no chunk bytes remain in Redis.

use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;
use crate::support::wait_for;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// A master and no workers yet, both sides configured for `redis`.
fn grid_on(redis: &RedisServer, master_flags: &[&str]) -> Grid {
    Grid::start_on(Some(&redis.url()), master_flags)
}

fn genome(grid: &Grid, seed: u64, records: usize, len: usize) -> (String, Records) {
    let mut bases = Bases::new(seed);
    let records: Records = (0..records)
        .map(|i| (format!("r{i}"), bases.take(len)))
        .collect();
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    (path.display().to_string(), records)
}

fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|client| client.get_connection())
        .expect("connecting to the test redis-server")
}

/// `job:{id}:status` and `chunks_processed`, read from Redis itself (works with no master).
fn redis_job_state(redis: &RedisServer, job: &str) -> (String, u64) {
    let mut conn = redis_conn(redis);
    let status: Option<String> = redis::cmd("GET")
        .arg(format!("job:{job}:status"))
        .query(&mut conn)
        .unwrap_or(None);
    let done: Option<u64> = redis::cmd("HGET")
        .arg(format!("job:{job}:stats"))
        .arg("chunks_processed")
        .query(&mut conn)
        .unwrap_or(None);
    (status.unwrap_or_default(), done.unwrap_or(0))
}

/// No task entries (acked or not) in any stream, and no chunk bytes or task refs of `job`.
fn assert_redis_is_clean(redis: &RedisServer, job: &str) {
    let mut conn = redis_conn(redis);
    for stream in ["tasks:high", "tasks:medium", "tasks:low"] {
        let len: u64 = redis::cmd("XLEN").arg(stream).query(&mut conn).unwrap();
        assert_eq!(len, 0, "{stream} still holds {len} entries");
    }
    for key in [format!("job:{job}:chunks"), format!("job:{job}:tasks")] {
        let exists: bool = redis::cmd("EXISTS").arg(&key).query(&mut conn).unwrap();
        assert!(!exists, "{key} still exists");
    }
}

fn submit(grid: &Grid, file: &str, pattern: &str, job: &str, chunk_size: &str) {
    grid.cli_ok(&[
        "submit",
        file,
        "-p",
        pattern,
        "--chunk-size",
        chunk_size,
        "--job-id",
        job,
    ]);
}

fn wait_first_chunk(redis: &RedisServer, job: &str) {
    wait_for("a first chunk result", JOB_TIMEOUT, || {
        (redis_job_state(redis, job).1 > 0).then_some(())
    });
}

fn assert_exact_count(grid: &Grid, job: &str, records: &Records, pattern: &str) {
    let status = grid.wait_finished(job, JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = naive_hits(records, pattern, false).len() as u64;
    assert_eq!(parse_total(&grid.cli_ok(&["results", job])), expected);
}

#[test]
fn redis_grid_gives_exact_positions_and_leaves_nothing_behind() {
    let redis = RedisServer::start();
    let mut grid = grid_on(&redis, &[]);
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 1);
    let (file, records) = genome(&grid, 11, 3, 200_003);
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "GATTACA",
        "--strand",
        "both",
        "--chunk-size",
        "7000",
        "--job-id",
        "exact",
        "--wait",
    ]);
    let tsv = grid.cli_ok(&["results", "exact", "--format", "tsv"]);
    assert_eq!(parse_tsv(&tsv), naive_hits(&records, "GATTACA", true));
    assert_redis_is_clean(&redis, "exact");
    // The workers never talked to the master, yet it counts them as active.
    wait_for("the master to see both workers", JOB_TIMEOUT, || {
        (grid.status("exact")["active_workers"].as_u64() == Some(2)).then_some(())
    });
}

#[test]
fn worker_killed_mid_job_on_redis_still_gives_the_exact_result() {
    let redis = RedisServer::start();
    let mut grid = grid_on(&redis, &["--visibility-timeout", "1"]);
    let (file, records) = genome(&grid, 12, 4, 1_000_000);
    grid.start_worker("w1", 4);
    submit(&grid, &file, "ACGTAC", "k9", "5000");
    wait_first_chunk(&redis, "k9");
    grid.worker("w1").kill9();
    let (status, _) = redis_job_state(&redis, "k9");
    assert_ne!(
        status, "completed",
        "the kill came too late to prove anything"
    );
    grid.start_worker("w2", 2);
    assert_exact_count(&grid, "k9", &records, "ACGTAC");
    // The job can complete before the sweep runs: a chunk whose result w1 stored but never
    // acked needs no redelivery to be counted, yet its lease stays w1's until the sweep returns
    // it and w2 settles it. So wait for w1 to hold nothing and the streams to be empty.
    wait_for(
        "w1's leases to be reclaimed and settled",
        JOB_TIMEOUT,
        || {
            let mut conn = redis_conn(&redis);
            let mut left = 0u64;
            for stream in ["tasks:high", "tasks:medium", "tasks:low"] {
                left += redis::cmd("XLEN")
                    .arg(stream)
                    .query::<u64>(&mut conn)
                    .unwrap_or(1);
                let pending: redis::Value = redis::cmd("XPENDING")
                    .arg(stream)
                    .arg("workers")
                    .arg("-")
                    .arg("+")
                    .arg(100)
                    .arg("w1")
                    .query(&mut conn)
                    .unwrap_or(redis::Value::Nil);
                if let redis::Value::Array(entries) = pending {
                    left += entries.len() as u64;
                }
            }
            (left == 0).then_some(())
        },
    );
    assert_redis_is_clean(&redis, "k9");
}

#[test]
fn workers_finish_the_job_while_the_master_is_stopped() {
    let redis = RedisServer::start();
    let mut grid = grid_on(&redis, &[]);
    let (file, records) = genome(&grid, 13, 3, 1_000_000);
    grid.start_worker("w1", 2);
    submit(&grid, &file, "TTAGGC", "away", "5000");
    wait_first_chunk(&redis, "away");
    if let Some(mut master) = grid.master.take() {
        master.kill9();
    }
    let (status, _) = redis_job_state(&redis, "away");
    assert_ne!(
        status, "completed",
        "the master stopped too late to prove anything"
    );
    // Nobody but the workers and Redis is left: the job must still complete.
    wait_for("the workers to complete the job", JOB_TIMEOUT, || {
        (redis_job_state(&redis, "away").0 == "completed").then_some(())
    });
    grid.start_master();
    assert_exact_count(&grid, "away", &records, "TTAGGC");
    assert_redis_is_clean(&redis, "away");
}

#[test]
fn redis_restarted_with_aof_mid_job_gives_the_exact_result() {
    let mut redis = RedisServer::start_with_aof();
    // A lease whose reply the restart swallowed is held by nobody: the visibility timeout (short
    // here, with workers extending often) is what brings it back.
    let mut grid = grid_on(&redis, &["--visibility-timeout", "2"]);
    grid.worker_flags
        .extend(["--extend-interval".to_string(), "0.5".to_string()]);
    let (file, records) = genome(&grid, 14, 3, 1_000_000);
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 1);
    submit(&grid, &file, "CCGATA", "bounce", "5000");
    wait_first_chunk(&redis, "bounce");
    redis.restart();
    let (status, _) = redis_job_state(&redis, "bounce");
    assert_ne!(
        status, "completed",
        "redis restarted too late to prove anything"
    );
    assert_exact_count(&grid, "bounce", &records, "CCGATA");
    assert_redis_is_clean(&redis, "bounce");
}

/// A worker stopped cleanly (SIGTERM) gives its id up in Redis before it exits, so a worker
/// started under that id anywhere takes it at once instead of waiting for the claim to lapse.
#[test]
fn a_worker_stopped_cleanly_frees_its_id_in_redis_before_it_exits() {
    let redis = RedisServer::start();
    let mut grid = grid_on(&redis, &[]);
    grid.start_worker("w1", 1);
    let owner = |conn: &mut redis::Connection| -> bool {
        redis::cmd("EXISTS")
            .arg("worker:w1:owner")
            .query(conn)
            .unwrap_or(false)
    };
    let mut conn = redis_conn(&redis);
    wait_for("w1 to claim its id", JOB_TIMEOUT, || {
        owner(&mut conn).then_some(())
    });
    let worker = grid.worker("w1");
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let status = worker.wait_exit(JOB_TIMEOUT).expect("w1 exits on SIGTERM");
    assert!(status.success(), "w1 exit status {status}");
    assert!(
        !owner(&mut conn),
        "w1 exited cleanly but its id is still claimed"
    );
}

/// Idle workers blocked on an empty Redis queue lease nothing, yet they are there: the master
/// counts them as active for as long as they live, and `submit` does not warn of no workers.
#[test]
fn idle_workers_on_redis_count_as_active() {
    let redis = RedisServer::start();
    let mut grid = grid_on(&redis, &[]);
    grid.start_worker("w1", 1);
    grid.start_worker("w2", 1);
    let active = |grid: &Grid| -> u64 {
        let jobs: serde_json::Value =
            serde_json::from_str(&grid.cli_ok(&["jobs", "--json"])).expect("jobs --json");
        jobs["active_workers"].as_u64().unwrap_or(0)
    };
    wait_for("both workers active", JOB_TIMEOUT, || {
        (active(&grid) == 2).then_some(())
    });
    // Longer than the window in which a lease counts as a sign of life: only the claim
    // renewals keep idle workers counted.
    let watch_until = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < watch_until {
        assert_eq!(active(&grid), 2, "an idle live worker stopped counting");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (file, records) = genome(&grid, 11, 2, 50_000);
    let out = grid.cli(&["submit", &file, "-p", "ACGTAC", "--job-id", "idle-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("no active workers"), "{stderr}");
    assert_exact_count(&grid, "idle-1", &records, "ACGTAC");
}
