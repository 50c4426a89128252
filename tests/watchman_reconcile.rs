//! Alerts reconcile across a real collector restart: an alert the previous collector left
//! firing is resolved, under its own id, once its worker shows the condition no longer holds,
//! and one whose condition still holds is not raised a second time.

use std::time::Duration;

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{spawn_collector, Grid};

/// Times the agent of `worker` logged its worker ALIVE.
fn alive_count(grid: &mut Grid, worker: &str) -> usize {
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
    let mut grid = Grid::start(&["w1", "w2"], "15s");
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
        &grid.master_addr,
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
