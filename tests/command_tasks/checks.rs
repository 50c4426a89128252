//! The command task checks themselves, each written once against any grid whose workers allow
//! commands, so the embedded and the Redis backend run the very same assertions. A check starts
//! workers only when it needs its own (the 200-task array, a worker killed mid-array); the others
//! share whatever workers the grid has, and their job ids and files differ, so several of them
//! can run one after the other on one grid.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{results, submit, FINISH};
use crate::support::grid::Grid;
use crate::support::wait_for;

/// Pids of live (not zombie) processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which ends at the last ')': state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(pid);
        }
    }
    members
}

/// Waits for the task to write its shell's pid (its group id) into `file`.
pub fn wait_pid_file(file: &Path) -> u32 {
    wait_for("the task to start", FINISH, || {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
}

/// Two workers of two slots each run an array of 200 tasks printing their index.
pub fn array_of_200_prints_each_index(grid: &mut Grid) {
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 2);
    submit(
        grid,
        "arr",
        &["--array", "1-200"],
        &["sh", "-c", "echo task {i} $GRIDWATCH_TASK_INDEX"],
    );
    let status = grid.wait_finished("arr", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let tasks = results(grid, "arr");
    let expected: Vec<String> = (1..=200).map(|i| format!("task {i} {i}\n")).collect();
    let got: Vec<String> = tasks
        .iter()
        .map(|t| t["stdout"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(got, expected);
    assert!(tasks.iter().all(|t| t["exit_code"] == 0));
}

/// Exit 3 fails the job with the task's stderr, once by default and three times with
/// `--retries 2`.
pub fn exit_3_is_reported_and_retried_only_when_asked(grid: &mut Grid) {
    let failing = ["sh", "-c", "echo broken >&2; exit 3"];
    submit(grid, "once", &[], &failing);
    submit(grid, "thrice", &["--retries", "2"], &failing);
    for (job, attempts) in [("once", 1), ("thrice", 3)] {
        let status = grid.wait_finished(job, FINISH);
        assert_eq!(status["job"]["status"], "failed", "{status}");
        let tasks = results(grid, job);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["exit_code"], 3);
        assert_eq!(tasks[0]["stderr"], "broken\n");
        assert_eq!(tasks[0]["attempt"], attempts, "job {job}");
    }
    let table = grid.cli(&["results", "once"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("failed tasks: 1"), "{text}");
}

/// `--timeout 2s` on a shell with a background child: no process of its group is left 5 s after
/// the job failed.
pub fn a_timeout_kills_the_whole_process_group(grid: &mut Grid) {
    let pid_file = grid.path("pgid-slow");
    let script = format!("echo $$ > {}; sleep 1000 & sleep 1000", pid_file.display());
    submit(grid, "slow", &["--timeout", "2s"], &["sh", "-c", &script]);
    let pgid = wait_pid_file(&pid_file);
    assert!(!group_members(pgid).is_empty(), "the task's group runs");
    let status = grid.wait_finished("slow", FINISH);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let ended = Instant::now();
    wait_for(
        "the task's group to be gone",
        Duration::from_secs(5),
        || group_members(pgid).is_empty().then_some(()),
    );
    assert!(ended.elapsed() < Duration::from_secs(5));
    let tasks = results(grid, "slow");
    assert_eq!(tasks[0]["killed"], "timeout");
}

/// `cancel` ends a running task's whole group within about a second.
pub fn cancel_kills_a_running_task_within_a_second_or_so(grid: &mut Grid) {
    let pid_file = grid.path("pgid-long");
    let script = format!("echo $$ > {}; sleep 1000 & sleep 1000", pid_file.display());
    submit(grid, "long", &[], &["sh", "-c", &script]);
    let pgid = wait_pid_file(&pid_file);
    let asked = Instant::now();
    grid.cli_ok(&["cancel", "long"]);
    wait_for(
        "the cancelled task's group to be gone",
        Duration::from_secs(10),
        || group_members(pgid).is_empty().then_some(()),
    );
    let took = asked.elapsed();
    eprintln!("cancel to no process of the group: {took:?}");
    // One lease check (0.5 s) plus the kill; generous for a loaded machine.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// Waits for `job` (a task that ran `env`) to complete and checks what the task saw: none of
/// `secrets`, only the variables a clean environment has, and its job id. Returns the task.
pub fn assert_environment_private(grid: &Grid, job: &str, secrets: &[&str]) -> Value {
    let status = grid.wait_finished(job, FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let task = results(grid, job)[0].clone();
    let env = task["stdout"].as_str().unwrap();
    for secret in secrets {
        assert!(!env.contains(secret), "a secret reached the task: {env}");
    }
    let names: BTreeSet<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    let allowed: BTreeSet<&str> = [
        "PATH",
        "HOME",
        "TMPDIR",
        "GRIDWATCH_TASK_INDEX",
        "GRIDWATCH_JOB_ID",
        "GRIDWATCH_CPUS",
        "PWD",
        "SHLVL",
        "_",
    ]
    .into();
    assert!(
        names.is_subset(&allowed),
        "unexpected variables: {:?}",
        names.difference(&allowed)
    );
    assert!(env.contains(&format!("GRIDWATCH_JOB_ID={job}\n")), "{env}");
    task
}

/// Python allocating `mib` MiB and printing the size it got.
fn allocate(mib: u64) -> String {
    format!("b = bytearray({mib} * 1024 * 1024); b[-1] = 1; print(len(b))")
}

/// Submits job `hog`, a task allocating 512 MiB under `--memory 128MiB`, and job `fits`, one
/// allocating 64 MiB under 512 MiB.
pub fn submit_hog_and_fit(grid: &Grid) {
    submit(
        grid,
        "hog",
        &["--memory", "128MiB"],
        &["python3", "-c", &allocate(512)],
    );
    submit(
        grid,
        "fits",
        &["--memory", "512MiB"],
        &["python3", "-c", &allocate(64)],
    );
}

/// A task over `--memory` is killed and says so; tasks within their limit (or without one) are
/// not; `--max-open-files` holds.
pub fn memory_and_open_file_limits_hold(grid: &mut Grid) {
    submit_hog_and_fit(grid);
    submit(grid, "free", &[], &["python3", "-c", &allocate(160)]);
    submit(
        grid,
        "nofile",
        &["--max-open-files", "16"],
        &[
            "python3",
            "-c",
            "fs = [open('/dev/null') for _ in range(64)]",
        ],
    );
    let status = grid.wait_finished("hog", FINISH);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let hog = &results(grid, "hog")[0];
    assert_eq!(hog["killed"], "memory", "{hog}");
    assert_eq!(hog["stdout"], "", "{hog}");
    assert_memory_limit_hit(hog);
    let table = grid.cli_ok(&["results", "hog"]);
    assert!(table.contains("killed (memory)"), "{table}");
    for (job, mib) in [("fits", 64), ("free", 160)] {
        let status = grid.wait_finished(job, FINISH);
        assert_eq!(status["job"]["status"], "completed", "{status}");
        let task = &results(grid, job)[0];
        assert_eq!(task["stdout"], format!("{}\n", mib << 20), "{task}");
        assert!(task["killed"].is_null(), "{task}");
    }
    let status = grid.wait_finished("nofile", FINISH);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let files = &results(grid, "nofile")[0];
    assert_eq!(files["exit_code"], 1, "{files}");
    assert!(files["killed"].is_null(), "{files}");
    let stderr = files["stderr"].as_str().unwrap();
    assert!(stderr.contains("Too many open files"), "{stderr}");
}

/// A task killed for its memory limit, as the limit its result names says: under a cgroup the
/// kernel killed it (SIGKILL, no allocation error of its own); under RLIMIT_AS an allocation
/// failed and the program said so (Python's MemoryError).
pub fn assert_memory_limit_hit(task: &Value) {
    assert_eq!(task["killed"], "memory", "{task}");
    let stderr = task["stderr"].as_str().unwrap_or("");
    match task["memory_limit"].as_str() {
        Some("cgroup") => {
            assert_eq!(task["signal"], 9, "{task}");
            assert!(!stderr.contains("MemoryError"), "{task}");
        }
        Some("rlimit_as") => assert!(stderr.contains("MemoryError"), "{task}"),
        other => panic!("a task with --memory names no limit ({other:?}): {task}"),
    }
}

/// With `--output-cap 1000`, 5000 bytes of stdout keep the first 1000 and say so.
pub fn stdout_past_the_cap_is_cut_and_flagged(grid: &mut Grid) {
    submit(
        grid,
        "big",
        &["--output-cap", "1000"],
        &["sh", "-c", "yes | head -c 5000"],
    );
    grid.wait_finished("big", FINISH);
    let tasks = results(grid, "big");
    assert_eq!(tasks[0]["stdout"].as_str().unwrap(), "y\n".repeat(500));
    assert_eq!(tasks[0]["stdout_bytes"], 5000);
    assert_eq!(tasks[0]["stdout_truncated"], true);
    assert_eq!(tasks[0]["stderr_truncated"], false);
}

/// Workers w1 and w2 (two slots each) run a 40-task array; w1 is killed with SIGKILL after a few
/// results, and every task still ends with exactly one result, its own.
pub fn a_worker_killed_mid_array_leaves_exactly_one_result_per_task(grid: &mut Grid) {
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 2);
    submit(
        grid,
        "mid",
        &["--array", "1-40"],
        &["sh", "-c", "sleep 0.2; echo {i}"],
    );
    wait_for("some results", FINISH, || {
        let status = grid.status("mid");
        (status["job"]["progress"]["processed_chunks"].as_u64()? >= 5).then_some(())
    });
    grid.worker("w1").kill9();
    let status = grid.wait_finished("mid", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let tasks = results(grid, "mid");
    let indexes: Vec<u64> = tasks.iter().map(|t| t["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (1..=40).collect::<Vec<_>>());
    for task in &tasks {
        assert_eq!(
            task["stdout"].as_str().unwrap(),
            format!("{}\n", task["index"])
        );
    }
}

/// An args-file job: `results --out` writes each task's stdout, stderr and output files byte for
/// byte (non-UTF-8 bytes included), and `logs` and the HTTP API serve the same bytes.
pub fn results_out_and_logs_give_each_task_s_output_byte_for_byte(grid: &mut Grid) {
    let args = grid.path("args.tsv");
    std::fs::write(&args, "alpha\tone\nbeta\ttwo\ngamma\tthree\n").unwrap();
    let args = args.display().to_string();
    submit(
        grid,
        "files",
        &["--args-file", &args, "--output", "*.bin"],
        &[
            "sh",
            "-c",
            "printf '%s|%s' \"$0\" \"$1\"; printf 'é%s' \"$1\" >&2; \
             printf '\\000\\377%s' \"$0\" > out.bin",
            "{2}",
            "{1}",
        ],
    );
    grid.wait_finished("files", FINISH);
    let out = grid.path("out");
    grid.cli_ok(&["results", "files", "--out", &out.display().to_string()]);
    let lines = [("alpha", "one"), ("beta", "two"), ("gamma", "three")];
    for (n, (first, second)) in lines.iter().enumerate() {
        let task = out.join((n + 1).to_string());
        assert_eq!(
            std::fs::read(task.join("stdout")).unwrap(),
            format!("{second}|{first}").as_bytes()
        );
        assert_eq!(
            std::fs::read(task.join("stderr")).unwrap(),
            format!("é{first}").as_bytes()
        );
        let mut file = b"\x00\xff".to_vec();
        file.extend_from_slice(second.as_bytes());
        assert_eq!(std::fs::read(task.join("out.bin")).unwrap(), file);
    }
    assert_eq!(grid.cli_ok(&["logs", "files", "2"]), "two|beta");
    assert_eq!(grid.cli_ok(&["logs", "files", "3", "--stderr"]), "égamma");
    // The HTTP API serves the same bytes.
    let http = grid.http_addr();
    let get = |path: &str| crate::support::http::request(&http, "GET", path, None, "");
    let (status, content_type, body) = get("/jobs/files/tasks/2/stdout");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(body, b"two|beta");
    let (status, _, body) = get("/jobs/files/tasks/3/stderr");
    assert_eq!((status, body.as_slice()), (200, "égamma".as_bytes()));
    for missing in [
        "/jobs/files/tasks/4/stdout",
        "/jobs/files/tasks/0/stdout",
        "/jobs/files/tasks/1/env",
    ] {
        assert_eq!(get(missing).0, 404, "{missing}");
    }
}

/// A task that prints a line to each stream, then blocks reading a FIFO the test writes to: while
/// it waits, `logs` and the HTTP API show what it printed so far; `logs --follow`, started while
/// it runs, prints that, then the rest once the test opens the gate, and exits with the task's
/// exit code.
pub fn logs_show_a_running_task_and_follow_it_to_its_exit(grid: &mut Grid) {
    use std::io::{BufRead, Write};
    let gate = grid.path("gate-live");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .expect("running mkfifo");
    assert!(made.success(), "mkfifo failed");
    let script = format!(
        "echo first line; echo first error >&2; read word < {}; echo \"second line $word\"; exit 4",
        gate.display()
    );
    submit(grid, "live", &[], &["sh", "-c", &script]);
    // The task blocks on the FIFO until the test writes to it: what `logs` shows meanwhile is
    // a running task's output.
    let shown = wait_for("logs to show the running task's first line", FINISH, || {
        let out = grid.cli(&["logs", "live", "1"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    });
    assert_eq!(shown, "first line\n");
    assert_eq!(
        grid.cli_ok(&["logs", "live", "1", "--stderr"]),
        "first error\n"
    );
    let status = grid.status("live");
    assert!(
        !["completed", "failed"].contains(&status["job"]["status"].as_str().unwrap_or("")),
        "the task cannot have finished before the gate opened: {status}"
    );
    let http = grid.http_addr();
    let reply =
        crate::support::http::request_with(&http, "GET", "/jobs/live/tasks/1/stdout", &[], "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("gridwatch-task-state"), "running");
    assert_eq!(reply.text(), "first line\n");

    let mut follow = std::process::Command::new(crate::support::gridwatch_bin())
        .args(["logs", "live", "1", "--follow"])
        .args(&grid.client_flags)
        .args(["--master", &grid.addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running gridwatch logs --follow");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower has shown the running task's first line before the gate opens.
    let first = lines
        .recv_timeout(FINISH)
        .expect("logs --follow printed the first line");
    assert_eq!(first, "first line");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&gate)
        .and_then(|mut fifo| fifo.write_all(b"opened\n"))
        .expect("opening the gate");
    let second = lines
        .recv_timeout(FINISH)
        .expect("logs --follow printed the rest");
    assert_eq!(second, "second line opened");
    let exit = wait_for("logs --follow to exit", FINISH, || {
        follow.try_wait().expect("waiting for logs --follow")
    });
    reader.join().expect("the reader thread");
    assert!(lines.try_recv().is_err(), "nothing more is printed");
    assert_eq!(
        exit.code(),
        Some(4),
        "logs --follow exits with the task's code"
    );
    let tasks = results(grid, "live");
    assert_eq!(tasks[0]["stdout"], "first line\nsecond line opened\n");
    assert_eq!(tasks[0]["exit_code"], 4);
}
