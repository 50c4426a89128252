//! Command inputs on a real grid, on both backends: a 50 MiB input used by 12 tasks on two
//! workers crosses the link to the workers at most once per worker (counted by a proxy between
//! the workers and what they read from: the master, or Redis), every task sees the exact bytes
//! (checked against `sha256sum` of the test's own copy), and a second job with the same input
//! uploads nothing and fetches nothing. A batch file's inputs, relative to the file, arrive too.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::grid::Grid;
use crate::support::gridwatch_bin;
use crate::support::proxy::CuttableProxy;
use crate::support::redis::RedisServer;

const FINISH: Duration = Duration::from_secs(300);
const MIB: u64 = 1 << 20;
/// Room for everything but the input on the workers' link: leases, specs, results, heartbeats.
const SLACK: u64 = 8 * MIB;

/// Writes `len` pseudo-random bytes (xorshift, so no two MiB are alike).
fn write_random(path: &Path, len: usize, seed: u64) {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, bytes).expect("writing the input");
}

/// `sha256sum`'s digest of a file, computed here, apart from the grid.
fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("running sha256sum");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Submits a command job through `master`; returns the client's stderr.
fn submit(master: &str, job: &str, flags: &[&str], argv: &[&str]) -> String {
    let output = Command::new(gridwatch_bin())
        .args(["submit", "command", "--job-id", job, "--master", master])
        .args(flags)
        .arg("--")
        .args(argv)
        .output()
        .expect("running gridwatch submit");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "submit {job} failed: {stderr}");
    stderr
}

fn results(grid: &Grid, job: &str) -> Vec<Value> {
    let out = grid.cli_ok(&["results", job, "--format", "json"]);
    let parsed: Value = serde_json::from_str(&out).expect("results --format json prints JSON");
    parsed["tasks"].as_array().expect("a task list").clone()
}

/// Each task's stdout must be the input's size and digest as computed here.
fn assert_every_task_saw(grid: &Grid, job: &str, tasks: usize, expected: &str) {
    let status = grid.wait_finished(job, FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let done = results(grid, job);
    assert_eq!(done.len(), tasks);
    for task in &done {
        assert_eq!(task["stdout"], expected, "task {}", task["index"]);
    }
}

/// The case itself; `workers_reach` is what the workers' proxy forwards to (the master, or
/// Redis), `worker_flags` how the workers reach it through `proxy_addr`.
fn one_fetch_per_worker(mut grid: Grid, proxy: &CuttableProxy, worker_flags: Vec<String>) {
    let client_proxy = CuttableProxy::start(&grid.addr);
    let client_master = format!("127.0.0.1:{}", client_proxy.port());
    let input = grid.path("data.bin");
    write_random(&input, (50 * MIB) as usize, 23);
    let size = 50 * MIB;
    let expected = format!("{size}\n{}  data.bin\n", sha256(&input));
    let cache = grid.path("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let mut flags = worker_flags;
    flags.extend(
        [
            "--allow-commands",
            "--input-cache-dir",
            &cache.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    grid.worker_flags = flags;
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 2);
    let argv = ["sh", "-c", "wc -c < data.bin; sha256sum data.bin"];
    let input_flag = input.to_string_lossy().into_owned();
    submit(
        &client_master,
        "first",
        &["--array", "1-12", "--input", &input_flag],
        &argv,
    );
    let uploaded = client_proxy.request_bytes();
    assert!(
        (size..size + MIB).contains(&uploaded),
        "the first job uploads the input once: {uploaded} bytes"
    );
    assert_every_task_saw(&grid, "first", 12, &expected);
    let fetched = proxy.reply_bytes();
    assert!(
        fetched >= size,
        "at least one worker fetched the input through the proxy: {fetched} bytes"
    );
    assert!(
        fetched <= 2 * size + SLACK,
        "the input crossed to the workers at most once per worker: {fetched} bytes for two \
         workers and a {size}-byte input"
    );

    // The same file again: the master has it, the workers have it.
    submit(
        &client_master,
        "second",
        &["--array", "1-4", "--input", &input_flag],
        &argv,
    );
    let uploaded_again = client_proxy.request_bytes() - uploaded;
    assert!(
        uploaded_again < MIB,
        "a second job with the same input uploads nothing: {uploaded_again} bytes sent"
    );
    assert_every_task_saw(&grid, "second", 4, &expected);
    let fetched_again = proxy.reply_bytes() - fetched;
    assert!(
        fetched_again < SLACK,
        "no worker fetched the input again: {fetched_again} bytes"
    );
    assert!(
        grid.master_logs().contains("nothing uploaded"),
        "the master logs the reuse"
    );
}

#[test]
fn a_50_mib_input_reaches_each_worker_once_and_is_not_uploaded_twice() {
    let mut grid = Grid::start(&[]);
    let proxy = CuttableProxy::start(&grid.addr);
    grid.worker_master = Some(format!("127.0.0.1:{}", proxy.port()));
    one_fetch_per_worker(grid, &proxy, Vec::new());
}

#[test]
fn on_redis_a_50_mib_input_reaches_each_worker_once_and_is_not_uploaded_twice() {
    let redis = RedisServer::start();
    let grid = Grid::start(&["--backend", &redis.url()]);
    let proxy = CuttableProxy::start(&format!("127.0.0.1:{}", redis.port()));
    let through_proxy = format!("redis://127.0.0.1:{}/0", proxy.port());
    one_fetch_per_worker(grid, &proxy, vec!["--backend".into(), through_proxy]);
}

#[test]
fn a_batch_files_inputs_are_read_relative_to_it_and_placed_read_only() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let dir = grid.path("batch");
    std::fs::create_dir_all(dir.join("data")).expect("batch dir");
    std::fs::write(dir.join("data/table.tsv"), "a\t1\nb\t2\n").expect("input");
    let batch = serde_json::json!({
        "tasks": [{
            "task_id": "batch-inputs",
            "algorithm": "command",
            "parameters": {
                "argv": ["sh", "-c", "cat table.tsv; stat -c %a table.tsv"],
                "inputs": ["data/table.tsv"],
            },
        }],
    });
    let file = dir.join("jobs.json");
    std::fs::write(&file, batch.to_string()).expect("batch file");
    grid.cli_ok(&["load", &file.to_string_lossy()]);
    assert_every_task_saw(&grid, "batch-inputs", 1, "a\t1\nb\t2\n444\n");
}
