//! Command tasks on a real grid, on both backends: a job array's results, exit codes and
//! retries, the timeout and cancel killing a task's whole process group, a worker that does not
//! allow commands never running one, a task's clean environment (no cluster token, no Redis
//! password), memory and open-file limits, the stdout cap, output files, and a worker killed
//! mid-array. Each check is written once in `checks`; on Redis most of them share one grid, run
//! one after the other, so the suite starts one Redis grid rather than one per check.

mod checks;

use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::grid::Grid;
use crate::support::procs::set_test_env;
use crate::support::redis::RedisServer;
use crate::support::{gridwatch_bin, wait_for};
use checks::{group_members, wait_pid_file};

pub(crate) const FINISH: Duration = Duration::from_secs(120);

/// The cluster token of the grids that check a task's environment: no task may see it.
const TOKEN: &str = "s3cr3t-token-for-the-grid-0123456789";
/// The Redis password of the shared Redis grid: no task may see it either.
const REDIS_PASSWORD: &str = "redis-pa55word-never-for-tasks-4242";

/// Submits a command job (no wait) under `job`; `flags` go before `--`, and so must the
/// master's address and the grid's client flags.
pub(crate) fn submit(grid: &Grid, job: &str, flags: &[&str], argv: &[&str]) {
    let output = Command::new(gridwatch_bin())
        .args(["submit", "command", "--job-id", job, "--master", &grid.addr])
        .args(&grid.client_flags)
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

/// An embedded grid whose workers allow commands; starts worker `w1` with `threads` slots
/// unless `threads` is 0.
fn embedded_grid(master_flags: &[&str], threads: usize) -> Grid {
    let mut grid = Grid::start(master_flags);
    grid.worker_flags = vec!["--allow-commands".into()];
    if threads > 0 {
        grid.start_worker("w1", threads);
    }
    grid
}

/// A master and workers on a Redis server; drops the grid before the server.
struct RedisGrid {
    grid: Grid,
    _redis: RedisServer,
}

/// A Redis grid whose workers allow commands (extra master flags in `master_flags`).
fn redis_grid(master_flags: &[&str]) -> RedisGrid {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), master_flags);
    grid.worker_flags.push("--allow-commands".into());
    RedisGrid {
        grid,
        _redis: redis,
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// A check that runs on a grid it is handed, and its name for failure messages.
type NamedCheck<'a> = (&'a str, fn(&mut Grid));

/// Runs each named check in turn on one grid; a failure names the check that failed. The first
/// failure ends the run: on a grid that went wrong each later check would only wait out its
/// deadline.
fn run_checks(grid: &mut Grid, checks: &[NamedCheck]) {
    for (name, check) in checks {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(grid)));
        if let Err(payload) = outcome {
            panic!("check {name} failed: {}", panic_message(&*payload));
        }
        eprintln!("check {name}: passed in {:?}", started.elapsed());
    }
}

#[test]
fn an_array_of_200_tasks_gives_200_results_with_their_index() {
    let mut grid = embedded_grid(&[], 0);
    checks::array_of_200_prints_each_index(&mut grid);
}

#[test]
fn on_redis_an_array_of_200_tasks_gives_200_results_with_their_index() {
    let mut redis = redis_grid(&[]);
    checks::array_of_200_prints_each_index(&mut redis.grid);
}

#[test]
fn exit_3_is_reported_with_its_stderr_and_retried_only_when_asked() {
    let mut grid = embedded_grid(&[], 1);
    checks::exit_3_is_reported_and_retried_only_when_asked(&mut grid);
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let mut grid = embedded_grid(&[], 1);
    checks::a_timeout_kills_the_whole_process_group(&mut grid);
}

#[test]
fn cancel_kills_a_running_task_within_a_second_or_so() {
    let mut grid = embedded_grid(&[], 1);
    checks::cancel_kills_a_running_task_within_a_second_or_so(&mut grid);
}

#[test]
fn a_worker_without_allow_commands_never_runs_one_and_its_environment_stays_private() {
    let secrets = tempfile::tempdir().unwrap();
    let token_path = secrets.path().join("token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).unwrap();
    let token_file = token_path.display().to_string();
    let mut grid = Grid::start(&["--token-file", &token_file]);
    grid.worker_flags = vec!["--token-file".into(), token_file.clone()];
    grid.client_flags = vec!["--token-file".into(), token_file];
    grid.start_worker("plain", 2);
    let marker = grid.path("ran");
    let script = format!("touch {}; env", marker.display());
    submit(&grid, "env", &[], &["sh", "-c", &script]);
    run_a_later_job(&grid);
    assert!(
        !marker.exists(),
        "a worker without --allow-commands ran a command task"
    );
    let status = grid.cli_ok(&["status", "env", "--json"]);
    assert!(!status.contains("\"completed\""), "{status}");
    assert!(
        status.contains("no live worker runs command tasks"),
        "status should say why the job waits: {status}"
    );
    grid.worker_flags.push("--allow-commands".into());
    grid.start_worker("trusted", 1);
    let task = checks::assert_environment_private(&grid, "env", &[TOKEN]);
    assert_eq!(task["worker"], "trusted");
}

/// Runs a Julia job submitted after a command job to completion: the grid's workers have polled
/// the queue since the command job waited, so a worker that could take it has had its chance.
fn run_a_later_job(grid: &Grid) {
    let spec = crate::support::julia::Spec::classic(41, 23, 150);
    let mut later: Vec<String> = vec!["submit".into(), "julia".into()];
    later.extend(spec.args());
    later.extend(["--job-id".into(), "later".into(), "--wait".into()]);
    grid.cli_ok(&later.iter().map(String::as_str).collect::<Vec<_>>());
    let status = grid.status("later");
    assert_eq!(status["job"]["status"], "completed", "{status}");
}

/// On Redis, workers lease straight from Redis: a worker without `--allow-commands` must not even
/// lease a command task (handing it back would use up its attempts and dead-letter it). The plain
/// worker runs a job submitted after the command job, so it has polled the queue since; the
/// command task's first delivery then goes to the worker that allows commands.
#[test]
fn on_redis_a_worker_without_allow_commands_never_leases_one_and_status_says_why() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    grid.start_worker("plain", 2);
    let marker = grid.path("ran");
    let script = format!("touch {}; echo ran", marker.display());
    submit(&grid, "cmd", &[], &["sh", "-c", &script]);
    run_a_later_job(&grid);
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
    let mut grid = embedded_grid(&[], 2);
    checks::memory_and_open_file_limits_hold(&mut grid);
}

#[test]
fn stdout_past_the_cap_is_cut_and_flagged() {
    let mut grid = embedded_grid(&[], 1);
    checks::stdout_past_the_cap_is_cut_and_flagged(&mut grid);
}

#[test]
fn a_worker_killed_mid_array_leaves_exactly_one_result_per_task() {
    let mut grid = embedded_grid(&["--visibility-timeout", "1"], 0);
    checks::a_worker_killed_mid_array_leaves_exactly_one_result_per_task(&mut grid);
}

#[test]
fn on_redis_a_worker_killed_mid_array_leaves_exactly_one_result_per_task() {
    let mut redis = redis_grid(&["--visibility-timeout", "1"]);
    checks::a_worker_killed_mid_array_leaves_exactly_one_result_per_task(&mut redis.grid);
}

#[test]
fn results_out_and_logs_give_each_task_s_output_byte_for_byte() {
    let mut grid = embedded_grid(&[], 2);
    checks::results_out_and_logs_give_each_task_s_output_byte_for_byte(&mut grid);
}

/// The checks that need no workers of their own, on one Redis grid with a cluster token and a
/// Redis password (given to the master and workers as `REDIS_PASSWORD`, as a deployment would),
/// so the environment check proves neither reaches a task.
#[test]
fn on_redis_exits_timeouts_cancel_environment_limits_and_outputs_behave_as_embedded() {
    let secrets = tempfile::tempdir().unwrap();
    let token_path = secrets.path().join("token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).unwrap();
    let token_file = token_path.display().to_string();
    let redis = RedisServer::start_with_password(REDIS_PASSWORD);
    set_test_env("REDIS_PASSWORD", REDIS_PASSWORD);
    let url = redis.url();
    let mut grid = Grid::start(&["--backend", &url, "--token-file", &token_file]);
    grid.worker_flags = ["--backend", &url, "--token-file", &token_file]
        .iter()
        .map(|flag| flag.to_string())
        .chain(["--allow-commands".to_string()])
        .collect();
    grid.client_flags = vec!["--token-file".into(), token_file];
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 2);
    run_checks(
        &mut grid,
        &[
            (
                "exit 3 and --retries",
                checks::exit_3_is_reported_and_retried_only_when_asked,
            ),
            ("--timeout", checks::a_timeout_kills_the_whole_process_group),
            (
                "cancel",
                checks::cancel_kills_a_running_task_within_a_second_or_so,
            ),
            ("environment", |grid| {
                submit(grid, "env", &[], &["sh", "-c", "env"]);
                checks::assert_environment_private(grid, "env", &[TOKEN, REDIS_PASSWORD]);
            }),
            (
                "results --out",
                checks::results_out_and_logs_give_each_task_s_output_byte_for_byte,
            ),
            ("stdout cap", checks::stdout_past_the_cap_is_cut_and_flagged),
            (
                "memory and open files",
                checks::memory_and_open_file_limits_hold,
            ),
        ],
    );
}

/// A worker killed with SIGKILL cannot stop its tasks itself: the kernel ends the task's process
/// for it, so no program runs on unwatched (and unaccounted) after its worker died.
#[test]
fn a_task_s_process_dies_with_its_worker() {
    let mut grid = embedded_grid(&[], 1);
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

#[test]
fn logs_show_a_running_task_s_output_and_follow_it_to_its_exit_code() {
    let mut grid = embedded_grid(&[], 1);
    checks::logs_show_a_running_task_and_follow_it_to_its_exit(&mut grid);
}

#[test]
fn on_redis_logs_show_a_running_task_s_output_and_follow_it_to_its_exit_code() {
    let mut redis = redis_grid(&[]);
    redis.grid.start_worker("w1", 1);
    checks::logs_show_a_running_task_and_follow_it_to_its_exit(&mut redis.grid);
}

/// Which memory limit worker `id` announced in its log: `cgroup` or `rlimit_as`.
fn announced_memory_limit(grid: &mut Grid, id: &str) -> &'static str {
    let worker = grid.worker(id);
    wait_for("the worker to say how it limits memory", FINISH, || {
        let log = worker.log();
        if log.contains("uses cgroup v2 memory limits") {
            Some("cgroup")
        } else if log.contains("(RLIMIT_AS): no usable cgroup v2") {
            Some("rlimit_as")
        } else {
            None
        }
    })
}

/// Submits a task allocating 512 MiB under `--memory 128MiB` and one allocating 64 MiB under
/// 512 MiB; waits for both and returns their results.
fn run_memory_hog_and_fit(grid: &Grid) -> (Value, Value) {
    checks::submit_hog_and_fit(grid);
    let hog = grid.wait_finished("hog", FINISH);
    assert_eq!(hog["job"]["status"], "failed", "{hog}");
    let fits = grid.wait_finished("fits", FINISH);
    assert_eq!(fits["job"]["status"], "completed", "{fits}");
    (
        results(grid, "hog")[0].clone(),
        results(grid, "fits")[0].clone(),
    )
}

/// Whether this machine mounts the unified (v2) cgroup hierarchy at all.
fn has_cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Where a delegated cgroup v2 hierarchy with the memory controller is available, `--memory` is
/// a cgroup limit on the whole task: over it the kernel kills the task, and the result says
/// `cgroup`. Elsewhere the test says it was not exercised.
#[test]
fn on_delegated_cgroup_v2_memory_is_a_cgroup_limit_the_kernel_enforces() {
    let mut grid = embedded_grid(&[], 2);
    if announced_memory_limit(&mut grid, "w1") != "cgroup" {
        eprintln!(
            "NOT EXERCISED: no delegated, writable cgroup v2 hierarchy with the memory controller \
             here (cgroup v2 mounted: {})",
            has_cgroup_v2()
        );
        return;
    }
    let (hog, fits) = run_memory_hog_and_fit(&grid);
    assert_eq!(hog["memory_limit"], "cgroup", "{hog}");
    checks::assert_memory_limit_hit(&hog);
    assert_eq!(fits["memory_limit"], "cgroup", "{fits}");
    assert!(fits["killed"].is_null(), "{fits}");
    assert_eq!(fits["stdout"], format!("{}\n", 64u64 << 20), "{fits}");
}

/// Without a usable cgroup v2 hierarchy (this is certain where none is mounted), `--memory`
/// falls back to RLIMIT_AS, and the results say so: the hog's allocation fails and it is
/// reported killed for memory under `rlimit_as`.
#[test]
fn without_cgroup_v2_memory_falls_back_to_rlimit_as_and_the_result_says_so() {
    let mut grid = embedded_grid(&[], 2);
    let announced = announced_memory_limit(&mut grid, "w1");
    if has_cgroup_v2() && announced == "cgroup" {
        eprintln!("NOT EXERCISED: this machine has a usable cgroup v2 hierarchy");
        return;
    }
    assert_eq!(announced, "rlimit_as", "no cgroup v2 here, so RLIMIT_AS");
    let (hog, fits) = run_memory_hog_and_fit(&grid);
    assert_eq!(hog["memory_limit"], "rlimit_as", "{hog}");
    checks::assert_memory_limit_hit(&hog);
    assert_eq!(fits["memory_limit"], "rlimit_as", "{fits}");
    assert!(fits["killed"].is_null(), "{fits}");
    // A task without --memory names no limit.
    submit(&grid, "unlimited", &[], &["true"]);
    grid.wait_finished("unlimited", FINISH);
    let task = &results(&grid, "unlimited")[0];
    assert!(task["memory_limit"].is_null(), "{task}");
}
