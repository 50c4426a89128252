//! `gridwatch demo --kill-worker` end to end: a worker killed mid-job, the alert, the re-queue and
//! the exact result, on one machine.

mod common;

use common::procs::gridwatch;

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
    // The demo itself compares the grid's counts and positions with a local search.
    assert!(
        stderr.contains("OK: the grid's counts and positions equal local search"),
        "{stderr}"
    );
}
