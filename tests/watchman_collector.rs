//! The collector and agents as real processes: buffered reports survive a collector outage, a
//! silent agent raises `no_report`, bad frames close only their own connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support::procs::{gridwatch, read_addr_file, wait_for, Proc};

fn collector(dir: &Path, name: &str, listen: &str, extra: &[&str]) -> (Proc, String) {
    let addr_file = dir.join(format!("{name}.addr"));
    let _ = std::fs::remove_file(&addr_file);
    let alert_log = dir.join("alerts.log");
    let mut args = vec![
        "collector",
        "--listen",
        listen,
        "--master",
        "127.0.0.1:1",
        "--alert-log",
        alert_log.to_str().expect("utf-8 path"),
        "--addr-file",
        addr_file.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(name, dir, &args, &[]);
    let addr = read_addr_file(&addr_file);
    (proc, addr)
}

/// An agent for `worker` reporting every `interval`, which may be followed by more flags.
fn agent(dir: &Path, worker: &str, collector: &str, interval: &str) -> Proc {
    let (host, port) = collector.rsplit_once(':').expect("host:port");
    let socket = dir.join(format!("{worker}.sock"));
    let mut interval = interval.split_whitespace();
    let mut args = vec![
        "agent",
        "--worker-id",
        worker,
        "--socket",
        socket.to_str().expect("utf-8 path"),
        "--collector-host",
        host,
        "--collector-port",
        port,
        "--report-interval",
        interval.next().expect("an interval"),
    ];
    args.extend(interval);
    Proc::spawn(&format!("agent-{worker}"), dir, &args, &[])
}

/// `gridwatch workers --collector ADDR --json`, parsed.
fn workers(collector: &str) -> Option<Vec<serde_json::Value>> {
    let output = gridwatch()
        .args(["workers", "--collector", collector, "--json"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

fn alert_lines(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("alerts.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("alert log line is JSON"))
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

#[test]
fn reports_made_while_the_collector_is_down_are_delivered_when_it_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut first, addr) = collector(dir.path(), "collector-1", "127.0.0.1:0", &[]);
    let _agent = agent(dir.path(), "w1", &addr, "100ms");
    wait_for("the agent's first report", Duration::from_secs(20), || {
        workers(&addr).filter(|w| w.len() == 1)
    });

    first.kill9();
    let down_at = unix_now();
    // Let the agent make several reports with nobody to take them.
    std::thread::sleep(Duration::from_millis(800));
    let up_at = unix_now();
    let (_second, addr2) = collector(dir.path(), "collector-2", &addr, &[]);
    assert_eq!(addr, addr2);

    let delivered = wait_for("buffered reports", Duration::from_secs(20), || {
        let workers = workers(&addr)?;
        let history = workers.first()?["history"].as_array()?.clone();
        let made_while_down: Vec<f64> = history
            .iter()
            .filter_map(|point| point["timestamp"].as_f64())
            .filter(|t| *t > down_at && *t < up_at)
            .collect();
        (made_while_down.len() >= 3).then_some(made_while_down)
    });
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "delivered oldest first: {delivered:?}"
    );
}

#[test]
fn a_silent_agent_raises_no_report_once_and_its_return_resolves_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_collector, addr) = collector(
        dir.path(),
        "collector",
        "127.0.0.1:0",
        &["--no-report-after", "1s"],
    );
    // Agents that send no heartbeats (older ones) are judged by their reports alone.
    let mut silent = agent(dir.path(), "w2", &addr, "100ms --beat-interval 0");
    wait_for("the agent's first report", Duration::from_secs(20), || {
        workers(&addr).filter(|w| w.len() == 1)
    });
    silent.kill9();
    let fired = wait_for("no_report firing", Duration::from_secs(20), || {
        alert_lines(dir.path())
            .into_iter()
            .find(|a| a["rule"] == "no_report")
    });
    assert_eq!(fired["state"], "firing");
    assert_eq!(fired["severity"], "critical");
    assert_eq!(fired["worker_id"], "w2");

    let _back = agent(dir.path(), "w2", &addr, "100ms --beat-interval 0");
    wait_for("no_report resolved", Duration::from_secs(20), || {
        alert_lines(dir.path())
            .into_iter()
            .find(|a| a["rule"] == "no_report" && a["state"] == "resolved")
    });
    let no_reports = alert_lines(dir.path())
        .into_iter()
        .filter(|a| a["rule"] == "no_report");
    assert_eq!(
        no_reports.count(),
        2,
        "one firing and one resolution, no repeats"
    );
}

#[test]
fn a_malformed_frame_gets_an_error_and_the_collector_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_collector, addr) = collector(dir.path(), "collector", "127.0.0.1:0", &[]);
    let mut stream = TcpStream::connect(&addr).expect("connect");
    let garbage = b"{not json";
    stream
        .write_all(&(garbage.len() as u32).to_be_bytes())
        .expect("write");
    stream.write_all(garbage).expect("write");
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("an error frame");
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).expect("error body");
    let reply: serde_json::Value = serde_json::from_slice(&body).expect("JSON error frame");
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "bad_json");
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest).map(|_| true).unwrap_or(true);
    assert!(closed && rest.is_empty(), "the bad connection is closed");

    let _agent = agent(dir.path(), "w3", &addr, "100ms");
    wait_for(
        "a report after the bad frame",
        Duration::from_secs(20),
        || workers(&addr).filter(|w| w.len() == 1),
    );
}
