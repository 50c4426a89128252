//! Where command tasks run: a task of `--cpus N` takes N of a worker's slots and is never leased
//! by a worker with fewer (while `status` says why the job waits), and a failed attempt retried
//! with `--retries` runs on another worker when one is free.

use crate::command_tasks::{results, submit, FINISH};
use crate::support::grid::Grid;
use crate::support::procs::set_test_env;
use crate::support::redis::RedisServer;
use crate::support::wait_for;

/// `(task, start ns, end ns)` from the lines `start I NS` and `end I NS` each task appended.
fn spans(log: &str) -> Vec<(u64, u128, u128)> {
    let mut starts = std::collections::BTreeMap::new();
    let mut spans = Vec::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(what), Some(task), Some(at)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            panic!("bad line {line:?}");
        };
        let task: u64 = task.parse().expect("task index");
        let at: u128 = at.parse().expect("nanoseconds");
        match *what {
            "start" => {
                starts.insert(task, at);
            }
            "end" => spans.push((task, starts[&task], at)),
            other => panic!("bad line kind {other:?}"),
        }
    }
    spans
}

fn wide_tasks_take_their_slots(mut grid: Grid) {
    grid.start_worker("narrow", 1);
    let log = grid.path("spans.log");
    let script = format!(
        "echo start {{i}} $(date +%s%N) >> {log}; sleep 0.3; echo end {{i}} $(date +%s%N) >> {log}",
        log = log.display()
    );
    submit(
        &grid,
        "wide",
        &["--array", "1-3", "--cpus", "2"],
        &["sh", "-c", &script],
    );
    let status = wait_for("status to say why the job waits", FINISH, || {
        let status = grid.status("wide");
        let why = status["job"]["error"].as_str().unwrap_or("").to_string();
        why.contains("takes 2 slots").then_some(status)
    });
    assert_eq!(status["job"]["status"], "pending", "{status}");
    assert!(
        !log.exists(),
        "a 1-slot worker ran a task of --cpus 2: {:?}",
        std::fs::read_to_string(&log)
    );
    grid.start_worker("wide", 2);
    let status = grid.wait_finished("wide", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let tasks = results(&grid, "wide");
    assert_eq!(tasks.len(), 3);
    for task in &tasks {
        assert_eq!(task["worker"], "wide", "{task}");
    }
    // Each task took both of the wide worker's slots: no two ran at once.
    let mut spans = spans(&std::fs::read_to_string(&log).expect("the tasks' log"));
    assert_eq!(spans.len(), 3, "{spans:?}");
    spans.sort_by_key(|(_, start, _)| *start);
    for pair in spans.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "tasks {} and {} of --cpus 2 ran at once on a 2-slot worker: {spans:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn a_task_of_cpus_2_waits_for_a_2_slot_worker_and_takes_both_slots() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    wide_tasks_take_their_slots(grid);
}

#[test]
fn on_redis_a_task_of_cpus_2_waits_for_a_2_slot_worker_and_takes_both_slots() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    grid.worker_flags.push("--allow-commands".into());
    wide_tasks_take_their_slots(grid);
}

/// Two workers, one whose environment makes every task fail: each task the failing worker takes
/// is retried once, and the retry must run on the other worker.
fn retries_move_to_the_other_worker(mut grid: Grid) {
    grid.worker_flags.extend([
        "--allow-commands".into(),
        "--pass-env".into(),
        "GRIDWATCH_TEST_FAIL_HERE".into(),
    ]);
    grid.start_worker("good", 1);
    // Every process started from here on, the second worker included, has the marker.
    set_test_env("GRIDWATCH_TEST_FAIL_HERE", "yes");
    grid.start_worker("bad", 1);
    wait_for("both workers to lease", FINISH, || {
        let jobs: serde_json::Value =
            serde_json::from_str(&grid.cli_ok(&["jobs", "--json"])).ok()?;
        (jobs["active_workers"].as_u64() == Some(2)).then_some(())
    });
    let script = "if [ -n \"$GRIDWATCH_TEST_FAIL_HERE\" ]; then echo failing here >&2; exit 3; fi; echo ran {i}";
    submit(
        &grid,
        "flaky",
        &["--array", "1-6", "--retries", "1"],
        &["sh", "-c", script],
    );
    let status = grid.wait_finished("flaky", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let tasks = results(&grid, "flaky");
    assert_eq!(tasks.len(), 6);
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(task["worker"], "good", "{task}");
        assert_eq!(task["stdout"], format!("ran {}\n", i + 1), "{task}");
    }
    let retried = tasks.iter().filter(|t| t["attempt"] == 2).count();
    assert!(
        retried >= 1,
        "the failing worker ran no task, so nothing was retried: {tasks:?}"
    );
}

#[test]
fn a_failed_attempt_is_retried_on_another_worker() {
    retries_move_to_the_other_worker(Grid::start(&[]));
}

#[test]
fn on_redis_a_failed_attempt_is_retried_on_another_worker() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grid = Grid::start_on(Some(&url), &[]);
    retries_move_to_the_other_worker(grid);
}
