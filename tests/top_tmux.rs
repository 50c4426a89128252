//! `gridwatch top` as a person sees it: run in a detached tmux session of a fixed size against a
//! live grid, the screen shows the workers, a job and its status; `q` ends it. At 80 and 160
//! columns job ids are whole and the keys hint stays; arrows select a job, `c` then `y` cancels
//! it for real (`gridwatch status` says so) and leaves the others alone.

use std::process::Command;
use std::time::Duration;

use crate::support::grid::Grid as MasterOnly;
use crate::support::procs::wait_for;
use crate::support::watchman_grid::{genome, WatchedGrid};

/// A detached tmux session on its own server socket, killed on drop.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", &self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn top_shows_workers_and_a_job_with_its_status_and_q_quits() {
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::support::skip_without("tmux is not installed");
        return;
    }
    let grid = WatchedGrid::start(&["w1", "w2"], "15s");
    grid.wait_alive(2);
    let (genome_file, _) = genome(grid.dir.path(), 200_000);
    let job = grid.submit(&genome_file, "40000");
    grid.wait_completed(&job, Duration::from_secs(60));

    let tmux = Tmux {
        socket: format!("gridwatch-top-{}", std::process::id()),
        session: "top".into(),
    };
    // A file that exists once top has exited, whatever its exit status.
    let done = grid.dir.path().join("top.exit");
    let command = format!(
        "{} top --master {} --interval 200ms; echo $? > {}",
        env!("CARGO_BIN_EXE_gridwatch"),
        grid.addr,
        done.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        &tmux.session,
        "-x",
        "160",
        "-y",
        "40",
        "sh",
        "-c",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    let screen = wait_for("top drawing the grid", Duration::from_secs(30), || {
        let screen = tmux.screen();
        let job_line = screen.lines().find(|l| l.contains(&job))?;
        (screen.contains("w1") && screen.contains("w2") && job_line.contains("completed"))
            .then_some(screen)
    });
    assert!(
        screen.contains("Workers") && screen.contains("Jobs"),
        "{screen}"
    );
    let job_line = screen
        .lines()
        .find(|l| l.contains(&job))
        .unwrap_or_default();
    assert!(
        job_line.contains("100%") && job_line.contains("5/5"),
        "{job_line}"
    );
    let active = screen
        .lines()
        .filter(|l| (l.contains("w1") || l.contains("w2")) && l.contains("active"))
        .count();
    assert_eq!(active, 2, "both workers active on screen:\n{screen}");
    println!("{screen}");

    let sent = tmux.run(&["send-keys", "-t", &tmux.session, "q"]);
    assert!(sent.status.success());
    let code = wait_for("top to exit on q", Duration::from_secs(10), || {
        std::fs::read_to_string(&done).ok()
    });
    assert_eq!(code.trim(), "0", "top exits cleanly on q");
    wait_for("the tmux session to end", Duration::from_secs(10), || {
        (!tmux.alive()).then_some(())
    });
}

/// Starts `gridwatch top` against `master` in a tmux session `width` columns wide; `done` gets
/// top's exit code once it ends.
fn top_in_tmux(master: &str, width: u16, done: &std::path::Path) -> Tmux {
    let tmux = Tmux {
        socket: format!("gridwatch-top-{}-{width}", std::process::id()),
        session: "top".into(),
    };
    let command = format!(
        "{} top --master {master} --interval 300ms; echo $? > {}",
        env!("CARGO_BIN_EXE_gridwatch"),
        done.display()
    );
    let width = width.to_string();
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        &tmux.session,
        "-x",
        &width,
        "-y",
        "30",
        "sh",
        "-c",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux
}

/// Submits a Julia job to a grid without workers, so it stays pending; returns its id.
fn pending_job(grid: &MasterOnly) -> String {
    let out = grid.cli_ok(&["submit", "julia", "--width", "64", "--json"]);
    let reply: serde_json::Value = serde_json::from_str(&out).expect("submit --json");
    reply["job_id"].as_str().expect("a job id").to_string()
}

fn job_status(grid: &MasterOnly, job: &str) -> String {
    grid.status(job)["job"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn select_and_cancel_at(width: u16) {
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::support::skip_without("tmux is not installed");
        return;
    }
    let grid = MasterOnly::start(&[]);
    let jobs = [pending_job(&grid), pending_job(&grid)];
    let done = grid.path("top.exit");
    let tmux = top_in_tmux(&grid.addr, width, &done);
    let send = |key: &str| {
        let sent = tmux.run(&["send-keys", "-t", &tmux.session, key]);
        assert!(sent.status.success(), "send {key}");
    };

    // The keys hint is the last line drawn, and "c cancel job" the end of it: waiting for it too
    // never reads a frame half drawn.
    let screen = wait_for(
        "top listing both jobs, then its keys hint",
        Duration::from_secs(30),
        || {
            let screen = tmux.screen();
            let hint = screen.contains("c cancel job");
            (hint && jobs.iter().all(|job| screen.contains(job.as_str()))).then_some(screen)
        },
    );
    println!("{width} columns:\n{screen}");
    assert!(
        screen.contains("q quit") && screen.contains("c cancel job"),
        "the keys hint is on screen at {width} columns:\n{screen}"
    );
    for job in &jobs {
        let line = screen.lines().find(|l| l.contains(job.as_str()));
        assert!(
            line.is_some_and(|l| l.contains("pending")),
            "{job} whole with its status at {width} columns:\n{screen}"
        );
    }

    // Down moves the selection from the first job to the second.
    send("Down");
    let selected = wait_for("the second job selected", Duration::from_secs(10), || {
        let screen = tmux.screen();
        let rows: Vec<&str> = screen
            .lines()
            .filter(|l| jobs.iter().any(|job| l.contains(job.as_str())))
            .collect();
        let marked = rows.iter().position(|row| row.contains("> "))?;
        (marked == 1).then(|| {
            jobs.iter()
                .find(|job| rows[1].contains(job.as_str()))
                .cloned()
                .unwrap_or_default()
        })
    });
    let other = jobs
        .iter()
        .find(|job| **job != selected)
        .expect("two jobs")
        .clone();

    send("c");
    wait_for("the confirmation question", Duration::from_secs(10), || {
        tmux.screen()
            .contains(&format!("cancel job {selected}? y"))
            .then_some(())
    });
    assert_eq!(
        job_status(&grid, &selected),
        "pending",
        "nothing is cancelled before the answer"
    );
    send("y");
    let screen = wait_for(
        "top saying the job was cancelled",
        Duration::from_secs(10),
        || {
            let screen = tmux.screen();
            screen
                .contains(&format!("cancelled job {selected}"))
                .then_some(screen)
        },
    );
    println!("{screen}");
    assert_eq!(job_status(&grid, &selected), "cancelled");
    assert_eq!(
        job_status(&grid, &other),
        "pending",
        "the other job is left alone"
    );

    send("q");
    // The shell creates the file before it writes the code into it: wait for the code itself.
    let code = wait_for("top to exit on q", Duration::from_secs(10), || {
        std::fs::read_to_string(&done)
            .ok()
            .filter(|code| !code.trim().is_empty())
    });
    assert_eq!(code.trim(), "0", "top exits cleanly on q");
}

#[test]
fn at_80_columns_ids_are_whole_and_a_selected_job_is_cancelled() {
    select_and_cancel_at(80);
}

#[test]
fn at_160_columns_ids_are_whole_and_a_selected_job_is_cancelled() {
    select_and_cancel_at(160);
}
