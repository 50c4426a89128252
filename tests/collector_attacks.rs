//! The collector under attack with raw sockets, as the master is in `bounded_resources.rs`: a flood
//! of idle and trickling connections from one address, and unauthenticated peers announcing huge
//! frames. Throughout, an honest `gridwatch workers --json` against the collector is served and
//! the honest agent's reports keep its worker alive. An agent flapping made-up ids gets one
//! `worker_flapping` alert per id, then silence, with alerts.log and the `worker_down`s to the
//! master bounded; ids past the per-address cap and ids breaking the id rule are refused; an
//! honest death is still alerted and re-queued. (Strangers without the token, or with a wrong
//! one, are refused by the collector in `security.rs`.)

use std::time::{Duration, Instant};

use crate::support::procs::{gridwatch, wait_for};
use crate::support::raw::{connect_from, flood, peak_rss_kib, persistent_flood, read_json};
use crate::support::watchman_grid::WatchedGrid;
use gridwatch::protocol::{
    Connection, ErrorCode, Message, Role, WorkerReport, WorkerStatus, PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
fn grid_with_collector(flags: &[&str]) -> WatchedGrid {
    let grid = WatchedGrid::start_with(&["w1"], "15s", flags);
    crate::support::procs::wait_for("w1 reported", Duration::from_secs(30), || {
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
fn no_worker_alert(grid: &WatchedGrid) {
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

/// An agent's report for `worker` in `status`, as a hostile agent would send it.
fn report(worker: &str, seq: u64, status: WorkerStatus) -> Message {
    Message::Metrics {
        data: Box::new(WorkerReport {
            worker_id: worker.into(),
            seq,
            timestamp: crate::support::watchman_grid::unix_now(),
            status,
            status_reason: None,
            cpu_percent: 1.0,
            memory_mb: 10.0,
            memory_percent: 1.0,
            disk_percent: 1.0,
            process_cpu_percent: None,
            process_rss_mb: None,
            grid_cpu_percent: None,
            pid: None,
            tasks_processed: 0,
            current_task: None,
            tasks: Vec::new(),
            worker_uptime_secs: None,
            report_interval_secs: 1.0,
            last_rtt_ms: None,
            beat_interval_secs: None,
        }),
    }
}

/// An agent's hello naming `worker`, from `source`; the collector's answer.
async fn agent_hello(
    source: [u8; 4],
    collector: &str,
    worker: &str,
) -> (Connection<TcpStream>, Message) {
    let stream = connect_from(source, collector).await.expect("connect");
    let mut conn = Connection::new(stream);
    let hello = Message::Hello {
        role: Role::Agent,
        version: PROTOCOL_VERSION,
        token: None,
        id: Some(worker.into()),
        instance: None,
    };
    conn.write_message(&hello).await.expect("hello");
    let answer = conn.expect_message().await.expect("an answer to the hello");
    (conn, answer)
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Lines of the master's log recording a `worker_down` for `worker`.
fn worker_downs(grid: &WatchedGrid, worker: impl Fn(&str) -> bool) -> usize {
    grid.master()
        .log_json()
        .iter()
        .filter(|line| line["fields"]["message"] == "worker_down from the collector")
        .filter(|line| line["fields"]["worker"].as_str().is_some_and(&worker))
        .count()
}

#[test]
fn a_flapping_agent_is_damped_its_ids_capped_and_bad_ids_refused() {
    flapping_attack("embedded");
}

#[test]
fn with_redis_a_flapping_agent_is_damped_its_ids_capped_and_bad_ids_refused() {
    let redis = crate::support::redis::RedisServer::start();
    flapping_attack(&redis.url());
}

/// Twenty made-up ids flapping for ten seconds from one address against a grid on `backend`,
/// then an id too many, look-alike ids, and an honest worker's death mid-job.
fn flapping_attack(backend: &str) {
    const GHOSTS: usize = 20;
    const FLAP_CHANGES: usize = 6;
    let mut grid = WatchedGrid::start_on(
        backend,
        &["w1", "w2"],
        "15s",
        &[
            "--max-workers-per-address",
            &GHOSTS.to_string(),
            "--flap-changes",
            &FLAP_CHANGES.to_string(),
        ],
    );
    let collector = grid.collector_addr.clone();
    let alert_log = grid.dir.path().join("alerts.log");
    let attacker = [127, 0, 0, 30];
    let attack_for = Duration::from_secs(10);
    let (reports, refusals) = runtime().block_on(async {
        // Twenty made-up ids flapping ALIVE/DEAD as fast as the collector acks.
        let mut flappers = Vec::new();
        for i in 0..GHOSTS {
            let collector = collector.clone();
            flappers.push(tokio::spawn(async move {
                let ghost = format!("ghost-{i}");
                let (mut conn, welcome) = agent_hello(attacker, &collector, &ghost).await;
                assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");
                let started = Instant::now();
                let mut seq = 0u64;
                while started.elapsed() < attack_for {
                    let status = if seq % 2 == 0 {
                        WorkerStatus::Dead
                    } else {
                        WorkerStatus::Alive
                    };
                    conn.write_message(&report(&ghost, seq, status))
                        .await
                        .expect("report");
                    conn.expect_message().await.expect("metrics_ack");
                    seq += 1;
                }
                // Each ghost ends dead, so the liveness view counts only the honest workers alive.
                conn.write_message(&report(&ghost, seq, WorkerStatus::Dead))
                    .await
                    .expect("report");
                conn.expect_message().await.expect("metrics_ack");
                seq
            }));
        }
        let mut reports = 0;
        for flapper in flappers {
            reports += flapper.await.expect("flapper");
        }
        // The same address may not introduce one id more; another address may.
        let (_, over) = agent_hello(attacker, &collector, "ghost-extra").await;
        let (_, elsewhere) = agent_hello([127, 0, 0, 31], &collector, "ghost-extra").await;
        assert!(
            matches!(elsewhere, Message::Welcome { .. }),
            "{elsewhere:?}"
        );
        // Look-alike and oversized ids are refused with the rule.
        let (_, spaced) = agent_hello([127, 0, 0, 32], &collector, "w1 ").await;
        let (_, long) = agent_hello([127, 0, 0, 32], &collector, &"w".repeat(60_000)).await;
        (reports, [over, spaced, long])
    });
    eprintln!("{reports} flapping reports in {attack_for:?}");
    assert!(
        reports > 1000,
        "the attack was too slow to prove anything: {reports}"
    );
    match &refusals[0] {
        Message::Error { code, message, .. } => {
            assert_eq!(*code, ErrorCode::RateLimited, "{message}");
            assert!(message.contains("--max-workers-per-address"), "{message}");
        }
        other => panic!("an id over the per-address cap was welcomed: {other:?}"),
    }
    for refusal in &refusals[1..] {
        match refusal {
            Message::Error { code, message, .. } => {
                assert_eq!(*code, ErrorCode::BadMessage, "{message}");
                assert!(message.contains("use 1-100 ASCII letters"), "{message}");
                assert!(message.len() < 400, "the refusal echoes the whole id");
            }
            other => panic!("a bad id was welcomed: {other:?}"),
        }
    }

    // Each ghost said at most FLAP_CHANGES things, then "flapping", then nothing.
    let alerts = grid.alerts();
    let ghost_alerts = alerts
        .iter()
        .filter(|a| {
            a["worker_id"]
                .as_str()
                .is_some_and(|w| w.starts_with("ghost-"))
        })
        .count();
    let flapping = alerts
        .iter()
        .filter(|a| a["rule"] == "worker_flapping" && a["state"] == "firing")
        .count();
    let log_bytes = file_len(&alert_log);
    let downs = wait_for("the master to take the worker_downs", SERVED_WITHIN, || {
        Some(worker_downs(&grid, |w| w.starts_with("ghost-")))
    });
    eprintln!(
        "{backend}: alerts.log: {log_bytes} bytes, {ghost_alerts} ghost alert lines, {flapping} flapping; \
         worker_down sent to the master: {downs}; collector log: {} bytes",
        grid.collector.log().len()
    );
    assert_eq!(flapping, GHOSTS, "one flapping alert per ghost");
    assert!(
        ghost_alerts <= GHOSTS * (FLAP_CHANGES + 1),
        "{ghost_alerts} ghost alert lines"
    );
    assert!(
        log_bytes < 256 * 1024,
        "alerts.log grew to {log_bytes} bytes"
    );
    assert!(
        downs <= GHOSTS * FLAP_CHANGES / 2,
        "{downs} worker_down sent to the master"
    );
    assert!(
        grid.collector.log().len() < 1024 * 1024,
        "the collector log grew to {} bytes",
        grid.collector.log().len()
    );

    // An honest worker's death is still alerted at once and its tasks re-queued, and the job
    // it was running completes exactly.
    let (job, expected) = grid.start_job_under_way(12_000_000);
    grid.stop_while_leasing("w1");
    grid.worker("w1").kill9();
    wait_for("DEAD alert for w1", SERVED_WITHIN, || {
        grid.alert("w1", "firing")
    });
    let reclaimed = wait_for("w1's leases re-queued", SERVED_WITHIN, || {
        grid.reclaimed("w1")
    });
    assert!(
        reclaimed >= 1,
        "w1 held leases when killed; {reclaimed} re-queued"
    );
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
}
