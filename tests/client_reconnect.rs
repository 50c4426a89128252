//! Clients ride out a master restart: `submit --wait` and `status --wait`, started before the
//! master is killed with -9 and restarted on the same address and data directory, reconnect
//! with backoff and print the exact result.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const PATTERN: &str = "TTAGGC";

fn client(grid: &Grid, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .args(["--master", &grid.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the client")
}

/// Chunks done, once the upload is over (chunks run while it streams too).
fn processed(grid: &Grid, job: &str) -> Option<u64> {
    let output = grid.cli(&["status", job, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    if status["job"]["status"] == "uploading" {
        return None;
    }
    status["job"]["progress"]["processed_chunks"].as_u64()
}

#[test]
fn submit_wait_and_status_wait_print_the_exact_result_across_a_master_restart() {
    let mut grid = Grid::start(&[]);
    let mut bases = Bases::new(41);
    let records: Records = (0..3)
        .map(|i| (format!("r{i}"), bases.take(3_000_000)))
        .collect();
    let path = grid.path("big.fa");
    write_fasta(&path, &records, 60, "\n");
    let expected = naive_hits(&records, PATTERN, false).len() as u64;
    grid.start_worker("w1", 1);

    let file = path.display().to_string();
    let submit = client(
        &grid,
        &[
            "submit",
            &file,
            "-p",
            PATTERN,
            "--chunk-size",
            "5000",
            "--job-id",
            "ride",
            "--wait",
        ],
    );
    crate::support::wait_for("the job accepted and under way", JOB_TIMEOUT, || {
        processed(&grid, "ride").filter(|done| *done > 0)
    });
    let status = client(&grid, &["status", "ride", "--wait", "--json"]);
    if let Some(master) = grid.master.as_mut() {
        master.kill9();
    }
    grid.master = None;
    grid.start_master();

    let submitted = submit.wait_with_output().expect("submit ends");
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert!(submitted.status.success(), "submit --wait failed: {stderr}");
    assert!(stderr.contains("reconnected to the master"), "{stderr}");
    let stdout = String::from_utf8_lossy(&submitted.stdout);
    assert_eq!(parse_total(&stdout), expected, "{stdout}");

    let followed = status.wait_with_output().expect("status ends");
    let stderr = String::from_utf8_lossy(&followed.stderr);
    assert!(followed.status.success(), "status --wait failed: {stderr}");
    let view: serde_json::Value =
        serde_json::from_slice(&followed.stdout).expect("status --json prints JSON");
    assert_eq!(view["job"]["status"], "completed", "{view}");
    assert_eq!(view["job"]["partial_results"]["matches_found"], expected);
    assert!(
        grid.master_logs().contains("resuming unfinished jobs"),
        "the master was killed mid-job"
    );
}
