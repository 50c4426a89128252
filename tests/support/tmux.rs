//! A detached tmux session for tests that need a terminal (progress bars, `top`): a fixed-size
//! pane on its own server socket, read with `capture-pane`, killed on drop.

use std::process::{Command, Output};

/// A tmux server of its own with one session running a shell command.
pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Whether tmux is installed (tests skip, or fail under `GRIDWATCH_REQUIRE_TOOLS=1`).
    pub fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok()
    }

    /// Starts `command` (run by `sh -c`) in a `columns` × `rows` pane; `name` keeps the socket
    /// apart from other tests'.
    pub fn start(name: &str, columns: u16, rows: u16, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("gridwatch-{name}-{}", std::process::id()),
            session: name.to_string(),
        };
        let (x, y) = (columns.to_string(), rows.to_string());
        let started = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            &x,
            "-y",
            &y,
            "sh",
            "-c",
            command,
        ]);
        assert!(
            started.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        tmux
    }

    /// Runs a tmux command against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `keys` into the pane.
    pub fn keys(&self, keys: &str) {
        assert!(self
            .run(&["send-keys", "-t", &self.session, keys])
            .status
            .success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
