//! Alerts reconcile across a real collector restart: an alert the previous collector left
//! firing is resolved, under its own id, once its worker shows the condition no longer holds,
//! and one whose condition still holds is not raised a second time. A restarted collector also
//! takes back the workers the grid knew, so a host lost while no collector watched is found.

use std::time::{Duration, Instant};

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{spawn_collector, unix_now, WatchedGrid};

/// The goal is the host-loss window (three 1 s agent heartbeats) after the collector is back;
/// this bound only catches a collector that never notices, without failing on a loaded machine.
/// The measured figures are printed.
const GENEROUS: Duration = Duration::from_secs(10);

/// Times the agent of `worker` logged its worker ALIVE.
fn alive_count(grid: &mut WatchedGrid, worker: &str) -> usize {
    grid.agent(worker)
        .log_json()
        .iter()
        .filter(|line| {
            line["fields"]["message"] == "worker status changed"
                && line["fields"]["status"] == "ALIVE"
        })
        .count()
}

#[test]
fn a_worker_dead_alert_is_resolved_after_a_collector_restart_once_the_worker_is_back() {
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    grid.wait_alive(2);
    grid.worker("w1").kill9();
    let dead = wait_for("DEAD alert for w1", Duration::from_secs(10), || {
        grid.alert("w1", "firing")
    });
    // w2's agent keeps reporting, and its worker stays alive: nothing to reconcile there.
    grid.collector.kill9();
    grid.restart_worker("w1");
    wait_for(
        "w1 alive again at its agent",
        Duration::from_secs(20),
        || (alive_count(&mut grid, "w1") >= 2).then_some(()),
    );

    let (collector, addr) = spawn_collector(
        grid.dir.path(),
        &grid.collector_addr,
        &grid.addr,
        &[],
        "embedded",
    );
    grid.collector = collector;
    assert_eq!(addr, grid.collector_addr);
    let resolved = wait_for(
        "the old DEAD alert resolved",
        Duration::from_secs(30),
        || grid.alert("w1", "resolved"),
    );
    assert_eq!(
        resolved["id"], dead["id"],
        "resolved under the id it fired with"
    );
    let dead_events: Vec<serde_json::Value> = grid
        .alerts()
        .into_iter()
        .filter(|a| a["rule"] == "worker_dead" && a["worker_id"] == "w1")
        .collect();
    let states: Vec<&str> = dead_events
        .iter()
        .filter_map(|a| a["state"].as_str())
        .collect();
    // Reports the agent buffered while the collector was away may say DEAD (before the worker
    // came back): the adopted alert covers them, so no second firing.
    assert_eq!(states, ["firing", "resolved"], "{dead_events:?}");
    grid.wait_alive(2);
}

/// Waits until the agent of `worker` has logged that its collector is gone.
fn wait_agent_lost_collector(grid: &mut WatchedGrid, worker: &str) {
    wait_for(
        &format!("{worker}'s agent to notice the collector is gone"),
        Duration::from_secs(30),
        || {
            grid.agent(worker)
                .log_json()
                .iter()
                .any(|line| {
                    line["fields"]["message"]
                        == "lost the collector; buffering reports until it returns"
                })
                .then_some(())
        },
    );
}

#[test]
fn a_host_lost_while_the_collector_was_down_is_found_when_it_returns_and_requeued_at_once() {
    let redis = crate::support::redis::RedisServer::start();
    lose_a_host_while_the_collector_is_down(&redis.url());
}

#[test]
fn with_the_embedded_backend_the_restarted_collector_learns_the_workers_from_the_master() {
    lose_a_host_while_the_collector_is_down("embedded");
}

/// Kills the collector, then the whole host of w1 while it holds leases, then restarts the
/// collector: w1 must be found lost, re-queued at once and shown so; w2, alive, must not be.
fn lose_a_host_while_the_collector_is_down(backend: &str) {
    // Full reports every 10 s and a long worker heartbeat timeout: only the agents' 1 s
    // heartbeats, or their absence, can tell the restarted collector anything in time. Leases
    // last 600 s, so the job can only finish in time through the re-queue.
    let mut grid = WatchedGrid::start_reporting(backend, &["w1", "w2"], "60s", &[], "10s");
    let (job, expected) = grid.start_job_under_way(12_000_000);

    grid.collector.kill9();
    wait_agent_lost_collector(&mut grid, "w1");
    wait_agent_lost_collector(&mut grid, "w2");
    // The whole host of w1 dies while no collector watches, holding leases.
    grid.stop_while_leasing("w1");
    grid.agent("w1").kill9();
    grid.worker("w1").kill9();
    let held = grid.leases_held("w1");
    assert!(held >= 1, "w1 held leases when its host died");

    let back_unix = unix_now();
    let back = Instant::now();
    grid.start_collector_again();
    let lost = wait_for("worker_unreachable for w1", Duration::from_secs(30), || {
        grid.rule_alert("worker_unreachable", "w1", "firing")
    });
    let detected = lost["timestamp"].as_f64().expect("timestamp") - back_unix;
    let reclaimed = wait_for("w1's leases re-queued", Duration::from_secs(30), || {
        grid.reclaimed("w1")
    });
    let requeued = back.elapsed();
    println!(
        "{backend}: host lost while the collector was down: worker_unreachable {detected:.3} s \
         after the collector was restarted, {reclaimed} of {held} leases re-queued after {:.3} s",
        requeued.as_secs_f64()
    );
    assert_eq!(lost["severity"], "critical");
    assert!(
        detected < GENEROUS.as_secs_f64(),
        "alerted {detected:.3} s after the collector returned"
    );
    assert!(reclaimed >= 1, "{reclaimed} leases re-queued");
    assert!(
        requeued < GENEROUS,
        "re-queued {requeued:?} after the restart"
    );
    assert_eq!(grid.leases_held("w1"), 0, "nothing is left leased to w1");

    let view = wait_for("w1 shown lost", Duration::from_secs(10), || {
        grid.worker_view("w1")
            .filter(|w| w["state"] == "inactive" && w["unreachable"] == true)
    });
    let table = grid.client(&["workers"]).expect("workers");
    let row = table
        .lines()
        .find(|line| line.starts_with("w1 "))
        .unwrap_or_else(|| panic!("w1 is listed: {table}\n{view}"));
    assert!(
        row.contains("UNREACHABLE") && !row.contains("ALIVE"),
        "the dead worker is not shown alive: {row}"
    );

    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    let false_alarm = grid.rule_alert("worker_unreachable", "w2", "firing");
    assert!(
        false_alarm.is_none(),
        "w2's agent lived and came back in time: {false_alarm:?}"
    );
}
