//! `gridwatch demo --kill-worker` end to end: a worker killed mid-job, the alert, the re-queue and
//! the exact result, on one machine.

use crate::support::procs::gridwatch;

#[test]
fn demo_kill_worker_shows_the_alert_the_requeue_and_an_exact_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = gridwatch()
        .args([
            "demo",
            "--size",
            "32MiB",
            "--workers",
            "2",
            "--kill-worker",
            "--keep",
            "--dir",
        ])
        .arg(dir.path().join("demo"))
        .output()
        .expect("run demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stderr}");
    assert!(stderr.contains("kill -9 worker w1"), "{stderr}");
    assert!(stderr.contains("CRITICAL: worker w1 is DEAD"), "{stderr}");
    assert!(stderr.contains("worker_down w1: re-queued"), "{stderr}");
    // The kill came mid-job: the master heard of w1's death before the job finished.
    let log = std::fs::read_to_string(dir.path().join("demo/data/logs/master.log"))
        .expect("the master's log is kept");
    let stamp = |message: &str| -> String {
        let line = log
            .lines()
            .find(|line| line.contains(message))
            .unwrap_or_else(|| panic!("no {message:?} in the master's log:\n{log}"));
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        value["timestamp"]
            .as_str()
            .expect("a timestamp")
            .to_string()
    };
    let (down, finished) = (
        stamp("worker_down from the collector"),
        stamp("job finished"),
    );
    assert!(
        down < finished,
        "w1 died at {down}, after the job finished at {finished}"
    );
    // The demo itself compares the grid's counts and positions with a local search.
    assert!(
        stderr.contains("OK: the grid's counts and positions equal local search"),
        "{stderr}"
    );
}
