//! Retention with real processes, on both backends: `gridwatch prune` deletes finished jobs and
//! gives their space back (the data directory's disk use, or Redis's `used_memory`, returns to
//! what it was before the jobs), while a job still queued keeps everything; `--keep-finished`
//! deletes a finished job in the background.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::grid::{write_fasta, Bases, Grid};
use crate::support::redis::RedisServer;
use crate::support::wait_for;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// Bases of the uploaded genome: large enough that its space stands out from page-size noise.
const GENOME_BASES: usize = 12 << 20;

/// Bytes allocated on disk under `dir`, every file counted (as `du` does).
fn disk_use(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read the data dir").flatten() {
        let meta = entry.metadata().expect("file metadata");
        total += if meta.is_dir() {
            disk_use(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

/// Redis's `used_memory`, as `INFO memory` reports it.
fn redis_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut conn)
        .expect("INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// Whether the master still knows `job`.
fn job_exists(grid: &Grid, job: &str) -> bool {
    let out = grid.cli_ok(&["jobs", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).expect("jobs --json prints JSON");
    listed["jobs"]
        .as_array()
        .expect("a jobs list")
        .iter()
        .any(|j| j["job_id"] == job)
}

/// Runs the scenario with `measure` reading the storage's size; returns (baseline, peak, after).
fn prune_returns_storage_to_its_baseline(mut grid: Grid, measure: impl Fn() -> u64) {
    // The baseline is a grid that has already run and pruned a job, so that what the backend
    // sets up once (scripts, consumer groups, buffers sized by a first upload) is in it; any
    // growth left after the prune below is then per job, which is what must not stay.
    grid.start_worker("w1", 1);
    let warmup = grid.path("warmup.fa");
    write_fasta(
        &warmup,
        &[("chr0".into(), Bases::new(3).take(GENOME_BASES))],
        80,
        "\n",
    );
    let warmup = warmup.display().to_string();
    grid.cli_ok(&[
        "submit", "search", &warmup, "-p", "ACGTACGT", "--job-id", "warmup", "--wait",
    ]);
    grid.cli_ok(&["prune"]);
    assert!(!job_exists(&grid, "warmup"));
    grid.workers.clear();
    let baseline = measure();
    // A genome uploaded while no worker runs: the job stays queued with its input stored.
    let genome = grid.path("genome.fa");
    let bases = Bases::new(7).take(GENOME_BASES);
    write_fasta(&genome, &[("chr1".into(), bases)], 80, "\n");
    let file = genome.display().to_string();
    grid.cli_ok(&[
        "submit", "search", &file, "-p", "ACGTACGT", "--job-id", "queued",
    ]);
    let with_upload = measure();
    // A stored genome takes a quarter of a byte a base, packed; an eighth is the floor.
    assert!(
        with_upload > baseline + (GENOME_BASES as u64) / 8,
        "the upload should take space: {baseline} -> {with_upload}"
    );
    // Prune never touches a job that is not finished.
    let kept: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["prune", "--json"])).expect("prune --json");
    assert_eq!(kept["job_ids"], serde_json::json!([]), "{kept}");
    assert!(job_exists(&grid, "queued"));
    assert!(measure() > baseline + (GENOME_BASES as u64) / 8);

    // Cancelled, and a completed render with large results beside it.
    grid.cli_ok(&["cancel", "queued"]);
    grid.start_worker("w2", 1);
    grid.cli_ok(&[
        "submit",
        "julia",
        "--width",
        "400",
        "--height",
        "400",
        "--iterations",
        "50",
        "--job-id",
        "render",
    ]);
    grid.wait_finished("render", JOB_TIMEOUT);
    let peak = measure();

    let report: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["prune", "--json"])).expect("prune --json");
    let mut pruned: Vec<String> = report["job_ids"]
        .as_array()
        .expect("job ids")
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_string())
        .collect();
    pruned.sort();
    assert_eq!(pruned, ["queued", "render"], "{report}");
    assert!(!job_exists(&grid, "queued") && !job_exists(&grid, "render"));
    // Redis gives connection buffers back on its own timer (a second or so): wait for that,
    // rather than for any particular time.
    let slack = 256 * 1024;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = measure();
    while after > baseline + slack && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = measure();
    }
    eprintln!("storage: baseline {baseline}, with the jobs {peak}, after prune {after}; reported freed {}", report["bytes_freed"]);
    assert!(
        after <= baseline + slack,
        "storage after prune {after} is not back to its baseline {baseline} (peak {peak})"
    );
    // The master measures around its own deletes; connection buffers make Redis's figure only
    // roughly the test's, so only its sign is checked here.
    let freed = report["bytes_freed"].as_u64().expect("bytes_freed");
    assert!(freed > 0, "{report}");
    grid.workers.clear();
}

#[test]
fn prune_returns_the_embedded_data_dir_to_its_baseline() {
    let grid = Grid::start(&[]);
    let data = grid.data_dir();
    prune_returns_storage_to_its_baseline(grid, || disk_use(&data));
}

#[test]
fn prune_returns_redis_memory_to_its_baseline() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grid = Grid::start_on(Some(&url), &[]);
    prune_returns_storage_to_its_baseline(grid, || redis_memory(&url));
}

#[test]
fn keep_finished_deletes_a_finished_job_in_the_background() {
    let mut grid = Grid::start(&["--keep-finished", "2s"]);
    grid.start_worker("w1", 1);
    grid.cli_ok(&[
        "submit",
        "julia",
        "--width",
        "40",
        "--height",
        "30",
        "--iterations",
        "20",
        "--job-id",
        "short-lived",
        "--wait",
    ]);
    assert!(job_exists(&grid, "short-lived"));
    wait_for(
        "the sweep to delete the job",
        Duration::from_secs(30),
        || (!job_exists(&grid, "short-lived")).then_some(()),
    );
    assert!(grid.master_logs().contains("pruned finished jobs"));
}
