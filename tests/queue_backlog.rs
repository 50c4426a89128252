//! The backlog signals an autoscaler acts on, against a backlog built by hand (jobs submitted to
//! a master with no worker): `status --queue --json` and `/metrics` give the waiting tasks per
//! priority and how long the oldest has waited, on both backends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::grid::Grid;
use crate::support::redis::RedisServer;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Submits a particles job of `replicas` tasks at `priority` without waiting for it.
fn submit(grid: &Grid, replicas: &str, priority: &str) {
    grid.cli_ok(&[
        "submit",
        "particles",
        "--particles",
        "20",
        "--steps",
        "10",
        "--seed",
        "7",
        "--replicas",
        replicas,
        "--priority",
        priority,
    ]);
}

fn queue(grid: &Grid) -> serde_json::Value {
    let out = grid.cli_ok(&["status", "--queue", "--json"]);
    serde_json::from_str(&out).expect("status --queue --json prints JSON")
}

fn level<'a>(queue: &'a serde_json::Value, priority: &str) -> &'a serde_json::Value {
    queue["queue"]
        .as_array()
        .expect("a queue array")
        .iter()
        .find(|l| l["priority"] == priority)
        .unwrap_or_else(|| panic!("no {priority} level in {queue}"))
}

/// The value of `gridwatch_queue_oldest_task_age_seconds{priority="…"}` in a scrape.
fn scraped_age(http: &str, priority: &str) -> f64 {
    let reply = crate::support::http::request_with(http, "GET", "/metrics", &[], "");
    let text = reply.text();
    let prefix = format!("gridwatch_queue_oldest_task_age_seconds{{priority=\"{priority}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

fn backlog_is_measured(grid: &Grid) {
    let before_medium = unix_now();
    submit(grid, "5", "medium");
    let after_medium = unix_now();
    std::thread::sleep(Duration::from_millis(1500));
    let before_high = unix_now();
    submit(grid, "3", "high");
    let after_high = unix_now();

    let asked = unix_now();
    let queue = queue(grid);
    let answered = unix_now();
    let (medium, high, low) = (
        level(&queue, "medium"),
        level(&queue, "high"),
        level(&queue, "low"),
    );
    assert_eq!(medium["tasks"], 5, "{queue}");
    assert_eq!(high["tasks"], 3, "{queue}");
    assert_eq!(low["tasks"], 0, "{queue}");
    assert_eq!(queue["waiting_tasks"], 8, "{queue}");
    assert_eq!(low["oldest_task_age_seconds"], 0.0, "none waits: {queue}");
    // Each age lies between what the submissions' bounds allow (a little slack for rounding).
    let within = |age: f64, submitted: (f64, f64)| {
        age >= asked - submitted.1 - 0.05 && age <= answered - submitted.0 + 0.05
    };
    let medium_age = medium["oldest_task_age_seconds"].as_f64().expect("age");
    let high_age = high["oldest_task_age_seconds"].as_f64().expect("age");
    assert!(
        within(medium_age, (before_medium, after_medium)),
        "medium {medium_age}: {queue}"
    );
    assert!(
        within(high_age, (before_high, after_high)),
        "high {high_age}: {queue}"
    );
    assert!(medium_age > high_age + 1.0, "{queue}");
    assert_eq!(queue["oldest_task_age_seconds"].as_f64(), Some(medium_age));

    let http = grid.http_addr();
    let scrape_from = unix_now();
    let scraped = scraped_age(&http, "medium");
    assert!(
        scraped >= scrape_from - after_medium - 0.05
            && scraped <= unix_now() - before_medium + 0.05,
        "scraped medium age {scraped}"
    );
    assert_eq!(scraped_age(&http, "low"), 0.0);
}

#[test]
fn the_oldest_waiting_task_age_is_reported_per_priority_embedded() {
    let grid = Grid::start(&[]);
    backlog_is_measured(&grid);
}

#[test]
fn the_oldest_waiting_task_age_is_reported_per_priority_redis() {
    let redis = RedisServer::start();
    let grid = Grid::start(&["--backend", &redis.url()]);
    backlog_is_measured(&grid);
}
