//! `gridwatch top` as a person sees it: run in a detached tmux session of a fixed size against a
//! live grid, the screen shows the workers, a job and its status; `q` ends it.

use std::process::Command;
use std::time::Duration;

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{genome, Grid};

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
    let grid = Grid::start(&["w1", "w2"], "15s");
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
        grid.master_addr,
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
