//! `gridwatch up` as a user runs it: children start, the grid answers, and SIGTERM stops every
//! child process cleanly. Also: a worker told to stop (SIGTERM) exits on its own.

use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::{wait_for, Proc};
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
    let mut up = Proc::spawn_logged("up", &args, &log);
    let addr = wait_for("up to start the master", Duration::from_secs(30), || {
        std::fs::read_to_string(data.join("master.addr")).ok()
    });
    let text = wait_for("up to list its workers", Duration::from_secs(30), || {
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
    let jobs = std::process::Command::new(crate::support::gridwatch_bin())
        .args(["jobs", "--json", "--master", addr.trim()])
        .output()
        .unwrap();
    assert!(jobs.status.success());
    wait_for("both workers to be active", Duration::from_secs(10), || {
        let out = std::process::Command::new(crate::support::gridwatch_bin())
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
    wait_for("w1 to be active", Duration::from_secs(10), || {
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

/// A second `up` (or `master`) on a data directory that a running grid holds exits 2 naming the
/// first master's pid, before it touches any address file; the first grid's job stays exact.
#[test]
fn a_second_grid_on_the_same_data_dir_exits_2_and_the_first_is_unaffected() {
    use crate::support::grid::{naive_hits, write_fasta, Bases};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let up_args = |listen: &str| -> Vec<String> {
        [
            "up",
            "--workers",
            "1",
            "--listen",
            listen,
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([data_arg.clone()])
        .collect()
    };
    let mut first =
        Proc::spawn_logged("up-1", &up_args("127.0.0.1:0"), &dir.path().join("up1.log"));
    let addr = wait_for("the first grid's master", Duration::from_secs(30), || {
        std::fs::read_to_string(data.join("master.addr")).ok()
    });
    let addr = addr.trim().to_string();
    let lock = std::fs::read_to_string(data.join("master.lock")).expect("the master's lock file");
    let master_pid = lock.trim().to_string();
    assert!(
        master_pid.parse::<u32>().is_ok(),
        "lock holds a pid: {lock:?}"
    );

    for (what, args) in [
        ("up", up_args("127.0.0.1:0")),
        (
            "master",
            [
                "master",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([data_arg.clone()])
            .collect(),
        ),
    ] {
        let out = std::process::Command::new(crate::support::gridwatch_bin())
            .args(&args)
            .output()
            .expect("running the second grid");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "second {what}: {stderr}");
        assert!(
            stderr.contains(&format!("pid {master_pid}")) && stderr.contains("--data-dir"),
            "second {what} names the first master's pid and the flag: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("master.addr"))
                .unwrap()
                .trim(),
            addr,
            "second {what} left the first grid's address file alone"
        );
    }

    let mut bases = Bases::new(7);
    let records = vec![("chr1".to_string(), bases.take(200_000))];
    let fasta = dir.path().join("g.fa");
    write_fasta(&fasta, &records, 60, "\n");
    let out = std::process::Command::new(crate::support::gridwatch_bin())
        .args([
            "submit",
            &fasta.display().to_string(),
            "--pattern",
            "ACGTA",
            "--wait",
            "--json",
        ])
        .args(["--master", &addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("submit --json");
    let expected = naive_hits(&records, "ACGTA", false).len() as u64;
    assert_eq!(value["total"], expected, "{value}");

    first.signal(Signal::SIGTERM);
    first.wait_exit(Duration::from_secs(30)).expect("up exits");
}
