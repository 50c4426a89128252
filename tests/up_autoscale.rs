//! `up --autoscale MIN-MAX` with real processes, running command tasks that wait (so the test
//! costs little CPU and its timings do not depend on the machine's speed): a backlog of 40
//! two-second tasks brings the grid from 1 to 3 workers and, once the queue is empty, back to 1;
//! each task prints its own index, once; no alert is raised for a worker stopped by a scale-down, including one stopped
//! while it holds a lease, which finishes that task first; and the decisions are counted in
//! /metrics and shown by `workers`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::procs::{gridwatch, read_addr_file, wait_for, Proc};

struct Elastic {
    dir: tempfile::TempDir,
    up: Proc,
    master: String,
}

/// `up` is stopped as a user stops it, with SIGTERM, so that it stops the master, collector,
/// agents and workers it started; killed outright, it would leave them running after the test.
impl Drop for Elastic {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.up.pid() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            let _ = self.up.wait_exit(Duration::from_secs(60));
        }
    }
}

impl Elastic {
    /// `up --autoscale RANGE` with the given delays, its workers logging every task.
    fn start(range: &str, up_after: &str, down_after: &str) -> Elastic {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let data_arg = data.to_str().expect("utf-8").to_string();
        let up = Proc::spawn(
            "up",
            dir.path(),
            &[
                "up",
                "--autoscale",
                range,
                "--scale-up-after",
                up_after,
                "--scale-down-after",
                down_after,
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--drop-dir",
                "off",
                "--data-dir",
                &data_arg,
                "--allow-commands",
            ],
            &[("LOG_LEVEL", "debug")],
        );
        let master = read_addr_file(&data.join("master.addr"));
        Elastic { dir, up, master }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = gridwatch()
            .args(args)
            .args(["--master", &self.master])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        serde_json::from_str(&self.cli(args)?).ok()
    }

    /// Worker ids whose agent reports them alive.
    fn alive(&self) -> Vec<String> {
        let views = self.json(&["workers", "--json"]).unwrap_or(Value::Null);
        views
            .as_array()
            .map(|workers| {
                workers
                    .iter()
                    .filter(|w| w["status"] == "ALIVE")
                    .filter_map(|w| w["worker_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Submits a one-task command job running `script` under `sh -c`.
    fn submit_command(&self, job: &str, priority: &str, script: &str) {
        let submit = gridwatch()
            .args(["submit", "command", "--master", &self.master])
            .args(["--job-id", job, "--priority", priority, "--"])
            .args(["sh", "-c", script])
            .output()
            .expect("run gridwatch submit");
        assert!(submit.status.success(), "submit {job}: {submit:?}");
    }

    /// What each task of a command job printed, in task order.
    fn printed(&self, job: &str) -> Vec<String> {
        let results = self
            .json(&["results", job, "--format", "json"])
            .unwrap_or_else(|| panic!("results of {job}"));
        results["tasks"]
            .as_array()
            .expect("a task list")
            .iter()
            .map(|task| task["stdout"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn wait_completed(&self, job: &str, limit: Duration) {
        wait_for(&format!("{job} completed"), limit, || {
            let status = self.json(&["status", job, "--json"])?;
            (status["job"]["status"] == "completed").then_some(())
        });
    }

    /// Every alert event the grid recorded.
    fn alerts(&self) -> Vec<Value> {
        let alerts = self.json(&["alerts", "--json"]).unwrap_or(Value::Null);
        alerts.as_array().cloned().unwrap_or_default()
    }

    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let http = read_addr_file(&self.data().join("http.addr"));
        let reply = crate::support::http::request_with(&http, "GET", "/metrics", &[], "");
        reply
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(line_prefix))
            .and_then(|value| value.trim().parse().ok())
    }

    fn worker_log(&self, id: &str) -> String {
        std::fs::read_to_string(self.data().join("logs").join(format!("{id}.log")))
            .unwrap_or_default()
    }
}

#[test]
fn a_backlog_brings_the_grid_to_max_workers_and_an_empty_queue_back_to_min() {
    let grid = Elastic::start("1-3", "2s", "3s");
    wait_for("one worker alive", Duration::from_secs(60), || {
        (grid.alive().len() == 1).then_some(())
    });
    let submitted = Instant::now();
    // The master's address goes before `--`: what follows is the program's own arguments.
    let submit = gridwatch()
        .args([
            "submit",
            "command",
            "--master",
            &grid.master,
            "--array",
            "1-40",
        ])
        .args(["--job-id", "backlog", "--", "sh", "-c", "sleep 2; echo {i}"])
        .output()
        .expect("run gridwatch submit");
    assert!(submit.status.success(), "{submit:?}");
    wait_for("3 workers alive", Duration::from_secs(60), || {
        (grid.alive().len() == 3).then_some(())
    });
    let grown = submitted.elapsed();
    assert!(
        grown <= Duration::from_secs(10),
        "3 workers after {grown:?}"
    );

    let emptied = wait_for("the queue empty", Duration::from_secs(600), || {
        let queue = grid.json(&["status", "--queue", "--json"])?;
        (queue["waiting_tasks"] == 0).then(Instant::now)
    });
    wait_for("back to one worker", Duration::from_secs(120), || {
        (grid.alive().len() == 1).then_some(())
    });
    let shrunk = emptied.elapsed();
    assert!(
        shrunk <= Duration::from_secs(3 + 10),
        "back to 1 worker {shrunk:?} after the queue emptied"
    );
    grid.wait_completed("backlog", Duration::from_secs(300));
    let printed = grid.printed("backlog");
    let expected: Vec<String> = (1..=40).map(|i| format!("{i}\n")).collect();
    assert_eq!(printed, expected, "each task printed its own index, once");

    let alerts = grid.alerts();
    assert!(alerts.is_empty(), "a scale-down raised alerts: {alerts:?}");
    let up_log = grid.up.log();
    assert!(up_log.contains("autoscale up: worker w2:"), "{up_log}");
    assert!(up_log.contains("autoscale down: worker w3:"), "{up_log}");
    let up = "gridwatch_autoscale_events_total{direction=\"up\"} ";
    let down = "gridwatch_autoscale_events_total{direction=\"down\"} ";
    assert_eq!(grid.metric(up), Some(2.0));
    assert_eq!(grid.metric(down), Some(2.0));
    let workers = grid.cli(&["workers"]).expect("workers");
    assert_eq!(workers.matches("SCALED DOWN").count(), 2, "{workers}");
}

#[test]
fn a_worker_scaled_down_while_holding_a_lease_finishes_it_and_raises_no_alert() {
    let grid = Elastic::start("1-2", "1s", "2s");
    wait_for("one worker alive", Duration::from_secs(60), || {
        (grid.alive().len() == 1).then_some(())
    });
    // w1 takes the short high-priority task; the long one waits until w2 starts and takes it.
    // When w1 is done, w2 is the spare worker stopped, while it runs the long task.
    grid.submit_command("short", "high", "sleep 6; echo short");
    grid.submit_command("long", "low", "sleep 20; echo long");
    wait_for("w2 stopped", Duration::from_secs(300), || {
        grid.up
            .log()
            .contains("autoscale down: worker w2:")
            .then_some(())
    });
    grid.wait_completed("long", Duration::from_secs(600));
    grid.wait_completed("short", Duration::from_secs(60));
    let w2 = grid.worker_log("w2");
    let stopping = w2
        .find("stopping: finishing the tasks in hand")
        .unwrap_or_else(|| panic!("w2 was not stopped with SIGTERM:\n{w2}"));
    assert!(
        w2[stopping..].contains("task done"),
        "w2 held no task when it was stopped:\n{w2}"
    );
    assert_eq!(grid.printed("long"), ["long\n"]);
    assert_eq!(grid.printed("short"), ["short\n"]);
    let alerts = grid.alerts();
    assert!(
        alerts.is_empty(),
        "the scale-down raised alerts: {alerts:?}"
    );
}
