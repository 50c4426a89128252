//! A worker that leases ahead (`--prefetch`) and settles results in batches, with real master and
//! worker processes: stopped with SIGTERM mid-job it finishes every task it leased, leaving no
//! lease behind, and the job completes with the brute-force count; a many-tiny-task job on a
//! prefetching worker gives exact positions.

use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid};
use crate::support::wait_for;
use nix::sys::signal::Signal;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn done_chunks(grid: &Grid, job: &str) -> u64 {
    grid.status(job)["job"]["progress"]["processed_chunks"]
        .as_u64()
        .unwrap_or(0)
}

/// Leases the embedded master's database still shows for `worker`.
fn leases_held_by(grid: &Grid, worker: &str) -> i64 {
    let db = rusqlite::Connection::open(grid.data_dir().join("gridwatch.db")).expect("open db");
    db.query_row(
        "SELECT COUNT(*) FROM tasks WHERE worker = ?1 AND state = 'leased'",
        [worker],
        |row| row.get(0),
    )
    .expect("count leases")
}

#[test]
fn sigterm_finishes_prefetched_tasks_and_loses_none() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--prefetch".into(), "8".into()];
    grid.start_worker("w1", 2);
    let records = vec![("chr1".to_string(), Bases::new(11).take(600_000))];
    let path = grid.path("many.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    // 100-base chunks: 6,000 tasks of a few microseconds each, where leasing ahead matters.
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "ACGTAC",
        "--chunk-size",
        "100",
        "--job-id",
        "tiny",
    ]);
    wait_for("w1 to store some results", JOB_TIMEOUT, || {
        (done_chunks(&grid, "tiny") > 50).then_some(())
    });
    let w1 = grid.worker("w1");
    w1.signal(Signal::SIGTERM);
    let exit = w1
        .wait_exit(JOB_TIMEOUT)
        .expect("w1 did not stop after SIGTERM");
    let log = std::fs::read_to_string(grid.path("w1.log")).unwrap_or_default();
    assert!(exit.success(), "w1 did not stop cleanly: {exit:?}\n{log}");
    assert!(log.contains("worker stopped"), "{log}");
    // Every task w1 leased (running or waiting in its buffer) was finished and acked.
    assert_eq!(leases_held_by(&grid, "w1"), 0, "w1 left leases behind");
    let done = done_chunks(&grid, "tiny");
    assert!(done < 6000, "the stop came too late to prove anything");

    grid.start_worker("w2", 2);
    let status = grid.wait_finished("tiny", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = naive_hits(&records, "ACGTAC", false);
    let count = grid.cli_ok(&["results", "tiny"]);
    assert_eq!(parse_total(&count), expected.len() as u64);
    let tsv = grid.cli_ok(&["results", "tiny", "--format", "tsv"]);
    assert_eq!(parse_tsv(&tsv), expected);
}
