//! One supervised child of `gridwatch up`: how to start it again, and when. A child that exits on
//! its own is restarted after a backoff (100 ms, doubling up to 5 s), and the backoff starts over
//! once the child has stayed up for a while, as systemd's `Restart=on-failure` does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::log_file::{self, RotatingLog, SharedLog};
use crate::client::connect::ClientError;

/// How long children get to exit after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Restart delays: the first, and the most a crash loop backs off to.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A child that ran this long before it died counts as healthy: its next delay is the first again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next restart, growing while a child keeps crashing soon after its start.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The delay before restarting a child that ran for `ran_for`.
    pub fn after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE_AFTER {
            self.next = FIRST_DELAY;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        delay
    }
}

/// A child process with what it takes to start it again.
pub struct Supervised {
    /// What it is, for messages: `master`, `collector`, `agent of w1`, `worker w1`.
    pub name: String,
    exe: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    log_file: SharedLog,
    copier: Option<tokio::task::JoinHandle<()>>,
    child: Child,
    started: Instant,
    backoff: Backoff,
    restart_at: Option<Instant>,
}

impl Supervised {
    /// Starts `exe ARGS` with stderr copied to `log`, which is appended to (an earlier run's
    /// lines stay readable) and rotated by size.
    pub fn start(
        name: impl Into<String>,
        exe: &Path,
        args: Vec<OsString>,
        log: PathBuf,
    ) -> Result<Self, ClientError> {
        let log_file = RotatingLog::open(&log, log_file::DEFAULT_MAX_BYTES, log_file::DEFAULT_KEEP)
            .map_err(|e| ClientError::Usage(format!("{}: {e}", log.display())))?;
        let log_file = std::sync::Arc::new(std::sync::Mutex::new(log_file));
        let (child, copier) = spawn(exe, &args, &log_file)?;
        Ok(Self {
            name: name.into(),
            exe: exe.to_path_buf(),
            args,
            log,
            log_file,
            copier: Some(copier),
            child,
            started: Instant::now(),
            backoff: Backoff::default(),
            restart_at: None,
        })
    }

    /// Replaces the arguments used by later restarts (e.g. the port bound the first time).
    pub fn restart_with(&mut self, args: Vec<OsString>) {
        self.args = args;
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        if self.restart_at.is_some() {
            return None;
        }
        self.child.id()
    }

    /// Whether the child is running (not waiting to be restarted).
    pub fn is_running(&self) -> bool {
        self.restart_at.is_none()
    }

    /// Where the child logs.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits (briefly) until everything the exited child wrote is in its log.
    pub async fn log_drained(&mut self) {
        if let Some(copier) = self.copier.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
        }
    }

    /// The exit status, if the child has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Notices an exit of a running child and schedules its restart; returns the line to print.
    pub fn check_exit(&mut self) -> Option<String> {
        if self.restart_at.is_some() {
            return None;
        }
        let status = self.try_exit()?;
        let delay = self.backoff.after_exit(self.started.elapsed());
        self.restart_at = Some(Instant::now() + delay);
        Some(format!(
            "{} exited ({status}); restarting in {:.1} s",
            self.name,
            delay.as_secs_f64()
        ))
    }

    /// Whether a scheduled restart is due.
    pub fn restart_due(&self, now: Instant) -> bool {
        self.restart_at.is_some_and(|at| at <= now)
    }

    /// Starts the child again (its log appended, so the crash stays readable); returns the line to
    /// print. A failed start is scheduled again with the next backoff.
    pub fn restart(&mut self) -> String {
        match spawn(&self.exe, &self.args, &self.log_file) {
            Ok((child, copier)) => {
                self.child = child;
                self.copier = Some(copier);
                self.started = Instant::now();
                self.restart_at = None;
                format!(
                    "{} restarted (pid {})",
                    self.name,
                    self.child.id().unwrap_or(0)
                )
            }
            Err(err) => {
                let delay = self.backoff.after_exit(Duration::ZERO);
                self.restart_at = Some(Instant::now() + delay);
                format!(
                    "{} could not restart: {err}; trying again in {:.1} s",
                    self.name,
                    delay.as_secs_f64()
                )
            }
        }
    }

    /// Sends SIGTERM, if it runs.
    pub fn terminate(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }

    /// Waits for the exit after `terminate`, killing it after the stop timeout.
    pub async fn reap(&mut self) {
        self.reap_within(STOP_TIMEOUT).await;
    }

    /// Waits for the exit after `terminate`, killing it after `limit`.
    pub async fn reap_within(&mut self, limit: Duration) {
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.log_drained().await;
    }

    /// Kills it at once (a failed start).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Starts the child with its stderr piped into `log` by a copier task.
fn spawn(
    exe: &Path,
    args: &[OsString],
    log: &SharedLog,
) -> Result<(Child, tokio::task::JoinHandle<()>), ClientError> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        // A local grid talks over loopback in plain TCP: TLS settings meant for a remote grid
        // must not turn its master into a TLS server its own workers cannot reach.
        .env_remove("GRIDWATCH_TLS_CERT")
        .env_remove("GRIDWATCH_TLS_KEY")
        .env_remove("GRIDWATCH_TLS_CA")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| ClientError::Usage(format!("cannot start a gridwatch process: {e}")))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| ClientError::Usage("a gridwatch process has no stderr pipe".into()))?;
    let copier = tokio::spawn(log_file::copy_lines(stderr, log.clone()));
    Ok((child, copier))
}

/// The last thing a child said in its log: the `error: …` line a role prints when it fails, or the
/// message of its last JSON log line.
pub fn last_words(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())?
        .trim();
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        let message = json["fields"]["message"]
            .as_str()
            .or_else(|| json["message"].as_str())?;
        return Some(message.to_string());
    }
    Some(line.strip_prefix("error: ").unwrap_or(line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut backoff = Backoff::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<u128> = (0..8)
            .map(|_| backoff.after_exit(quick).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.after_exit(STABLE_AFTER).as_millis(), 100);
        assert_eq!(backoff.after_exit(quick).as_millis(), 200);
    }

    #[test]
    fn last_words_reads_the_error_line_or_a_json_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("master.log");
        std::fs::write(
            &log,
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"starting\"}}\nerror: cannot listen on 127.0.0.1:5000: Address already in use\n\n",
        )
        .expect("write log");
        assert_eq!(
            last_words(&log).as_deref(),
            Some("cannot listen on 127.0.0.1:5000: Address already in use")
        );
        std::fs::write(&log, "{\"fields\":{\"message\":\"shutting down\"}}\n").expect("write");
        assert_eq!(last_words(&log).as_deref(), Some("shutting down"));
        assert_eq!(last_words(&dir.path().join("none.log")), None);
    }
}
