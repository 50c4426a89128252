//! `gridwatch up` as a user runs it: children start, the grid answers, and SIGTERM stops every
//! child process cleanly. Also: a worker told to stop (SIGTERM) exits on its own.

mod common;

use std::time::Duration;

use common::grid::Grid;
use common::{poll_until, Proc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn alive(pid: i32) -> bool {
    // A reaped child is gone; an unreaped one is a zombie, which /proc shows as state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split_whitespace().nth(2).is_some_and(|s| s == "Z"),
        Err(_) => false,
    }
}

#[test]
fn up_starts_master_and_workers_and_sigterm_stops_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("up.log");
    let args: Vec<String> = [
        "up",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut up = Proc::spawn("up", &args, &log);
    let addr = poll_until(Duration::from_secs(30), "up to start the master", || {
        std::fs::read_to_string(data.join("master.addr")).ok()
    });
    let text = poll_until(Duration::from_secs(30), "up to list its workers", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("press Ctrl-C").then_some(text)
    });
    assert!(text.contains(&format!("listening on {}", addr.trim())));
    let pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.split("(pid ").nth(1))
        .filter_map(|p| p.trim_end_matches(')').parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "two workers listed in {text}");
    let jobs = std::process::Command::new(common::gridwatch_bin())
        .args(["jobs", "--json", "--master", addr.trim()])
        .output()
        .unwrap();
    assert!(jobs.status.success());
    poll_until(Duration::from_secs(10), "both workers to be active", || {
        let out = std::process::Command::new(common::gridwatch_bin())
            .args(["jobs", "--json", "--master", addr.trim()])
            .output()
            .ok()?;
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (value["active_workers"] == 2).then_some(())
    });

    up.signal(Signal::SIGTERM);
    let status = up
        .wait_exit(Duration::from_secs(30))
        .expect("up exits after SIGTERM");
    assert!(status.success(), "up exit status {status}");
    for pid in pids {
        assert!(
            !alive(pid),
            "worker pid {pid} still running after up stopped"
        );
    }
    assert!(
        std::net::TcpStream::connect(addr.trim()).is_err(),
        "master still listening"
    );
}

#[test]
fn worker_stops_on_sigterm() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    poll_until(Duration::from_secs(10), "w1 to be active", || {
        let value: serde_json::Value =
            serde_json::from_str(&grid.cli_ok(&["jobs", "--json"])).ok()?;
        (value["active_workers"] == 1).then_some(())
    });
    let worker = grid.worker("w1");
    let _ = kill(Pid::from_raw(worker.pid() as i32), Signal::SIGTERM);
    let status = worker
        .wait_exit(Duration::from_secs(15))
        .expect("worker exits after SIGTERM");
    assert!(status.success(), "worker exit status {status}");
}
