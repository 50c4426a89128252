//! A master cut off from Redis (a real redis-server SIGSTOPped: its sockets stay open, nothing
//! answers) fails client requests that need the backend with a clear error within seconds, logs
//! the outage once and its end once, and serves again as soon as Redis answers.

use std::time::{Duration, Instant};

use crate::support::grid::{write_fasta, Bases, Grid};
use crate::support::redis::RedisServer;
use crate::support::wait_for;
use nix::sys::signal::Signal;

/// The goal is under 5 s; this bound only catches a request that hangs, not a loaded machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// Runs `gridwatch ARGS` and returns (success, stderr, elapsed).
fn timed(grid: &Grid, args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let output = grid.cli(args);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr, elapsed)
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn status_and_workers_fail_fast_and_clearly_while_redis_is_stopped_then_work_again() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grid = Grid::start(&["--backend", &url]);
    let path = grid.path("small.fa");
    write_fasta(
        &path,
        &[("r0".into(), Bases::new(5).take(20_000))],
        60,
        "\n",
    );
    grid.cli_ok(&[
        "submit",
        &path.display().to_string(),
        "-p",
        "ACGTAC",
        "--job-id",
        "cut",
    ]);
    grid.cli_ok(&["status", "cut"]);

    redis.signal(Signal::SIGSTOP);
    for args in [&["status", "cut"][..], &["workers"], &["status", "cut"]] {
        let (ok, stderr, elapsed) = timed(&grid, args);
        println!(
            "gridwatch {args:?} with Redis stopped: failed after {:.3} s",
            elapsed.as_secs_f64()
        );
        assert!(!ok, "{args:?} succeeded without Redis");
        assert!(
            stderr.contains("backend did not answer") && stderr.contains("Redis"),
            "{args:?}: {stderr}"
        );
        assert!(elapsed < GENEROUS, "{args:?} took {elapsed:?}");
    }

    redis.signal(Signal::SIGCONT);
    wait_for("status to work again", GENEROUS, || {
        timed(&grid, &["status", "cut"]).0.then_some(())
    });
    let logs = grid.master_logs();
    assert_eq!(
        count(&logs, "the backend is not answering"),
        1,
        "one line for the outage, not one per call: {logs}"
    );
    assert_eq!(count(&logs, "the backend answers again"), 1, "{logs}");
}
