//! The honest job every attack test ends with: a tiny Julia render whose pixels and iterations
//! sum are checked against the reference loop written out in the tests' support helpers.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use crate::support::grid::Grid;
use crate::support::julia::{reference, Spec};
use crate::support::redis::RedisServer;
use crate::support::wait_for;

/// The render of [`CSV_ROW`].
pub const SPEC: (u32, u32, u32) = (24, 16, 60);

/// A CSV batch file holding that one render (Julia's default constant c).
pub const CSV_ROW: &str = "algoritmo,width,height,iteraciones,prioridad\nSecuencial,24,16,60,1\n";

/// How long a tiny job may take on a slow machine.
pub const JOB_WAIT: Duration = Duration::from_secs(120);

/// A master with `flags` on the embedded backend, or on a fresh Redis (kept alive by the handle;
/// workers started later use it too).
pub fn grid(redis: bool, flags: &[&str]) -> (Grid, Option<RedisServer>) {
    grid_in(tempfile::tempdir().expect("temp dir"), redis, flags)
}

/// As [`grid`], in `dir` (see [`Grid::start_in`]).
fn grid_in(dir: TempDir, redis: bool, flags: &[&str]) -> (Grid, Option<RedisServer>) {
    let server = redis.then(RedisServer::start);
    let url = server.as_ref().map(RedisServer::url);
    let mut all: Vec<&str> = flags.to_vec();
    if let Some(url) = &url {
        all.extend(["--backend", url.as_str()]);
    }
    let mut grid = Grid::start_in(dir, &all);
    if let Some(url) = url {
        grid.worker_flags = vec!["--backend".into(), url];
    }
    (grid, server)
}

/// A master watching the drop directory `queue/` inside its own temporary directory (removed
/// with the grid) every `poll`, with `extra` flags, on the embedded backend or a fresh Redis;
/// returned once the master has made the directory's `failed/` and `processed/`.
pub fn watching(redis: bool, poll: &str, extra: &[&str]) -> (Grid, Option<RedisServer>, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let drop = dir.path().join("queue");
    let drop_flag = drop.display().to_string();
    let mut flags = vec!["--drop-dir", drop_flag.as_str(), "--drop-poll", poll];
    flags.extend_from_slice(extra);
    let (grid, server) = grid_in(dir, redis, &flags);
    wait_for("the drop directory", JOB_WAIT, || {
        (drop.join("failed").is_dir() && drop.join("processed").is_dir()).then_some(())
    });
    (grid, server, drop)
}

/// Ids of the grid's jobs.
pub fn job_ids(grid: &Grid) -> Vec<String> {
    let out = grid.cli_ok(&["jobs", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&out).expect("jobs --json prints JSON");
    value["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .filter_map(|job| job["job_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for `job` (a render of [`SPEC`]) to complete and checks every pixel and the iterations
/// sum against the reference loop.
pub fn assert_exact(grid: &Grid, job: &str) {
    let status = grid.wait_finished(job, JOB_WAIT);
    assert_eq!(status["job"]["status"], "completed", "{job}: {status}");
    let (width, height, iterations) = SPEC;
    let (columns, rows, expected) = reference(Spec::classic(width, height, iterations));
    let counts = grid.cli_ok(&["results", job, "--format", "counts"]);
    let got: Vec<Vec<u32>> = counts
        .lines()
        .map(|line| {
            line.split('\t')
                .map(|n| n.parse().expect("a count"))
                .collect()
        })
        .collect();
    assert_eq!(got.len(), rows, "{job}: rows");
    assert!(got.iter().all(|row| row.len() == columns), "{job}: columns");
    assert_eq!(got.concat(), expected, "{job}: pixels");
    let summary: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["results", job, "--json"])).expect("JSON summary");
    let sum: u64 = expected.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(summary["iterations_sum"], sum, "{job}: {summary}");
}
