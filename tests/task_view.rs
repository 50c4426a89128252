//! The watchman sees the tasks a worker runs: two command tasks running at once on one worker,
//! one burning a core and one holding a known 200 MiB, appear in `gridwatch workers --json` with
//! their task ids, their child pids, and the CPU and resident memory of their process groups;
//! `gridwatch top` shows them under their worker; once the job is cancelled they are gone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::gridwatch_bin;
use crate::support::procs::wait_for;
use crate::support::tmux::Tmux;
use crate::support::watchman_grid::WatchedGrid;

/// What the memory task holds, MiB: filled bytes, so every page is resident.
const HELD_MIB: f64 = 200.0;

/// The running tasks of `worker` as `gridwatch workers --json` shows them.
fn running_tasks(grid: &WatchedGrid, worker: &str) -> Option<Vec<Value>> {
    let view = grid.worker_view(worker)?;
    Some(
        view["latest"]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

/// The pid a task wrote into `dir/N.pid` (its shell's, the leader of its process group).
fn task_pid(dir: &Path, index: u32) -> Option<u64> {
    std::fs::read_to_string(dir.join(format!("{index}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn running_command_tasks_show_their_cpu_and_memory_in_workers_and_top() {
    let grid = WatchedGrid::start_with_workers(
        "embedded",
        &["w1"],
        "15s",
        &[],
        "1s",
        &["--allow-commands"],
    );
    grid.wait_alive(1);
    let pids = grid.dir.path().join("pids");
    std::fs::create_dir(&pids).expect("pid dir");
    // Task 1 spins in a shell loop; task 2 becomes a Python holding HELD_MIB of filled bytes.
    let script = format!(
        "echo $$ > {dir}/{{i}}.pid; case {{i}} in \
         1) while :; do :; done;; \
         2) exec python3 -c 'import time; held = b\"x\" * ({held} << 20); time.sleep(300)';; \
         esac",
        dir = pids.display(),
        held = HELD_MIB as u64,
    );
    let job = "taskview";
    let submitted = Command::new(gridwatch_bin())
        .args(["submit", "command", "--job-id", job, "--master", &grid.addr])
        .args([
            "--array",
            "1-2",
            "--timeout",
            "120s",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .expect("run gridwatch submit");
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let (spinner_pid, holder_pid) = wait_for("both tasks started", Duration::from_secs(60), || {
        Some((task_pid(&pids, 1)?, task_pid(&pids, 2)?))
    });

    // Wait until the agent has reported both, the holder's bytes written; then judge one view.
    let tasks = wait_for(
        "both tasks reported with figures",
        Duration::from_secs(60),
        || {
            let tasks = running_tasks(&grid, "w1")?;
            let holder = tasks.iter().find(|t| t["pid"] == holder_pid)?;
            let spinner = tasks.iter().find(|t| t["pid"] == spinner_pid)?;
            let filled = holder["rss_mb"].as_f64()? > HELD_MIB * 0.75;
            (filled && spinner["cpu_percent"].is_number()).then_some(tasks)
        },
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&tasks).unwrap_or_default()
    );
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let ids: Vec<&str> = tasks.iter().filter_map(|t| t["task"].as_str()).collect();
    assert!(
        ids.iter().all(|id| id.starts_with(&format!("{job}/"))) && ids[0] != ids[1],
        "task ids of the job: {ids:?}"
    );
    let holder = tasks
        .iter()
        .find(|t| t["pid"] == holder_pid)
        .expect("holder");
    let spinner = tasks
        .iter()
        .find(|t| t["pid"] == spinner_pid)
        .expect("spinner");
    let held = holder["rss_mb"].as_f64().expect("holder rss");
    assert!(
        (HELD_MIB * 0.9..=HELD_MIB * 1.6).contains(&held),
        "{held:.1} MiB resident for a task holding {HELD_MIB} MiB"
    );
    // A busy loop gets most of a core; the machine may be shared, so the floor is low.
    let spin = spinner["cpu_percent"].as_f64().expect("spinner cpu");
    assert!(spin > 20.0 && spin < 150.0, "{spin:.1} % for a busy loop");
    let spinner_rss = spinner["rss_mb"].as_f64().expect("spinner rss");
    assert!(
        spinner_rss < 50.0,
        "a shell loop holds {spinner_rss:.1} MiB"
    );
    let sleeper_cpu = holder["cpu_percent"].as_f64().unwrap_or(0.0);
    assert!(sleeper_cpu < spin, "a sleeping holder {sleeper_cpu:.1} %");

    let table = grid.client(&["workers"]).expect("workers");
    let holder_id = holder["task"].as_str().expect("id");
    let row = table.lines().find(|l| l.starts_with(holder_id));
    assert!(
        row.is_some_and(|r| r.contains("w1") && r.contains(&holder_pid.to_string())),
        "the holder's row in the table:\n{table}"
    );

    top_shows_the_tasks(&grid, holder_id, spinner["task"].as_str().expect("id"));

    grid.client(&["cancel", job]).expect("cancel");
    wait_for(
        "the tasks gone from the view",
        Duration::from_secs(30),
        || running_tasks(&grid, "w1")?.is_empty().then_some(()),
    );
}

/// `top` lists both tasks under the worker, the holder's with its resident MiB.
fn top_shows_the_tasks(grid: &WatchedGrid, holder: &str, spinner: &str) {
    if !Tmux::available() {
        crate::support::skip_without("tmux is not installed");
        return;
    }
    let command = format!(
        "{} top --master {} --interval 300ms",
        gridwatch_bin().display(),
        grid.addr
    );
    let tmux = Tmux::start("taskview", 160, 30, &command);
    let screen = wait_for("top drawing the tasks", Duration::from_secs(30), || {
        let screen = tmux.screen();
        (screen.contains(holder) && screen.contains(spinner)).then_some(screen)
    });
    println!("{screen}");
    let line = screen
        .lines()
        .find(|l| l.contains(holder))
        .expect("the holder's line");
    let resident = line
        .split_whitespace()
        .filter_map(|word| word.parse::<f64>().ok())
        .any(|mib| (HELD_MIB * 0.9..=HELD_MIB * 1.6).contains(&mib));
    assert!(resident, "the holder's RSS on its line: {line:?}\n{screen}");
    assert!(screen.contains("2 running"), "{screen}");
    tmux.keys("q");
}
