//! Which workers the views list, and forgetting a dead one: a worker leasing without an agent is
//! listed as `no agent` everywhere; `gridwatch workers --forget ID` refuses a live worker with a
//! plain reason, forgets a killed one for good (it stays gone while the collector keeps
//! reporting), resolves its alerts (through a collector restart too), and the HTTP write
//! `POST /workers/ID/forget` needs the master's token as a Bearer header.

use std::time::Duration;

use crate::support::http::{metric, request};
use crate::support::procs::{gridwatch, wait_for, Proc};
use crate::support::watchman_grid::{spawn_collector, WatchedGrid};

/// `POST path` with an optional bearer token; returns the status and body.
fn post(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = request(addr, "POST", path, token, "");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn workers_json(grid: &WatchedGrid) -> Vec<serde_json::Value> {
    let text = grid.client(&["workers", "--json"]).expect("workers --json");
    serde_json::from_str(&text).expect("JSON workers")
}

#[test]
fn a_live_worker_is_not_forgotten_a_killed_one_is_and_stays_gone() {
    let mut grid = WatchedGrid::start(&["w1", "w2", "w3"], "15s");
    forget_follows_liveness(&mut grid);
}

#[test]
fn with_redis_a_forgotten_worker_stays_gone_though_the_collector_writes_there() {
    let redis = crate::support::redis::RedisServer::start();
    let mut grid = WatchedGrid::start_on(&redis.url(), &["w1", "w2", "w3"], "15s", &[]);
    forget_follows_liveness(&mut grid);
}

/// Refuses live w1 and an unknown id, forgets killed w2 (CLI) and w3 (HTTP).
fn forget_follows_liveness(grid: &mut WatchedGrid) {
    grid.wait_alive(3);

    let out = gridwatch()
        .args(["workers", "--forget", "w1", "--master", &grid.addr])
        .output()
        .expect("run gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    assert!(
        stderr.contains("cannot forget") && stderr.contains("w1") && stderr.contains("active"),
        "{stderr}"
    );
    let out = gridwatch()
        .args(["workers", "--forget", "nobody", "--master", &grid.addr])
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
    let report_of_w1 = |grid: &WatchedGrid| {
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

/// `GET path` as text.
fn get(addr: &str, path: &str) -> String {
    let (status, _, body) = request(addr, "GET", path, None, "");
    assert_eq!(status, 200, "GET {path}");
    String::from_utf8_lossy(&body).into_owned()
}

fn view_of(views: &[serde_json::Value], worker: &str) -> Option<serde_json::Value> {
    views.iter().find(|w| w["worker_id"] == worker).cloned()
}

#[test]
fn a_worker_leasing_without_an_agent_is_listed_as_no_agent_in_every_view() {
    let grid = WatchedGrid::start(&["w1"], "15s");
    grid.wait_alive(1);
    // `gridwatch worker` typed for `gridwatch workers`: it joins and leases, with no agent.
    let _bare = Proc::spawn(
        "worker-bare",
        grid.dir.path(),
        &["worker", "--id", "bare", "--master", &grid.addr],
        &[],
    );
    let view = wait_for("bare listed", Duration::from_secs(30), || {
        view_of(&workers_json(&grid), "bare")
    });
    assert_eq!(view["state"], "no agent", "{view}");
    let w1 = view_of(&workers_json(&grid), "w1").expect("w1 listed");
    assert_eq!(
        w1["state"], "active",
        "the agent's worker keeps its own state: {w1}"
    );

    let table = grid.client(&["workers"]).expect("workers");
    let row = table
        .lines()
        .find(|l| l.starts_with("bare "))
        .unwrap_or_else(|| panic!("a row for bare:\n{table}"));
    assert!(row.contains("no agent"), "{row}");
    assert!(
        table.contains("bare leases tasks but no agent reports on it"),
        "{table}"
    );
    assert!(
        !table.contains("no active machines"),
        "a leasing worker is alive: {table}"
    );

    let http = grid.http_addr();
    let listed: serde_json::Value =
        serde_json::from_str(&get(&http, "/workers")).expect("JSON workers");
    let listed = listed["workers"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        view_of(&listed, "bare").map(|w| w["state"].clone()),
        Some("no agent".into())
    );
    let stats: serde_json::Value = serde_json::from_str(&get(&http, "/stats")).expect("stats");
    assert_eq!(stats["workers"]["no agent"], 1, "{}", stats["workers"]);
    assert_eq!(stats["workers"]["active"], 1, "{}", stats["workers"]);
    assert_eq!(
        metric(&http, r#"gridwatch_workers{state="no agent"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&http, r#"gridwatch_worker_up{worker="bare"}"#),
        Some(1.0)
    );
    // No agent measured its host: no figures rather than zeros.
    assert_eq!(
        metric(&http, r#"gridwatch_host_cpu_ratio{worker="bare"}"#),
        None
    );
    assert!(metric(&http, r#"gridwatch_host_cpu_ratio{worker="w1"}"#).is_some());

    // It runs tasks: a job submitted now completes with part of it done by `bare`.
    let (genome, expected) = crate::support::watchman_grid::genome(grid.dir.path(), 400_000);
    let job = grid.submit(&genome, "4000");
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);

    // `top` lists it too, and names the job's figure.
    if !crate::support::tmux::Tmux::available() {
        crate::support::skip_without("tmux is not installed");
        return;
    }
    let command = format!(
        "{} top --master {} --interval 200ms",
        env!("CARGO_BIN_EXE_gridwatch"),
        grid.addr
    );
    let tmux = crate::support::tmux::Tmux::start("top-bare", 160, 40, &command);
    let screen = wait_for("top listing bare", Duration::from_secs(30), || {
        let screen = tmux.screen();
        let bare = screen.lines().find(|l| l.contains("bare"))?;
        (bare.contains("no agent") && screen.contains(&job)).then_some(screen)
    });
    let job_row = screen
        .lines()
        .find(|l| l.contains(&job))
        .unwrap_or_default();
    assert!(job_row.contains(&format!("{expected} matches")), "{screen}");
    tmux.keys("q");
}

#[test]
fn forgetting_a_dead_worker_resolves_its_alerts_through_a_collector_restart() {
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    grid.wait_alive(2);
    let http = grid.http_addr();
    let critical = r#"gridwatch_alerts_firing{severity="critical"}"#;
    assert_eq!(metric(&http, critical), Some(0.0));
    grid.worker("w2").kill9();
    wait_for("w2's worker_dead firing", Duration::from_secs(30), || {
        (metric(&http, critical) == Some(1.0)).then_some(())
    });
    let firing = |http: &str| -> Vec<serde_json::Value> {
        let alerts: serde_json::Value =
            serde_json::from_str(&get(http, "/alerts")).expect("JSON alerts");
        alerts["firing"].as_array().cloned().unwrap_or_default()
    };
    let now = firing(&http);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        (now[0]["worker_id"].as_str(), now[0]["rule"].as_str()),
        (Some("w2"), Some("worker_dead"))
    );

    grid.client(&["workers", "--forget", "w2"])
        .expect("forgetting a dead worker succeeds");
    assert_eq!(metric(&http, critical), Some(0.0), "resolved at once");
    assert!(firing(&http).is_empty());
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&grid.client(&["alerts", "--json"]).expect("alerts"))
            .expect("JSON alerts");
    let newest = events
        .iter()
        .find(|a| a["worker_id"] == "w2")
        .expect("w2's alerts listed");
    assert_eq!(newest["state"], "resolved", "{newest}");
    assert!(
        newest["message"]
            .as_str()
            .unwrap_or("")
            .contains("forgotten"),
        "{newest}"
    );

    // A new collector on the same address hears w2's agent report it DEAD once more.
    grid.collector.kill9();
    let alerts_before = grid.alerts().len();
    let (collector, _) = spawn_collector(
        grid.dir.path(),
        &grid.collector_addr,
        &grid.addr,
        &[],
        "embedded",
    );
    grid.collector = collector;
    let seq_of_w1 =
        || view_of(&workers_json(&grid), "w1").and_then(|w| w["latest"]["seq"].as_u64());
    let seq = seq_of_w1().expect("w1 listed");
    wait_for(
        "the new collector storing w1's reports",
        Duration::from_secs(30),
        || (seq_of_w1()? >= seq + 3).then_some(()),
    );
    let refired = grid.alerts()[alerts_before..]
        .iter()
        .any(|a| a["worker_id"] == "w2" && a["state"] == "firing");
    println!("the restarted collector fired w2's alert again: {refired}");
    assert_eq!(metric(&http, critical), Some(0.0), "still resolved");
    assert!(firing(&http).is_empty());
    assert!(
        view_of(&workers_json(&grid), "w2").is_none(),
        "w2 stays forgotten"
    );
    // The dashboard shows the current state above the history.
    let page = get(&http, "/");
    let (now_at, history_at) = (page.find("Alerts firing now"), page.find("Alert history"));
    assert!(matches!((now_at, history_at), (Some(a), Some(b)) if a < b));
}
