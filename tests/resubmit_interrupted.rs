//! Resubmitting the id of an upload cut off by a master killed with -9 restarts that upload
//! from scratch and gives the exact result, instead of refusing the id.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;
use crate::support::wait_for;

const PATTERN: &str = "GATTACA";

fn job_status(grid: &Grid, job: &str) -> Option<String> {
    let output = grid.cli(&["status", job, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    status["job"]["status"].as_str().map(str::to_string)
}

#[test]
fn an_upload_cut_off_by_a_master_kill_restarts_under_the_same_id() {
    cut_off_and_resubmit(Grid::start(&[]));
}

#[test]
fn with_redis_an_upload_cut_off_by_a_master_kill_restarts_under_the_same_id() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grid = Grid::start_on(Some(&url), &[]);
    cut_off_and_resubmit(grid);
}

fn cut_off_and_resubmit(mut grid: Grid) {
    let mut bases = Bases::new(77);
    // Large enough that the upload is still streaming when the master is killed.
    let records: Records = (0..3)
        .map(|i| (format!("r{i}"), bases.take(40_000_000)))
        .collect();
    let path = grid.path("big.fa");
    write_fasta(&path, &records, 60, "\n");
    let expected = naive_hits(&records, PATTERN, false).len() as u64;
    let file = path.display().to_string();

    let upload = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(["submit", &file, "-p", PATTERN, "--job-id", "again"])
        .args(["--master", &grid.addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn submit");
    wait_for("the upload under way", Duration::from_secs(60), || {
        (job_status(&grid, "again")? == "uploading").then_some(())
    });
    if let Some(master) = grid.master.as_mut() {
        master.kill9();
    }
    grid.master = None;
    let cut = upload.wait_with_output().expect("submit ends");
    assert!(!cut.status.success(), "the upload was cut off");
    grid.start_master();
    let left = job_status(&grid, "again").expect("the job is known");
    assert!(
        left == "failed" || left == "uploading",
        "an interrupted upload is left {left}"
    );

    grid.start_worker("w1", 2);
    let out = grid.cli_ok(&[
        "submit", &file, "-p", PATTERN, "--job-id", "again", "--wait",
    ]);
    assert_eq!(parse_total(&out), expected, "{out}");
    assert!(grid
        .master_logs()
        .contains("restarting an interrupted upload"));
}
