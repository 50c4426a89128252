//! The collector under attack with raw sockets, as the master is in `bounded_resources.rs`: a flood
//! of idle and trickling connections from one address, and unauthenticated peers announcing huge
//! frames. Throughout, an honest `gridwatch workers --json` against the collector is served and
//! the honest agent's reports keep its worker alive. (Strangers without the token, or with a wrong
//! one, are refused by the collector in `security.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::procs::gridwatch;
use common::raw::{connect_from, flood, peak_rss_kib, persistent_flood, read_json};
use common::watchman_grid::Grid;
use tokio::io::AsyncWriteExt;

/// Far above a local round trip, far below the minutes a stalled collector would take.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// Asks the collector itself for the liveness view, as an operator would; asserts it answers in
/// time and that the honest agent's worker is ALIVE (so its reports are still taken).
fn honest_query(collector: &str) -> Duration {
    let started = Instant::now();
    let output = gridwatch()
        .args(["workers", "--json", "--collector", collector])
        .output()
        .expect("run gridwatch workers");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "gridwatch workers failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let workers: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("a JSON list of workers");
    let w1 = workers
        .iter()
        .find(|w| w["worker_id"] == "w1")
        .unwrap_or_else(|| panic!("w1 missing from {workers:?}"));
    assert_eq!(w1["status"], "ALIVE", "{w1}");
    assert!(took < SERVED_WITHIN, "an honest query took {took:?}");
    took
}

/// A grid whose collector has `flags`, once its one worker's agent has reported.
fn grid_with_collector(flags: &[&str]) -> Grid {
    let grid = Grid::start_with(&["w1"], "15s", flags);
    common::procs::wait_for("w1 reported", Duration::from_secs(30), || {
        let output = gridwatch()
            .args(["workers", "--json", "--collector", &grid.collector_addr])
            .output()
            .ok()?;
        let workers: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
        workers
            .iter()
            .any(|w| w["worker_id"] == "w1" && w["status"] == "ALIVE")
            .then_some(())
    });
    grid
}

/// The agent never lost its worker to the attack: no death or unreachable alert fired.
fn no_worker_alert(grid: &Grid) {
    for rule in ["worker_dead", "worker_unreachable"] {
        assert!(
            grid.rule_alert(rule, "w1", "firing").is_none(),
            "{rule} fired during the attack: {:?}",
            grid.alerts()
        );
    }
}

#[test]
fn idle_and_trickling_floods_from_one_address_do_not_lock_out_agents_or_clients() {
    // 300 connections from one address against 200 slots: without a per-address share the flood
    // would hold every slot, and the honest clients would queue behind it.
    let grid = grid_with_collector(&["--max-connections", "200", "--hello-timeout", "2"]);
    let collector = grid.collector_addr.clone();
    let started = Instant::now();
    runtime().block_on(async {
        let attackers = flood(&collector, 300).await;
        let mut every = tokio::time::interval(Duration::from_millis(1500));
        let mut slowest = Duration::ZERO;
        for _ in 0..6 {
            every.tick().await;
            let collector = collector.clone();
            let took = tokio::task::spawn_blocking(move || honest_query(&collector))
                .await
                .expect("honest query");
            slowest = slowest.max(took);
        }
        eprintln!("slowest honest query during the flood: {slowest:?}");
        for attacker in attackers {
            attacker.await.expect("attacker task");
        }
    });
    // Every stranger was closed by its hello deadline or refused as busy, not held for the
    // collector's 10-minute idle timeout.
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    honest_query(&grid.collector_addr);
    no_worker_alert(&grid);
}

#[test]
fn unauthenticated_large_frames_are_refused_at_64_kib_with_bounded_collector_memory() {
    let grid = grid_with_collector(&[]);
    let collector = grid.collector_addr.clone();
    runtime().block_on(async {
        let mut peers = Vec::new();
        for i in 0..120u32 {
            let collector = collector.clone();
            peers.push(tokio::spawn(async move {
                let source = [127, 0, 0, 10 + (i % 4) as u8];
                let mut stream = connect_from(source, &collector).await.expect("connect");
                if i % 2 == 0 {
                    // Announces 16 MiB, the largest frame after a hello, and sends most of it
                    // without ever saying hello.
                    let mut bytes = ((16u32 << 20) - 16).to_be_bytes().to_vec();
                    bytes.extend(vec![b'A'; 256 * 1024]);
                    let _ = stream.write_all(&bytes).await;
                    if let Some(reply) = read_json(&mut stream).await {
                        assert_eq!(reply["code"], "frame_too_large", "{reply}");
                    }
                    let rest = vec![b'A'; 1 << 20];
                    for _ in 0..15 {
                        if stream.write_all(&rest).await.is_err() {
                            break;
                        }
                    }
                } else {
                    // Just under the pre-hello limit, held open without its last bytes.
                    let mut bytes = (60_000u32).to_be_bytes().to_vec();
                    bytes.extend(vec![b'{'; 59_000]);
                    stream.write_all(&bytes).await.expect("most of a frame");
                    if let Some(reply) = read_json(&mut stream).await {
                        let code = reply["code"].as_str().unwrap_or_default().to_string();
                        assert!(code == "timeout" || code == "busy", "{reply}");
                    }
                }
            }));
        }
        for peer in peers {
            peer.await.expect("peer task");
        }
    });
    let peak_mib = peak_rss_kib(grid.collector.pid()) / 1024;
    eprintln!("collector peak RSS under the attack: {peak_mib} MiB");
    assert!(peak_mib < 100, "the collector peaked at {peak_mib} MiB");
    honest_query(&grid.collector_addr);
    no_worker_alert(&grid);
}

#[test]
fn a_pre_hello_flood_from_thirty_addresses_leaves_room_for_agents_and_clients() {
    let grid = grid_with_collector(&["--max-unauthenticated-connections", "64"]);
    let collector = grid.collector_addr.clone();
    let until = Instant::now() + Duration::from_secs(25);
    let runtime = runtime();
    // 1,400 sockets from 30 addresses (47 each, within the per-address share) that never
    // greet; each reconnects a second after the collector closes it.
    let attack = runtime.spawn(persistent_flood(
        collector.clone(),
        1400,
        47,
        b"",
        Duration::from_secs(2),
        Duration::from_secs(1),
        until,
    ));
    std::thread::sleep(Duration::from_secs(3));
    let mut slowest = Duration::ZERO;
    while Instant::now() + Duration::from_secs(3) < until {
        slowest = slowest.max(honest_query(&collector));
        std::thread::sleep(Duration::from_millis(500));
    }
    let opened = runtime.block_on(attack).expect("flood");
    eprintln!(
        "pre-hello flood of {opened} connections from 30 addresses: slowest honest query {slowest:?}"
    );
    honest_query(&collector);
    no_worker_alert(&grid);
}
