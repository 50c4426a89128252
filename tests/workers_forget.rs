//! Forgetting a dead worker: `gridwatch workers --forget ID` refuses a live worker with a plain
//! reason, forgets a killed one for good (it stays gone while the collector keeps reporting), and
//! the HTTP write `POST /workers/ID/forget` needs the master's token as a Bearer header.

use std::time::Duration;

use crate::support::http::request;
use crate::support::procs::{gridwatch, wait_for};
use crate::support::watchman_grid::Grid;

/// `POST path` with an optional bearer token; returns the status and body.
fn post(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = request(addr, "POST", path, token, "");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn workers_json(grid: &Grid) -> Vec<serde_json::Value> {
    let text = grid.client(&["workers", "--json"]).expect("workers --json");
    serde_json::from_str(&text).expect("JSON workers")
}

#[test]
fn a_live_worker_is_not_forgotten_a_killed_one_is_and_stays_gone() {
    let mut grid = Grid::start(&["w1", "w2", "w3"], "15s");
    forget_follows_liveness(&mut grid);
}

#[test]
fn with_redis_a_forgotten_worker_stays_gone_though_the_collector_writes_there() {
    let redis = crate::support::redis::RedisServer::start();
    let mut grid = Grid::start_on(&redis.url(), &["w1", "w2", "w3"], "15s", &[]);
    forget_follows_liveness(&mut grid);
}

/// Refuses live w1 and an unknown id, forgets killed w2 (CLI) and w3 (HTTP).
fn forget_follows_liveness(grid: &mut Grid) {
    grid.wait_alive(3);

    let out = gridwatch()
        .args(["workers", "--forget", "w1", "--master", &grid.master_addr])
        .output()
        .expect("run gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    assert!(
        stderr.contains("cannot forget") && stderr.contains("w1") && stderr.contains("active"),
        "{stderr}"
    );
    let out = gridwatch()
        .args([
            "workers",
            "--forget",
            "nobody",
            "--master",
            &grid.master_addr,
        ])
        .output()
        .expect("run gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no worker \"nobody\""), "{stderr}");

    grid.worker("w2").kill9();
    wait_for("w2 DEAD", Duration::from_secs(30), || {
        workers_json(grid)
            .iter()
            .any(|w| w["worker_id"] == "w2" && w["status"] == "DEAD")
            .then_some(())
    });
    let said = grid
        .client(&["workers", "--forget", "w2"])
        .expect("forgetting a dead worker succeeds");
    assert_eq!(said.trim(), "forgot worker w2");

    // The collector keeps reporting: wait for two newer reports of w1, then w2 is still gone.
    let report_of_w1 = |grid: &Grid| {
        workers_json(grid)
            .iter()
            .find(|w| w["worker_id"] == "w1")
            .and_then(|w| w["latest"]["seq"].as_u64())
    };
    let seq = report_of_w1(grid).expect("w1 listed");
    wait_for("two more reports of w1", Duration::from_secs(30), || {
        (report_of_w1(grid)? >= seq + 2).then_some(())
    });
    let ids: Vec<String> = workers_json(grid)
        .iter()
        .filter_map(|w| w["worker_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, ["w1", "w3"], "w2 stays forgotten");
    let (_, _, http_workers) = request(&grid.http_addr(), "GET", "/workers", None, "");
    let http_workers = String::from_utf8_lossy(&http_workers);
    assert!(!http_workers.contains("\"w2\""), "{http_workers}");

    // Over HTTP (no token on this master): a live worker is a 409, a dead one is forgotten.
    let http = grid.http_addr();
    let (status, body) = post(&http, "/workers/w1/forget", None);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("only a dead or inactive worker"), "{body}");
    grid.worker("w3").kill9();
    wait_for("w3 DEAD", Duration::from_secs(30), || {
        workers_json(grid)
            .iter()
            .any(|w| w["worker_id"] == "w3" && w["status"] == "DEAD")
            .then_some(())
    });
    let (status, body) = post(&http, "/workers/w3/forget", None);
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = workers_json(grid)
        .iter()
        .filter_map(|w| w["worker_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, ["w1"]);
}

#[test]
fn the_http_forget_needs_the_masters_token_as_a_bearer_header() {
    let token = "forget-test-token-0123456789";
    let token_file = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(token_file.path(), token).expect("write token");
    let token_path = token_file.path().display().to_string();
    let grid = crate::support::grid::Grid::start(&["--token-file", &token_path]);
    let http = grid.http_addr();
    let (status, body) = post(&http, "/workers/w9/forget", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, _) = post(&http, "/workers/w9/forget", Some("wrong-token"));
    assert_eq!(status, 401);
    let (status, body) = post(&http, "/workers/w9/forget", Some(token));
    assert_eq!(status, 404, "authorized, and no such worker: {body}");
    assert!(body.contains("w9"), "{body}");
}
