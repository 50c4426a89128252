//! Command tasks on a real grid: a job array's results, exit codes and retries, the timeout and
//! cancel killing a task's whole process group, a worker that does not allow commands never
//! running one, a task's clean environment, the stdout cap, and a worker killed mid-array.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use std::process::Command;

use crate::support::grid::Grid;
use crate::support::redis::RedisServer;
use crate::support::{gridwatch_bin, wait_for};

pub(crate) const FINISH: Duration = Duration::from_secs(120);

/// Submits a command job (no wait) under `job`; `flags` go before `--`, and so must the
/// master's address.
pub(crate) fn submit(grid: &Grid, job: &str, flags: &[&str], argv: &[&str]) {
    let output = Command::new(gridwatch_bin())
        .args(["submit", "command", "--job-id", job, "--master", &grid.addr])
        .args(flags)
        .arg("--")
        .args(argv)
        .output()
        .expect("running gridwatch submit");
    assert!(
        output.status.success(),
        "submit {job} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The job's task results, by task index.
pub(crate) fn results(grid: &Grid, job: &str) -> Vec<Value> {
    let out = grid.cli_ok(&["results", job, "--format", "json"]);
    let parsed: Value = serde_json::from_str(&out).expect("results --format json prints JSON");
    parsed["tasks"].as_array().expect("a task list").clone()
}

/// Pids of live (not zombie) processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
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
fn wait_pid_file(file: &Path) -> u32 {
    wait_for("the task to start", FINISH, || {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
}

fn array_of_200_prints_each_index(grid: &mut Grid) {
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

#[test]
fn an_array_of_200_tasks_gives_200_results_with_their_index() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    array_of_200_prints_each_index(&mut grid);
}

#[test]
fn on_redis_an_array_of_200_tasks_gives_200_results_with_their_index() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start(&["--backend", &url]);
    grid.worker_flags = vec!["--backend".into(), url, "--allow-commands".into()];
    array_of_200_prints_each_index(&mut grid);
}

#[test]
fn exit_3_is_reported_with_its_stderr_and_retried_only_when_asked() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let failing = ["sh", "-c", "echo broken >&2; exit 3"];
    submit(&grid, "once", &[], &failing);
    submit(&grid, "thrice", &["--retries", "2"], &failing);
    for (job, attempts) in [("once", 1), ("thrice", 3)] {
        let status = grid.wait_finished(job, FINISH);
        assert_eq!(status["job"]["status"], "failed", "{status}");
        let tasks = results(&grid, job);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["exit_code"], 3);
        assert_eq!(tasks[0]["stderr"], "broken\n");
        assert_eq!(tasks[0]["attempt"], attempts, "job {job}");
    }
    let table = grid.cli(&["results", "once"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("failed tasks: 1"), "{text}");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let pid_file = grid.path("pgid");
    let script = format!("echo $$ > {}; sleep 1000 & sleep 1000", pid_file.display());
    submit(&grid, "slow", &["--timeout", "2s"], &["sh", "-c", &script]);
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
    let tasks = results(&grid, "slow");
    assert_eq!(tasks[0]["killed"], "timeout");
}

#[test]
fn cancel_kills_a_running_task_within_a_second_or_so() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let pid_file = grid.path("pgid");
    let script = format!("echo $$ > {}; sleep 1000 & sleep 1000", pid_file.display());
    submit(&grid, "long", &[], &["sh", "-c", &script]);
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

#[test]
fn a_worker_without_allow_commands_never_runs_one_and_its_environment_stays_private() {
    let secrets = tempfile::tempdir().unwrap();
    let token_path = secrets.path().join("token");
    std::fs::write(&token_path, "s3cr3t-token-for-the-grid-0123456789\n").unwrap();
    let token_file = token_path.display().to_string();
    let mut grid = Grid::start(&["--token-file", &token_file]);
    grid.worker_flags = vec!["--token-file".into(), token_file.clone()];
    grid.start_worker("plain", 2);
    let marker = grid.path("ran");
    let script = format!("touch {}; env", marker.display());
    submit(
        &grid,
        "env",
        &["--token-file", &token_file],
        &["sh", "-c", &script],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !marker.exists(),
        "a worker without --allow-commands ran a command task"
    );
    let status = grid.cli_ok(&["status", "env", "--json", "--token-file", &token_file]);
    assert!(!status.contains("\"completed\""), "{status}");
    assert!(
        status.contains("no live worker runs command tasks"),
        "status should say why the job waits: {status}"
    );
    grid.worker_flags.push("--allow-commands".into());
    grid.start_worker("trusted", 1);
    wait_for("the job to complete", FINISH, || {
        let out = grid.cli(&["status", "env", "--json", "--token-file", &token_file]);
        String::from_utf8_lossy(&out.stdout)
            .contains("\"completed\"")
            .then_some(())
    });
    let out = grid.cli_ok(&[
        "results",
        "env",
        "--format",
        "json",
        "--token-file",
        &token_file,
    ]);
    let parsed: Value = serde_json::from_str(&out).unwrap();
    let task = &parsed["tasks"][0];
    assert_eq!(task["worker"], "trusted");
    let env = task["stdout"].as_str().unwrap();
    assert!(!env.contains("s3cr3t"), "the token reached the task: {env}");
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
    assert!(env.contains("GRIDWATCH_JOB_ID=env\n"), "{env}");
}

/// On Redis, workers lease straight from Redis: a worker without `--allow-commands` must not even
/// lease a command task (handing it back would use up its attempts and dead-letter it). The plain
/// worker runs a job submitted after the command job, so it has polled the queue since; the
/// command task's first delivery then goes to the worker that allows commands.
#[test]
fn on_redis_a_worker_without_allow_commands_never_leases_one_and_status_says_why() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start(&["--backend", &url]);
    grid.worker_flags = vec!["--backend".into(), url.clone()];
    grid.start_worker("plain", 2);
    let marker = grid.path("ran");
    let script = format!("touch {}; echo ran", marker.display());
    submit(&grid, "cmd", &[], &["sh", "-c", &script]);
    let spec = crate::support::julia::Spec::classic(41, 23, 150);
    let mut later: Vec<String> = vec!["submit".into(), "julia".into()];
    later.extend(spec.args());
    later.extend(["--job-id".into(), "later".into(), "--wait".into()]);
    grid.cli_ok(&later.iter().map(String::as_str).collect::<Vec<_>>());
    let status = grid.status("later");
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert!(
        !marker.exists(),
        "a worker without --allow-commands ran a command task"
    );
    let status = grid.status("cmd");
    assert_eq!(status["job"]["status"], "pending", "{status}");
    let why = status["job"]["error"].as_str().unwrap_or("");
    assert!(
        why.contains("no live worker runs command tasks"),
        "status should say why the job waits: {status}"
    );
    grid.worker_flags.push("--allow-commands".into());
    grid.start_worker("trusted", 1);
    let status = grid.wait_finished("cmd", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let tasks = results(&grid, "cmd");
    assert_eq!(tasks[0]["worker"], "trusted");
    assert_eq!(tasks[0]["attempt"], 1, "the plain worker leased it first");
    assert_eq!(tasks[0]["stdout"], "ran\n");
    let status = grid.status("later");
    assert_eq!(status["job"]["status"], "completed", "{status}");
}

#[test]
fn a_task_over_its_memory_limit_is_stopped_and_says_so_and_open_files_are_limited() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 2);
    let allocate =
        |mib: u64| format!("b = bytearray({mib} * 1024 * 1024); b[-1] = 1; print(len(b))");
    submit(
        &grid,
        "hog",
        &["--memory", "128MiB"],
        &["python3", "-c", &allocate(512)],
    );
    submit(
        &grid,
        "fits",
        &["--memory", "512MiB"],
        &["python3", "-c", &allocate(64)],
    );
    submit(&grid, "free", &[], &["python3", "-c", &allocate(160)]);
    submit(
        &grid,
        "files",
        &["--max-open-files", "16"],
        &[
            "python3",
            "-c",
            "fs = [open('/dev/null') for _ in range(64)]",
        ],
    );
    let status = grid.wait_finished("hog", FINISH);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let hog = &results(&grid, "hog")[0];
    assert_eq!(hog["killed"], "memory", "{hog}");
    assert_eq!(hog["stdout"], "", "{hog}");
    assert!(
        hog["stderr"].as_str().unwrap().contains("MemoryError"),
        "{hog}"
    );
    let table = grid.cli_ok(&["results", "hog"]);
    assert!(table.contains("killed (memory)"), "{table}");
    for (job, mib) in [("fits", 64), ("free", 160)] {
        let status = grid.wait_finished(job, FINISH);
        assert_eq!(status["job"]["status"], "completed", "{status}");
        let task = &results(&grid, job)[0];
        assert_eq!(task["stdout"], format!("{}\n", mib << 20), "{task}");
        assert!(task["killed"].is_null(), "{task}");
    }
    let status = grid.wait_finished("files", FINISH);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let files = &results(&grid, "files")[0];
    assert_eq!(files["exit_code"], 1, "{files}");
    assert!(files["killed"].is_null(), "{files}");
    let stderr = files["stderr"].as_str().unwrap();
    assert!(stderr.contains("Too many open files"), "{stderr}");
}

#[test]
fn stdout_past_the_cap_is_cut_and_flagged() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    submit(
        &grid,
        "big",
        &["--output-cap", "1000"],
        &["sh", "-c", "yes | head -c 5000"],
    );
    grid.wait_finished("big", FINISH);
    let tasks = results(&grid, "big");
    assert_eq!(tasks[0]["stdout"].as_str().unwrap(), "y\n".repeat(500));
    assert_eq!(tasks[0]["stdout_bytes"], 5000);
    assert_eq!(tasks[0]["stdout_truncated"], true);
    assert_eq!(tasks[0]["stderr_truncated"], false);
}

#[test]
fn a_worker_killed_mid_array_leaves_exactly_one_result_per_task() {
    let mut grid = Grid::start(&["--visibility-timeout", "1"]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 2);
    submit(
        &grid,
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
    let tasks = results(&grid, "mid");
    let indexes: Vec<u64> = tasks.iter().map(|t| t["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (1..=40).collect::<Vec<_>>());
    for task in &tasks {
        assert_eq!(
            task["stdout"].as_str().unwrap(),
            format!("{}\n", task["index"])
        );
    }
}

#[test]
fn results_out_and_logs_give_each_task_s_output_byte_for_byte() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 2);
    let args = grid.path("args.tsv");
    std::fs::write(&args, "alpha\tone\nbeta\ttwo\ngamma\tthree\n").unwrap();
    let args = args.display().to_string();
    submit(
        &grid,
        "files",
        &["--args-file", &args],
        &[
            "sh",
            "-c",
            "printf '%s|%s' \"$0\" \"$1\"; printf 'é%s' \"$1\" >&2",
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

/// A worker killed with SIGKILL cannot stop its tasks itself: the kernel ends the task's process
/// for it, so no program runs on unwatched (and unaccounted) after its worker died.
#[test]
fn a_task_s_process_dies_with_its_worker() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let pid_file = grid.path("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pid_file.display());
    submit(&grid, "orphan", &[], &["sh", "-c", &script]);
    let pid = wait_pid_file(&pid_file);
    assert_eq!(
        group_members(pid),
        vec![pid],
        "the task runs as its group's only process"
    );
    grid.worker("w1").kill9();
    wait_for(
        "the task's process to be gone",
        Duration::from_secs(10),
        || group_members(pid).is_empty().then_some(()),
    );
}
