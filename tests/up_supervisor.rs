//! `gridwatch up` as a supervisor: a worker killed with SIGKILL is restarted (a new pid) while `up`
//! keeps running, and jobs before, during (its `submit --wait` still running) and after are
//! exact; a master that cannot start makes `up` exit with the master's own reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases};
use crate::support::{gridwatch_bin, wait_for, Proc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const START: Duration = Duration::from_secs(30);

fn alive(pid: i32) -> bool {
    // A reaped child is gone; an unreaped one is a zombie, which /proc shows as state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split_whitespace().nth(2).is_some_and(|s| s == "Z"),
        Err(_) => false,
    }
}

/// The pid in `up`'s line "PREFIX (pid N)", once it has been printed.
fn pid_after(text: &str, prefix: &str) -> Option<i32> {
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| rest.trim().strip_prefix("(pid "))
        .filter_map(|rest| rest.trim_end_matches(')').parse().ok())
        .next_back()
}

/// A job's (processed, total) chunks, once the master knows it.
fn progress(addr: &str, job: &str) -> Option<(u64, u64)> {
    let out = Command::new(gridwatch_bin())
        .args(["status", job, "--json", "--master", addr])
        .output()
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let progress = &value["job"]["progress"];
    Some((
        progress["processed_chunks"].as_u64()?,
        progress["total_chunks"].as_u64()?,
    ))
}

fn active_workers(addr: &str) -> Option<u64> {
    let out = Command::new(gridwatch_bin())
        .args(["jobs", "--json", "--master", addr])
        .output()
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    value["active_workers"].as_u64()
}

/// `submit FILE -p PATTERN --wait`, then the job's total count.
fn grid_count(addr: &str, file: &Path, pattern: &str, job: &str) -> u64 {
    let out = Command::new(gridwatch_bin())
        .arg("submit")
        .arg(file)
        .args(["-p", pattern, "--chunk-size", "1000", "--job-id", job])
        .args(["--wait", "--format", "count", "--master", addr])
        .output()
        .expect("running gridwatch submit");
    assert!(
        out.status.success(),
        "submit {job} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_total(&String::from_utf8_lossy(&out.stdout))
}

/// Starts `submit --wait` of `ACGTA` in 2,000-base chunks, as job `job`, over a one-record
/// genome of `bases` pseudo-random bases written under `dir`, and returns once the job is under
/// way (a chunk done, most not): the client, and the count a naive scan finds.
fn submit_under_way(
    addr: &str,
    dir: &Path,
    seed: u64,
    bases: usize,
    job: &str,
) -> (std::process::Child, u64) {
    let big = vec![("chr1".to_string(), Bases::new(seed).take(bases))];
    let big_fasta = dir.join(format!("{job}.fa"));
    write_fasta(&big_fasta, &big, 60, "\n");
    let in_flight = Command::new(gridwatch_bin())
        .arg("submit")
        .arg(&big_fasta)
        .args(["-p", "ACGTA", "--chunk-size", "2000", "--job-id", job])
        .args(["--wait", "--format", "count", "--master", addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running gridwatch submit");
    wait_for("the job under way", START, || {
        let (done, total) = progress(addr, job)?;
        (done > 0 && done * 4 < total).then_some(())
    });
    (in_flight, naive_hits(&big, "ACGTA", false).len() as u64)
}

/// Waits for a client [`submit_under_way`] started: it succeeds and prints `expected`.
fn assert_count_printed(in_flight: std::process::Child, expected: u64) {
    let during = in_flight.wait_with_output().expect("submit --wait ends");
    assert!(
        during.status.success(),
        "submit --wait of the job in flight failed: {}",
        String::from_utf8_lossy(&during.stderr)
    );
    assert_eq!(
        parse_total(&String::from_utf8_lossy(&during.stdout)),
        expected,
        "the job in flight when w1 died"
    );
}

fn up_args(data: &Path, workers: &str, listen: &str) -> Vec<String> {
    let data = data.display().to_string();
    [
        "up",
        "--workers",
        workers,
        "--listen",
        listen,
        "--data-dir",
        &data,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn up_restarts_a_killed_worker_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log: PathBuf = dir.path().join("up.log");
    let args = up_args(&data, "2", "127.0.0.1:0");
    let mut up = Proc::spawn_logged("up", &args, &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let text = wait_for("up to list its workers", START, || {
        let text = read_log();
        text.contains("press Ctrl-C").then_some(text)
    });
    let addr = std::fs::read_to_string(data.join("master.addr")).unwrap();
    let addr = addr.trim();
    let first_pid = pid_after(&text, "worker   w1").expect("w1's pid in up's output");
    wait_for("both workers to be active", START, || {
        (active_workers(addr)? == 2).then_some(())
    });

    let records = vec![
        ("chr1".to_string(), Bases::new(11).take(20_000)),
        ("chr2".to_string(), Bases::new(12).take(7_001)),
    ];
    let fasta = dir.path().join("genome.fa");
    write_fasta(&fasta, &records, 60, "\n");
    let before = grid_count(addr, &fasta, "ACGTA", "before-kill");
    assert_eq!(before, naive_hits(&records, "ACGTA", false).len() as u64);

    // A job in flight when w1 dies: its `submit --wait` must still print the exact count.
    let (in_flight, expected) = submit_under_way(addr, dir.path(), 13, 3_000_000, "during-kill");

    kill(Pid::from_raw(first_pid), Signal::SIGKILL).expect("kill -9 w1");
    let restarted = wait_for("up to restart w1", START, || {
        pid_after(&read_log(), "worker w1 restarted")
    });
    let text = read_log();
    assert!(
        text.contains("worker w1 exited (signal: 9") && text.contains("restarting in 0.1 s"),
        "one line for the crash and the restart delay in:\n{text}"
    );
    assert_ne!(restarted, first_pid, "w1 runs under a new pid");
    assert!(alive(restarted), "the restarted w1 (pid {restarted}) runs");
    assert!(
        up.wait_exit(Duration::ZERO).is_none(),
        "up still runs after a worker died:\n{text}"
    );
    wait_for("w1 to be active again", START, || {
        (active_workers(addr)? == 2).then_some(())
    });

    assert_count_printed(in_flight, expected);

    let submitted = std::time::Instant::now();
    let after = grid_count(addr, &fasta, "GGTC", "after-kill");
    assert!(
        submitted.elapsed() < Duration::from_secs(30),
        "the job after the restart took {:?}",
        submitted.elapsed()
    );
    assert_eq!(after, naive_hits(&records, "GGTC", false).len() as u64);
    assert!(
        !read_log().contains("stopping"),
        "up stopped:\n{}",
        read_log()
    );

    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(START).expect("up exits after SIGTERM");
    assert!(status.success(), "up exit status {status}");
    assert!(!alive(restarted), "the restarted w1 stopped with up");
}

#[test]
fn up_with_the_master_port_taken_names_the_flag_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(gridwatch_bin())
        .args(up_args(&dir.path().join("data"), "1", &addr))
        .env("GRIDWATCH_HTTP", "127.0.0.1:0")
        .output()
        .expect("running gridwatch up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "up succeeded on a taken port");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{addr} is in use (the master's port"))
            && stderr.contains("--listen"),
        "the port and its flag in: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    assert!(
        !dir.path().join("data").join("logs").exists(),
        "no process was started"
    );
}

/// Runs `up` on `data` until it lists its workers and both are active; returns it and the
/// master's address.
fn start_up(dir: &Path, data: &Path, name: &str) -> (Proc, String) {
    let log: PathBuf = dir.join(format!("{name}.log"));
    let up = Proc::spawn_logged(name, &up_args(data, "2", "127.0.0.1:0"), &log);
    wait_for("up to list its workers", START, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("press Ctrl-C").then_some(())
    });
    let addr = std::fs::read_to_string(data.join("master.addr")).unwrap();
    let addr = addr.trim().to_string();
    wait_for("both workers to be active", START, || {
        (active_workers(&addr)? == 2).then_some(())
    });
    (up, addr)
}

fn stop(mut up: Proc) {
    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(START).expect("up exits after SIGTERM");
    assert!(status.success(), "up exit status {status}");
}

#[test]
fn up_appends_its_logs_across_runs_logs_each_job_end_and_a_normal_start_warns_of_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = data.join("logs");
    let (up, addr) = start_up(dir.path(), &data, "up-1");
    let records = vec![("chr1".to_string(), Bases::new(5).take(9_000))];
    let fasta = dir.path().join("genome.fa");
    write_fasta(&fasta, &records, 60, "\n");
    grid_count(&addr, &fasta, "ACGT", "logged-job");
    let master_log = || std::fs::read_to_string(logs.join("master.log")).unwrap_or_default();
    let end = wait_for("the master's job-end line", START, || {
        master_log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["fields"]["message"] == "job finished")
    });
    let fields = &end["fields"];
    assert_eq!(fields["job"], "logged-job", "{end}");
    assert_eq!(fields["outcome"], "completed", "{end}");
    assert_eq!(fields["tasks"], 9, "9000 bases in 1000-base chunks: {end}");
    assert_eq!(fields["retries"], 0, "{end}");
    stop(up);

    // Started together with their agents, workers have nothing to warn about.
    for worker in ["w1", "w2"] {
        let text = std::fs::read_to_string(logs.join(format!("{worker}.log"))).unwrap();
        let warnings: Vec<&str> = text
            .lines()
            .filter(|line| {
                line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"")
            })
            .collect();
        assert!(warnings.is_empty(), "{worker} warned: {warnings:#?}");
        assert!(!text.contains("Some("), "no Debug-formatted values: {text}");
    }

    let (up, _) = start_up(dir.path(), &data, "up-2");
    stop(up);
    let text = master_log();
    assert!(
        text.contains("logged-job"),
        "the first run's lines stay: {text}"
    );
    let starts = text.matches("master listening").count();
    assert_eq!(starts, 2, "both runs in one appended log: {text}");
}

/// Lines of `log` whose message is `message` (the children log JSON lines).
fn count_messages(log: &Path, message: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == message)
        .count()
}

/// A worker holding its id in Redis, killed with kill -9, is restarted by `up` at once and takes
/// its id back from its dead self without waiting for the claim to lapse (which took a crash
/// loop of about 10 s, each restart refused with exit code 2); the job in flight stays exact.
#[test]
fn up_on_redis_restarts_a_killed_worker_that_takes_its_id_back_at_once() {
    let redis = crate::support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log: PathBuf = dir.path().join("up.log");
    let mut args = up_args(&data, "2", "127.0.0.1:0");
    args.extend(["--backend".to_string(), redis.url()]);
    let mut up = Proc::spawn_logged("up", &args, &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let text = wait_for("up to list its workers", START, || {
        let text = read_log();
        text.contains("press Ctrl-C").then_some(text)
    });
    let addr = std::fs::read_to_string(data.join("master.addr")).unwrap();
    let addr = addr.trim();
    let w1_log = data.join("logs").join("w1.log");
    let first_pid = pid_after(&text, "worker   w1").expect("w1's pid in up's output");
    wait_for("w1 to start", START, || {
        (count_messages(&w1_log, "worker started") == 1).then_some(())
    });

    let (in_flight, expected) = submit_under_way(addr, dir.path(), 31, 2_000_000, "kill-on-redis");

    let killed = std::time::Instant::now();
    kill(Pid::from_raw(first_pid), Signal::SIGKILL).expect("kill -9 w1");
    wait_for("the restarted w1 to serve", START, || {
        (count_messages(&w1_log, "worker started") == 2).then_some(())
    });
    let back_after = killed.elapsed();
    eprintln!(
        "w1 served again {:.2} s after its kill -9",
        back_after.as_secs_f64()
    );
    let worker_text = std::fs::read_to_string(&w1_log).unwrap_or_default();
    assert!(
        !worker_text.contains("in use by a live worker"),
        "a restart was refused the id of its dead self:\n{worker_text}"
    );
    assert_eq!(
        read_log().matches("worker w1 restarted").count(),
        1,
        "one restart, no crash loop:\n{}",
        read_log()
    );
    // Generous for a slow machine, yet well below the 10 s a lapsing claim took.
    assert!(back_after < Duration::from_secs(8), "took {back_after:?}");

    assert_count_printed(in_flight, expected);
    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(START).expect("up exits after SIGTERM");
    assert!(status.success(), "up exit status {status}");
}
