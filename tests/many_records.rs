//! Many short records: a FASTA of 300,000 records of 10 bases would be 300,000 one-record
//! tasks, far past what a job may hold; short records share tasks instead, a chunk's worth each.
//! Each record is still searched on its own (no match crosses into the next record), so the TSV
//! equals a naive scan record by record, on the embedded backend and on Redis.

use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;

const JOB_TIMEOUT: Duration = Duration::from_secs(600);
const RECORDS: usize = 300_000;
const RECORD_LEN: usize = 10;
const CHUNK: u64 = 100_000;

fn records() -> Records {
    let mut bases = Bases::new(23);
    (0..RECORDS)
        .map(|i| (format!("r{i}"), bases.take(RECORD_LEN)))
        .collect()
}

fn run(grid: &mut Grid) {
    grid.start_worker("w1", 2);
    let records = records();
    let path = grid.path("short.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    let chunk = CHUNK.to_string();
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "ACG",
        "--strand",
        "both",
        "--chunk-size",
        &chunk,
        "--job-id",
        "short",
    ]);
    let status = grid.wait_finished("short", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");

    let bases = (RECORDS * RECORD_LEN) as u64;
    let tasks = status["job"]["progress"]["total_chunks"]
        .as_u64()
        .expect("total_chunks");
    assert!(
        tasks <= bases.div_ceil(CHUNK) + 2,
        "{tasks} tasks for {bases} bases in chunks of {CHUNK}"
    );

    let expected = naive_hits(&records, "ACG", true);
    assert!(expected.len() > 10_000, "the fixture should have matches");
    let count = grid.cli_ok(&["results", "short"]);
    assert_eq!(parse_total(&count), expected.len() as u64);
    assert_eq!(
        status["job"]["partial_results"]["matches_found"],
        expected.len() as u64
    );
    let tsv = grid.cli_ok(&["results", "short", "--format", "tsv"]);
    assert_eq!(parse_tsv(&tsv), expected);
}

#[test]
fn three_hundred_thousand_short_records_share_tasks_and_match_a_naive_scan() {
    let mut grid = Grid::start(&[]);
    run(&mut grid);
}

#[test]
fn three_hundred_thousand_short_records_share_tasks_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    run(&mut grid);
}
