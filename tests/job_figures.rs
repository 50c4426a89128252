//! The figures a grid gives after a fault: a job that finished while the master was down gets
//! its one `job finished` line when the master returns, with the re-deliveries of its tasks
//! counted although the workers took them from Redis directly; and `submit` warns of no active
//! workers when there is none, never while idle workers are there (just started, or a master
//! just restarted beside them).

use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;
use crate::support::wait_for;

const GENEROUS: Duration = Duration::from_secs(120);
const NO_WORKERS: &str = "no active workers";

/// A master on `redis` (or embedded when `None`); workers started later read the same backend.
fn grid_on(redis: Option<&RedisServer>) -> Grid {
    Grid::start_on(redis.map(RedisServer::url).as_deref(), &[])
}

fn genome(grid: &Grid, name: &str, seed: u64, records: usize, len: usize) -> (String, Records) {
    let mut bases = Bases::new(seed);
    let records: Records = (0..records)
        .map(|i| (format!("r{i}"), bases.take(len)))
        .collect();
    let path = grid.path(name);
    write_fasta(&path, &records, 60, "\n");
    (path.display().to_string(), records)
}

fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|client| client.get_connection())
        .expect("connecting to the test redis-server")
}

fn redis_job_status(redis: &RedisServer, job: &str) -> String {
    let status: Option<String> = redis::cmd("GET")
        .arg(format!("job:{job}:status"))
        .query(&mut redis_conn(redis))
        .unwrap_or(None);
    status.unwrap_or_default()
}

/// Deliveries `worker` holds in Redis (its entries in the consumer group's pending lists).
fn pending_under(redis: &RedisServer, worker: &str) -> u64 {
    let mut conn = redis_conn(redis);
    let mut held = 0;
    for stream in ["tasks:high", "tasks:medium", "tasks:low"] {
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(worker)
            .query(&mut conn)
            .unwrap_or(redis::Value::Nil);
        if let redis::Value::Array(entries) = pending {
            held += entries.len() as u64;
        }
    }
    held
}

/// The `job finished` lines of every master log so far, by job: (job, retries).
fn job_finished_lines(grid: &Grid) -> Vec<(String, u64)> {
    grid.master_logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "job finished")
        .map(|line| {
            let job = line["fields"]["job"].as_str().unwrap_or("").to_string();
            (job, line["fields"]["retries"].as_u64().unwrap_or(u64::MAX))
        })
        .collect()
}

fn assert_exact_count(grid: &Grid, job: &str, records: &Records, pattern: &str) {
    let status = grid.wait_finished(job, GENEROUS);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = naive_hits(records, pattern, false).len() as u64;
    assert_eq!(parse_total(&grid.cli_ok(&["results", job])), expected);
}

/// Starts worker `id` and waits until it says it started (it has greeted the master, or claimed
/// its id in Redis): from then on it is an active worker.
fn start_worker(grid: &mut Grid, id: &str, threads: usize) {
    grid.start_worker(id, threads);
    let log = grid.path(&format!("{id}.log"));
    wait_for("the worker to start", GENEROUS, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("worker started").then_some(())
    });
}

/// Submits without waiting; returns the client's stderr.
fn submit(grid: &Grid, file: &str, job: &str) -> String {
    let out = grid.cli(&["submit", file, "-p", "ACGTAC", "--job-id", job]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "submit {job}: {stderr}");
    stderr
}

/// No worker: the warning. Two idle workers just started: none, at once (the master need not
/// have noticed them yet on its own). Every job then runs exact.
fn warns_only_without_workers(redis: Option<&RedisServer>) -> Grid {
    let mut grid = grid_on(redis);
    let (file, records) = genome(&grid, "small.fa", 21, 2, 50_000);
    let stderr = submit(&grid, &file, "alone");
    assert!(
        stderr.contains(NO_WORKERS),
        "no worker runs, yet no warning:\n{stderr}"
    );
    start_worker(&mut grid, "w1", 1);
    start_worker(&mut grid, "w2", 1);
    assert_exact_count(&grid, "alone", &records, "ACGTAC");
    let stderr = submit(&grid, &file, "with-idle");
    assert!(
        !stderr.contains(NO_WORKERS),
        "two idle workers run, yet:\n{stderr}"
    );
    assert_exact_count(&grid, "with-idle", &records, "ACGTAC");
    grid
}

#[test]
fn submit_warns_of_no_workers_only_while_none_is_active() {
    warns_only_without_workers(None);
}

#[test]
fn submit_on_redis_warns_of_no_workers_only_while_none_is_active_also_after_a_master_restart() {
    let redis = RedisServer::start();
    let mut grid = warns_only_without_workers(Some(&redis));
    // The workers kept running on Redis while the master was away: a submit to the new master
    // right away must not call them missing.
    if let Some(mut master) = grid.master.take() {
        master.kill9();
    }
    grid.start_master();
    let (file, records) = genome(&grid, "again.fa", 22, 2, 50_000);
    let stderr = submit(&grid, &file, "after-restart");
    assert!(
        !stderr.contains(NO_WORKERS),
        "two idle workers run beside the restarted master, yet:\n{stderr}"
    );
    assert_exact_count(&grid, "after-restart", &records, "ACGTAC");
}

/// A job ends while the master is down, after one of its workers was killed with its leases
/// and restarted at once (so those tasks were delivered again, straight from Redis): the master
/// coming back logs its end once, with the re-deliveries counted, and does not log again the
/// end of a job it logged before it went down.
#[test]
fn a_job_finished_while_the_master_was_down_is_logged_on_its_return_with_its_redeliveries() {
    let redis = RedisServer::start();
    let mut grid = grid_on(Some(&redis));
    start_worker(&mut grid, "w1", 2);
    start_worker(&mut grid, "w2", 1);
    let (small, small_records) = genome(&grid, "small.fa", 23, 1, 20_000);
    submit(&grid, &small, "before");
    assert_exact_count(&grid, "before", &small_records, "ACGTAC");
    wait_for("the first job's end logged", GENEROUS, || {
        job_finished_lines(&grid)
            .iter()
            .any(|(job, _)| job == "before")
            .then_some(())
    });

    let (file, records) = genome(&grid, "large.fa", 24, 3, 2_000_000);
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "ACGTAC",
        "--chunk-size",
        "2000",
        "--job-id",
        "away",
    ]);
    wait_for("w1 to hold leases of the job", GENEROUS, || {
        (pending_under(&redis, "w1") > 0).then_some(())
    });
    if let Some(mut master) = grid.master.take() {
        master.kill9();
    }
    grid.worker("w1").kill9();
    let lost = pending_under(&redis, "w1");
    assert_ne!(
        redis_job_status(&redis, "away"),
        "completed",
        "the faults came too late to prove anything"
    );
    assert!(lost > 0, "w1 held no lease when killed");
    grid.workers.retain(|(id, _)| id != "w1");
    start_worker(&mut grid, "w1", 2);
    wait_for("the workers to complete the job", GENEROUS, || {
        (redis_job_status(&redis, "away") == "completed").then_some(())
    });
    assert!(
        grid.master.is_none(),
        "the job ended while the master was down"
    );

    grid.start_master();
    let away = wait_for("the end logged by the returning master", GENEROUS, || {
        job_finished_lines(&grid)
            .into_iter()
            .find(|(job, _)| job == "away")
    });
    // Every task the killed worker held was leased once more: a stored result is acked in the
    // same step, so none of them was done already.
    assert_eq!(
        away.1, lost,
        "retries of the job, against the leases w1 lost"
    );
    assert_exact_count(&grid, "away", &records, "ACGTAC");
    let lines = job_finished_lines(&grid);
    for job in ["before", "away"] {
        let count = lines.iter().filter(|(logged, _)| logged == job).count();
        assert_eq!(count, 1, "job {job} logged {count} times: {lines:?}");
    }
}
