//! Dead-worker recovery with real processes: a master with a long
//! visibility timeout, a collector, and an agent + worker per id. A worker killed with -9 is in
//! the alert log as DEAD within a second and its chunks are re-run at once; a SIGSTOPped worker is
//! DEAD after the heartbeat timeout, and after SIGCONT its late results are refused: the leases
//! they answer were reclaimed, and the chunks' new holders stored theirs.

use std::time::{Duration, Instant};

use crate::support::procs::{gridwatch, wait_for};
use crate::support::watchman_grid::{genome, spawn_collector, tasks_done, unix_now, WatchedGrid};
use nix::sys::signal::Signal;

#[test]
fn a_killed_worker_is_dead_within_a_second_and_its_chunks_run_elsewhere() {
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    let dead = kill_w1_mid_job_and_recover(&mut grid);
    assert_eq!(dead["severity"], "critical");
    // w1's re-queued tasks were delivered again: the job's end line counts them.
    let end = wait_for("the job's end line", Duration::from_secs(10), || {
        grid.master()
            .log_json()
            .into_iter()
            .find(|line| line["fields"]["message"] == "job finished")
    });
    let retries = end["fields"]["retries"].as_u64().unwrap_or(0);
    assert!(retries >= 1, "re-deliveries not counted: {end}");
}

/// Submits a job, kill -9s worker w1 once it is under way, and checks the watchman's promise:
/// the DEAD alert within a second, w1's leases re-queued at once (the visibility timeout is
/// 600 s, so completing within two minutes proves the re-queue), and the exact total.
/// Returns the DEAD alert.
fn kill_w1_mid_job_and_recover(grid: &mut WatchedGrid) -> serde_json::Value {
    let (job, expected) = grid.start_job_under_way(12_000_000);

    grid.stop_while_leasing("w1");
    let killed_at = unix_now();
    grid.worker("w1").kill9();

    let dead = wait_for("DEAD alert for w1", Duration::from_secs(10), || {
        grid.alert("w1", "firing")
    });
    let latency = dead["timestamp"].as_f64().expect("timestamp") - killed_at;
    assert!(latency < 1.0, "DEAD alert {latency:.3} s after kill -9");
    let reclaimed = wait_for("w1's leases re-queued", Duration::from_secs(10), || {
        grid.reclaimed("w1")
    });
    assert!(
        reclaimed >= 1,
        "w1 held leases when killed; {reclaimed} re-queued"
    );
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    dead
}

#[test]
fn a_hung_worker_is_dead_after_the_timeout_and_its_late_results_count_once() {
    let mut grid = WatchedGrid::start(&["w1", "w2"], "2s");
    let (job, expected) = grid.start_job_under_way(6_000_000);

    grid.stop_while_leasing("w1");
    let stopped_at = Instant::now();
    let stopped_unix = unix_now();
    let dead = wait_for("DEAD alert for w1", Duration::from_secs(20), || {
        grid.alert("w1", "firing")
    });
    let latency = dead["timestamp"].as_f64().expect("timestamp") - stopped_unix;
    // The timeout runs from the last heartbeat, which came up to one interval (1 s) before.
    assert!(
        (0.9..3.0).contains(&latency),
        "hang detected {latency:.3} s after SIGSTOP (timeout 2 s)"
    );
    let reclaimed = wait_for("worker_down handled", Duration::from_secs(10), || {
        grid.reclaimed("w1")
    });
    assert!(
        reclaimed >= 1,
        "w1 held leases when stopped; the master re-queued {reclaimed}"
    );

    // w1 is still stopped: only the re-queue lets the job finish.
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    assert!(stopped_at.elapsed() < Duration::from_secs(120));

    let done_before = tasks_done(grid.worker("w1"));
    grid.worker("w1").signal(Signal::SIGCONT);
    wait_for("DEAD alert resolved", Duration::from_secs(20), || {
        grid.alert("w1", "resolved")
    });
    // It finishes the tasks it held when stopped, but those leases were reclaimed: the master
    // refuses the results, and the store keeps the new holders' ones. A lease request of w1's
    // that was already waiting when it stopped may have been handed the re-queued task itself;
    // that lease is w1's own and its result counts. Either way w1 has sent its late results once
    // it logged a refusal, or once it completed a task after resuming and holds no lease.
    let refused = |grid: &mut WatchedGrid| {
        let lines = grid.worker("w1").log_json();
        lines
            .iter()
            .filter(|line| line["fields"]["message"] == "result refused")
            .count()
    };
    wait_for("w1's late results sent", Duration::from_secs(20), || {
        let finished = tasks_done(grid.worker("w1")) > done_before && grid.leases_held("w1") == 0;
        (refused(&mut grid) >= 1 || finished).then_some(())
    });
    assert_eq!(
        grid.total_matches(&job),
        expected,
        "late results counted once"
    );
    let firings = grid
        .alerts()
        .into_iter()
        .filter(|a| a["worker_id"] == "w1" && a["state"] == "firing");
    assert_eq!(firings.count(), 1, "one DEAD alert, not one per report");
}

#[test]
fn a_firing_resource_warning_pauses_leasing_until_it_clears() {
    // Memory above 0 % is always true: the warning fires on the first report of every worker.
    let mut grid = WatchedGrid::start_with(&["w1", "w2"], "15s", &["--memory-threshold", "0"]);
    let (genome, expected) = genome(grid.dir.path(), 2_000_000);
    wait_for(
        "both workers told to pause",
        Duration::from_secs(30),
        || {
            let workers = ["w1", "w2"].map(|id| grid.worker(id).log());
            workers
                .iter()
                .all(|log| log.contains("leasing paused by the collector"))
                .then_some(())
        },
    );
    let job = grid.submit(&genome, "4000");
    // Paused workers lease nothing: the job stays untouched for several report intervals.
    let observe_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < observe_until {
        let (status, done, _) = grid.progress(&job).expect("status");
        assert_eq!(
            (status.as_str(), done),
            ("pending", 0),
            "a paused worker leased a task"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let warnings = grid
        .alerts()
        .into_iter()
        .filter(|a| a["rule"] == "memory_high")
        .count();
    assert_eq!(
        warnings, 2,
        "one memory warning per worker, not one per report"
    );

    // A collector with the default thresholds: the warning clears and leasing resumes.
    grid.collector.kill9();
    let (collector, _) = spawn_collector(
        grid.dir.path(),
        &grid.collector_addr,
        &grid.addr,
        &[],
        "embedded",
    );
    grid.collector = collector;
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
}

#[test]
fn the_job_completes_without_the_collector_and_reports_wait_for_its_return() {
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    let (job, expected) = grid.start_job_under_way(12_000_000);
    grid.collector.kill9();
    let down_at = unix_now();
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    // Reports made meanwhile (every second, and on each worker's status) wait in the agents.
    wait_for(
        "a report made while the collector was down",
        Duration::from_secs(10),
        || {
            grid.agent("w1")
                .log()
                .contains("lost the collector")
                .then_some(())
        },
    );
    let up_at = unix_now();
    let (collector, addr) = spawn_collector(
        grid.dir.path(),
        &grid.collector_addr,
        &grid.addr,
        &[],
        "embedded",
    );
    grid.collector = collector;
    assert_eq!(addr, grid.collector_addr);
    wait_for(
        "buffered reports delivered",
        Duration::from_secs(30),
        || {
            let output = gridwatch()
                .args(["workers", "--collector", &addr, "--json"])
                .output()
                .ok()?;
            let workers: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
            let delivered = workers.iter().all(|worker| {
                let history = worker["history"].as_array().cloned().unwrap_or_default();
                history
                    .iter()
                    .filter_map(|p| p["timestamp"].as_f64())
                    .any(|t| t > down_at && t < up_at)
            });
            (workers.len() == 2 && delivered).then_some(())
        },
    );
}

#[test]
fn with_redis_a_killed_worker_is_reclaimed_and_the_watch_data_is_in_redis() {
    let redis = crate::support::redis::RedisServer::start();
    let mut grid = WatchedGrid::start_on(&redis.url(), &["w1", "w2"], "15s", &[]);
    kill_w1_mid_job_and_recover(&mut grid);

    // The collector re-queued w1's tasks itself; the master, told after, says so with the
    // collector's count rather than that there was nothing to re-queue.
    let by_collector = grid
        .reclaimed("w1")
        .expect("the collector re-queued w1's tasks");
    let told = wait_for("the master's line on w1", Duration::from_secs(10), || {
        grid.master().log_json().into_iter().find(|line| {
            line["fields"]["worker"] == "w1"
                && line["fields"]["message"]
                    == "the collector re-queued the dead worker's tasks already"
        })
    });
    assert_eq!(
        told["fields"]["requeued_by_collector"].as_u64(),
        Some(by_collector),
        "{told}"
    );
    assert!(
        !grid.master().log().contains("nothing to re-queue"),
        "{}",
        grid.master().log()
    );

    // The readable keys `redis-cli` shows: alert history and per-worker metrics with a TTL.
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut redis_conn = client.get_connection().expect("redis connection");
    let history: Vec<String> = redis::cmd("LRANGE")
        .arg("alerts:history")
        .arg(0)
        .arg(-1)
        .query(&mut redis_conn)
        .expect("LRANGE");
    assert!(
        history
            .iter()
            .any(|a| a.contains("\"worker_dead\"") && a.contains("\"w1\"")),
        "alerts:history holds w1's DEAD alert: {history:?}"
    );
    let metrics = wait_for(
        "w1's stored metrics say DEAD",
        Duration::from_secs(10),
        || {
            let text: Option<String> = redis::cmd("GET")
                .arg("worker:w1:metrics")
                .query(&mut redis_conn)
                .ok()?;
            text.filter(|t| t.contains("\"status\":\"DEAD\""))
        },
    );
    assert!(metrics.contains("\"worker_id\":\"w1\""));
    let ttl: i64 = redis::cmd("TTL")
        .arg("worker:w1:metrics")
        .query(&mut redis_conn)
        .expect("TTL");
    assert!(ttl > 0 && ttl <= 60, "worker metrics expire (TTL {ttl})");
}

/// A long CPU-bound job keeps the host's cores busy with the grid's own workers; CPU pressure is
/// judged without them, so the rule (shortened to seconds) never pauses the grid for its own work.
#[test]
fn a_long_cpu_bound_job_never_pauses_its_own_grid() {
    let mut grid = WatchedGrid::start_with(
        &["w1", "w2"],
        "15s",
        &["--cpu-threshold", "95", "--cpu-for", "3s"],
    );
    grid.wait_alive(2);
    // About 15 CPU-seconds of Julia bands: several times the rule's window on two cores.
    let text = grid
        .client(&[
            "submit",
            "julia",
            "--width",
            "600",
            "--iterations",
            "120000",
            "--bands",
            "48",
            "--json",
        ])
        .expect("submit julia");
    let value: serde_json::Value = serde_json::from_str(text.trim()).expect("submit --json");
    let job = value["job_id"].as_str().expect("job id").to_string();
    let mut saw_busy = false;
    wait_for(
        "the CPU-bound job to finish",
        Duration::from_secs(300),
        || {
            for id in ["w1", "w2"] {
                if let Some(view) = grid.worker_view(id) {
                    assert_eq!(view["leasing_paused"], false, "{id} paused: {view}");
                    saw_busy |= view["latest"]["grid_cpu_percent"].as_f64().unwrap_or(0.0) > 5.0;
                }
            }
            let status = grid.client(&["status", &job, "--json"])?;
            let status: serde_json::Value = serde_json::from_str(&status).ok()?;
            (status["job"]["status"] == "completed").then_some(())
        },
    );
    assert!(saw_busy, "the agents saw the grid's workers busy");
    for id in ["w1", "w2"] {
        let log = grid.worker(id).log();
        assert!(!log.contains("leasing paused"), "{id} was paused:\n{log}");
    }
    let cpu_alerts = grid
        .alerts()
        .into_iter()
        .filter(|a| a["rule"] == "cpu_high")
        .count();
    assert_eq!(cpu_alerts, 0, "no cpu_high alert for the grid's own work");
}
