//! Whole-host loss with real processes: an agent and its worker killed together, or both
//! SIGSTOPped (a cut link). Agents report in full every 10 s, so only their 1 s heartbeats can
//! tell the collector in time: `worker_unreachable` fires, the master re-queues the host's
//! tasks, `workers` shows the host inactive, and a host that returns is active again with its
//! late results counted once. An agent that comes back without its worker says so, and the
//! collector raises `worker_missing` until the worker is back.

use std::time::{Duration, Instant};

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{unix_now, WatchedGrid};
use nix::sys::signal::Signal;

/// The detection goal is 5 s; this bound only catches a detector that does not work at all,
/// without failing on a loaded machine. The measured figures are printed.
const GENEROUS: Duration = Duration::from_secs(10);

fn host_grid() -> WatchedGrid {
    // The worker heartbeat timeout is long: the agent must not be what notices anything.
    WatchedGrid::start_reporting("embedded", &["w1", "w2"], "60s", &[], "10s")
}

/// Waits until the master has logged re-queueing `worker`'s tasks; how many it re-queued.
fn wait_requeued(grid: &WatchedGrid, worker: &str) -> u64 {
    wait_for(
        &format!("{worker}'s leases re-queued"),
        Duration::from_secs(30),
        || grid.reclaimed(worker),
    )
}

#[test]
fn a_host_killed_whole_is_unreachable_within_seconds_and_its_tasks_are_requeued() {
    let mut grid = host_grid();
    let (job, expected) = grid.start_job_under_way(12_000_000);

    grid.stop_while_leasing("w1");
    let killed = Instant::now();
    let killed_unix = unix_now();
    grid.agent("w1").kill9();
    grid.worker("w1").kill9();

    let lost = wait_for("worker_unreachable for w1", Duration::from_secs(30), || {
        grid.rule_alert("worker_unreachable", "w1", "firing")
    });
    let detected = lost["timestamp"].as_f64().expect("timestamp") - killed_unix;
    assert_eq!(lost["severity"], "critical");
    let reclaimed = wait_requeued(&grid, "w1");
    let requeued = killed.elapsed();
    println!(
        "host kill -9: worker_unreachable after {detected:.3} s, tasks re-queued after {:.3} s \
         ({reclaimed} leases)",
        requeued.as_secs_f64()
    );
    assert!(reclaimed >= 1, "w1 held leases when its host died");
    assert!(
        requeued < GENEROUS,
        "re-queued {requeued:?} after the host died"
    );

    let view = wait_for("w1 shown inactive", Duration::from_secs(10), || {
        grid.worker_view("w1").filter(|w| w["state"] == "inactive")
    });
    assert_eq!(view["unreachable"], true, "{view}");
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    let dead = grid.rule_alert("worker_dead", "w1", "firing");
    assert!(dead.is_none(), "no agent survived to say DEAD: {dead:?}");
}

#[test]
fn a_cut_link_requeues_within_seconds_and_the_returning_host_is_active_again() {
    let mut grid = host_grid();
    let (job, expected) = grid.start_job_under_way(6_000_000);

    grid.stop_while_leasing("w1");
    grid.agent("w1").signal(Signal::SIGSTOP);
    let cut = Instant::now();
    let reclaimed = wait_requeued(&grid, "w1");
    let requeued = cut.elapsed();
    println!(
        "cut link: tasks re-queued after {:.3} s ({reclaimed} leases)",
        requeued.as_secs_f64()
    );
    assert!(reclaimed >= 1, "w1 held leases when cut off");
    assert!(requeued < GENEROUS, "re-queued {requeued:?} after the cut");
    let view = wait_for("w1 shown inactive", Duration::from_secs(10), || {
        grid.worker_view("w1").filter(|w| w["state"] == "inactive")
    });
    assert_eq!(view["unreachable"], true, "{view}");
    assert_eq!(grid.leases_held("w1"), 0, "nothing is left leased to w1");

    grid.agent("w1").signal(Signal::SIGCONT);
    grid.worker("w1").signal(Signal::SIGCONT);
    let back = Instant::now();
    wait_for("w1 active again", Duration::from_secs(30), || {
        grid.worker_view("w1").filter(|w| {
            w["state"] == "active" && w["status"] == "ALIVE" && w["unreachable"] == false
        })
    });
    println!(
        "link restored: w1 active again after {:.3} s",
        back.elapsed().as_secs_f64()
    );
    wait_for(
        "worker_unreachable resolved",
        Duration::from_secs(10),
        || grid.rule_alert("worker_unreachable", "w1", "resolved"),
    );
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(
        grid.total_matches(&job),
        expected,
        "late results counted once"
    );
}

#[test]
fn an_agent_restarted_without_its_worker_raises_worker_missing_until_the_worker_returns() {
    let mut grid = host_grid();
    grid.wait_alive(2);
    grid.agent("w1").kill9();
    grid.worker("w1").kill9();
    wait_for("the host loss noticed", Duration::from_secs(30), || {
        grid.rule_alert("worker_unreachable", "w1", "firing")
    });

    // Only the agent comes back, judging its worker missing after a 3 s wait.
    let restarted = Instant::now();
    grid.restart_agent("w1", "3s");
    let missing = wait_for("worker_missing for w1", Duration::from_secs(30), || {
        grid.rule_alert("worker_missing", "w1", "firing")
    });
    let after = restarted.elapsed();
    println!(
        "agent alone: worker_missing {:.3} s after the agent restarted (its timeout 3 s)",
        after.as_secs_f64()
    );
    assert!(
        after >= Duration::from_secs(3),
        "the agent waited for its worker first"
    );
    assert_eq!(missing["severity"], "critical");
    assert!(
        grid.rule_alert("worker_unreachable", "w1", "resolved")
            .is_some(),
        "the agent is heard again: the host is back, its worker is not"
    );
    let view = wait_for("w1 shown missing", Duration::from_secs(10), || {
        grid.worker_view("w1").filter(|w| w["status"] == "MISSING")
    });
    assert_eq!(view["state"], "inactive", "{view}");
    let alerts = grid.client(&["alerts"]).expect("alerts");
    assert!(
        alerts.contains("worker_missing"),
        "`gridwatch alerts` lists it: {alerts}"
    );
    let stats = wait_for("/stats counts it firing", Duration::from_secs(10), || {
        let (status, _, body) =
            crate::support::http::request(&grid.http_addr(), "GET", "/stats", None, "");
        let stats: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (status == 200 && stats["alerts_firing"]["critical"].as_u64() == Some(1)).then_some(stats)
    });
    assert_eq!(stats["alerts_firing"]["warning"], 0, "{stats}");

    grid.restart_worker("w1");
    let resolved = wait_for("worker_missing resolved", Duration::from_secs(30), || {
        grid.rule_alert("worker_missing", "w1", "resolved")
    });
    assert_eq!(
        resolved["id"], missing["id"],
        "resolved under the id it fired with"
    );
    grid.wait_alive(2);
}
