//! Per-task records and worker performance with real processes, on both backends: every task
//! of a job has its record (id, kind, parameters, time, worker, completion time, priority,
//! metrics) in `results --tasks` and in HTTP `/jobs/ID`, the records' metrics add up to the
//! result itself, and `workers --performance`, `/stats/performance` and `/workers/ID` agree
//! with counts, means and 95th percentiles computed here from those records.

use std::collections::BTreeMap;

use crate::support::grid::Grid;
use crate::support::http::request;
use crate::support::redis::RedisServer;

const BANDS: usize = 6;

/// `GET path` over HTTP/1.1; returns the status and the JSON body.
fn http_json(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = request(addr, "GET", path, None, "");
    (status, serde_json::from_slice(&body).expect("a JSON body"))
}

/// The nearest-rank 95th percentile, written out plainly.
fn p95(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("finite times"));
    let rank = (0.95 * sorted.len() as f64).ceil() as usize;
    sorted[rank.max(1) - 1]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

fn records_and_performance_agree(mut grid: Grid) {
    grid.start_worker("w1", 1);
    grid.start_worker("w2", 1);
    let before = gridwatch::time::unix_now();
    grid.cli_ok(&[
        "submit",
        "julia",
        "--width",
        "60",
        "--height",
        "48",
        "--iterations",
        "80",
        "--bands",
        &BANDS.to_string(),
        "--priority",
        "high",
        "--job-id",
        "rec",
        "--wait",
    ]);
    let after = gridwatch::time::unix_now();
    let results: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["results", "rec", "--tasks"]))
            .expect("JSON task records");
    let tasks = results["tasks"].as_array().expect("a tasks list").clone();
    assert_eq!(tasks.len(), BANDS, "{results}");
    let counts = grid.cli_ok(&["results", "rec", "--format", "counts"]);
    let pixel_sum: u64 = counts
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum();
    let pixels = counts.split_whitespace().count() as u64;
    let mut metric_sum = 0;
    let mut metric_pixels = 0;
    for (chunk, task) in tasks.iter().enumerate() {
        assert_eq!(task["task_id"], format!("rec/{chunk}"));
        assert_eq!(task["chunk"], chunk);
        assert_eq!(task["kind"], "julia");
        assert_eq!(task["priority"], "high");
        assert!(task["parameters"].is_object(), "{task}");
        let worker = task["worker_id"].as_str().expect("a worker id");
        assert!(worker == "w1" || worker == "w2", "{task}");
        let secs = task["execution_time"].as_f64().expect("a time");
        assert!(secs > 0.0 && secs < after - before + 1.0, "{task}");
        let done = task["completed_at"].as_f64().expect("a completion time");
        assert!(done >= before - 1.0 && done <= after + 1.0, "{task}");
        metric_sum += task["metrics"]["counts_sum"].as_u64().expect("counts_sum");
        metric_pixels += task["metrics"]["counts_len"].as_u64().expect("counts_len");
    }
    // The records' figures add up to the image itself.
    assert_eq!(metric_sum, pixel_sum);
    assert_eq!(metric_pixels, pixels);
    // Band parameters differ from task to task.
    assert_ne!(tasks[0]["parameters"], tasks[1]["parameters"]);

    let http = grid.http_addr();
    let (status, job) = http_json(&http, "/jobs/rec");
    assert_eq!(status, 200);
    assert_eq!(job["tasks"].as_array().expect("tasks"), &tasks);

    // The reference, from the records alone.
    let mut by_worker: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for task in &tasks {
        by_worker
            .entry(task["worker_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(task["execution_time"].as_f64().unwrap_or_default());
    }
    let cli: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["workers", "--performance", "--json"]))
            .expect("workers --performance --json");
    let (status, all) = http_json(&http, "/stats/performance");
    assert_eq!(status, 200);
    assert_eq!(all["workers"], cli);
    let listed = cli.as_array().expect("a list of workers");
    assert_eq!(listed.len(), by_worker.len(), "{cli}");
    for (worker, times) in &by_worker {
        let entry = listed
            .iter()
            .find(|w| w["worker_id"] == worker.as_str())
            .unwrap_or_else(|| panic!("{worker} missing from {cli}"));
        assert_eq!(entry["tasks_completed"], times.len());
        let julia = &entry["kinds"][0];
        assert_eq!(julia["kind"], "julia");
        assert_eq!(julia["tasks_completed"], times.len());
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        assert!(
            close(julia["mean_secs"].as_f64().expect("mean"), mean),
            "{julia} vs {mean}"
        );
        assert!(
            close(julia["p95_secs"].as_f64().expect("p95"), p95(times)),
            "{julia}"
        );
        let (status, one) = http_json(&http, &format!("/workers/{worker}"));
        assert_eq!(status, 200);
        assert_eq!(&one["performance"], entry);
    }
    let (status, _) = http_json(&http, "/workers/nobody");
    assert_eq!(status, 404);
}

#[test]
fn task_records_and_worker_performance_on_the_embedded_backend() {
    let grid = Grid::start(&[]);
    records_and_performance_agree(grid);
}

#[test]
fn task_records_and_worker_performance_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grid = Grid::start_on(Some(&url), &[]);
    records_and_performance_agree(grid);
}
