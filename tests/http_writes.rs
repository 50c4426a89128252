//! The HTTP API's writes with real processes and raw HTTP/1.1 requests: `POST /jobs` and
//! `DELETE /jobs/ID` need the cluster token as a Bearer header (401 without it or with a wrong
//! one, and nothing changes), a master without a token takes them from its loopback users, and
//! `GET /jobs/ID/results?format=` serves what `gridwatch results` prints; on both backends.

use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::http::request;
use crate::support::redis::RedisServer;
use crate::support::wait_for;

const TOKEN: &str = "s3cret-token-for-tests";
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("a JSON body")
}

fn job_status(addr: &str, job: &str) -> Option<String> {
    let (status, _, body) = request(addr, "GET", &format!("/jobs/{job}"), None, "");
    (status == 200).then(|| {
        json_body(&body)["job"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

const BATCH: &str = r#"{"metadata": {"name": "two"}, "tasks": [
  {"task_id": "web-julia", "algorithm": "julia", "priority": "high",
   "parameters": {"width": 30, "height": 20, "iterations": 40}},
  {"task_id": "web-particles", "algorithm": "python", "priority": "low",
   "parameters": {"num_particles": 20, "num_steps": 10, "seed": 5}}]}"#;

const ONE: &str = r#"{"task_id": "waiting", "algorithm": "julia",
   "parameters": {"width": 10, "height": 10, "iterations": 5}}"#;

#[test]
fn writes_need_the_token_and_results_come_in_the_kinds_formats_embedded() {
    writes_need_the_token_and_results_come_in_the_kinds_formats(None);
}

#[test]
fn writes_need_the_token_and_results_come_in_the_kinds_formats_redis() {
    let redis = RedisServer::start();
    writes_need_the_token_and_results_come_in_the_kinds_formats(Some(redis.url()));
}

/// On the embedded backend, or on Redis at `redis_url` (the workers then use it too).
fn writes_need_the_token_and_results_come_in_the_kinds_formats(redis_url: Option<String>) {
    let mut master_flags = vec!["--token", TOKEN];
    if let Some(url) = &redis_url {
        master_flags.extend(["--backend", url.as_str()]);
    }
    let mut grid = Grid::start(&master_flags);
    let http = grid.http_addr();

    // No worker yet: a job posted now stays queued until cancelled.
    for token in [None, Some("wrong-token"), Some("s3cret-token-for-test")] {
        let (status, _, body) = request(&http, "POST", "/jobs", token, ONE);
        assert_eq!(status, 401, "{token:?}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(
        job_status(&http, "waiting"),
        None,
        "a refused POST created a job"
    );
    let (status, _, body) = request(&http, "POST", "/jobs", Some(TOKEN), ONE);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let accepted = json_body(&body);
    assert_eq!(accepted["jobs"][0]["job_id"], "waiting");
    let queued = accepted["jobs"][0]["total_chunks"]
        .as_u64()
        .expect("total_chunks");
    assert!(queued > 0);
    assert_eq!(job_status(&http, "waiting").as_deref(), Some("pending"));

    for token in [None, Some("wrong-token")] {
        let (status, _, _) = request(&http, "DELETE", "/jobs/waiting", token, "");
        assert_eq!(status, 401);
    }
    assert_eq!(job_status(&http, "waiting").as_deref(), Some("pending"));
    let (status, _, body) = request(&http, "DELETE", "/jobs/waiting", Some(TOKEN), "");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_body(&body)["removed_tasks"], queued);
    assert_eq!(job_status(&http, "waiting").as_deref(), Some("cancelled"));
    let (status, _, _) = request(&http, "DELETE", "/jobs/nobody", Some(TOKEN), "");
    assert_eq!(status, 404);
    let (status, _, _) = request(&http, "POST", "/jobs", Some(TOKEN), "{\"tasks\": [");
    assert_eq!(status, 400);

    // A seed-style batch: one job per task.
    grid.worker_flags = vec!["--token".into(), TOKEN.into()];
    if let Some(url) = &redis_url {
        grid.worker_flags.extend(["--backend".into(), url.clone()]);
    }
    grid.start_worker("w1", 1);
    let (status, _, body) = request(&http, "POST", "/jobs", Some(TOKEN), BATCH);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let created: Vec<String> = json_body(&body)["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(created, ["web-julia", "web-particles"]);
    for job in ["web-julia", "web-particles"] {
        wait_for("the posted job to complete", JOB_TIMEOUT, || {
            (job_status(&http, job).as_deref() == Some("completed")).then_some(())
        });
    }

    // Results as `gridwatch results` prints them.
    let cli_counts = grid.cli_ok(&[
        "results",
        "web-julia",
        "--format",
        "counts",
        "--token",
        TOKEN,
    ]);
    let (status, content_type, body) = request(
        &http,
        "GET",
        "/jobs/web-julia/results?format=counts",
        None,
        "",
    );
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(String::from_utf8_lossy(&body), cli_counts);
    let (status, content_type, body) =
        request(&http, "GET", "/jobs/web-julia/results?format=png", None, "");
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (status, content_type, body) = request(
        &http,
        "GET",
        "/jobs/web-particles/results?format=json",
        None,
        "",
    );
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let cli_json: serde_json::Value = serde_json::from_str(&grid.cli_ok(&[
        "results",
        "web-particles",
        "--format",
        "json",
        "--token",
        TOKEN,
    ]))
    .expect("results --format json");
    let http_json = json_body(&body);
    assert_eq!(http_json["replicas"], cli_json["replicas"], "{http_json}");
    let (status, _, _) = request(&http, "GET", "/jobs/web-julia/results?format=bed", None, "");
    assert_eq!(status, 400);
    let (status, _, _) = request(&http, "GET", "/jobs/waiting/results", None, "");
    assert_eq!(status, 409);
}

#[test]
fn a_master_without_a_token_takes_writes_from_its_loopback_users() {
    let grid = Grid::start(&[]);
    let http = grid.http_addr();
    let (status, _, body) = request(&http, "POST", "/jobs", None, ONE);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = request(&http, "DELETE", "/jobs/waiting", None, "");
    assert_eq!(status, 200);
    assert_eq!(job_status(&http, "waiting").as_deref(), Some("cancelled"));
    // The job's page, linked from the dashboard's job list, reads the job API and cancels
    // through it.
    let (status, content_type, page) = request(&http, "GET", "/jobs/waiting/view", None, "");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = String::from_utf8_lossy(&page);
    for needle in [
        "method: \"DELETE\"",
        "Bearer ",
        "execution_time",
        "worker_id",
        "/image.png",
    ] {
        assert!(page.contains(needle), "the job page lacks {needle}");
    }
    let (_, _, dashboard) = request(&http, "GET", "/", None, "");
    assert!(String::from_utf8_lossy(&dashboard).contains("\"/view\""));
}
