//! Runs one command task as a real child process: in a fresh private directory (removed
//! afterwards), with a clean environment, in its own process group, stdout and stderr captured up
//! to a cap. The whole group is killed when the program ends (nothing it left running survives
//! the task), on timeout (SIGTERM, then SIGKILL after a grace period) and on stop (SIGKILL).
//! CPU time and peak RSS come from the kernel's rusage of the reaped child.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::sync::{oneshot, watch};

use super::command_cgroup::TaskCgroup;
use super::command_limits;
use crate::jobs::command::TaskLimits;

/// Time between SIGTERM and SIGKILL when a task times out: long enough to flush a file, short
/// enough that a timeout means the group is gone seconds later.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Longest wait for a task's pipes to close once its group is dead (a process that left the
/// group, e.g. by `setsid`, may hold them open forever).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Reaping a child and reading the children's rusage around it are one step, so that the
/// difference is this child's alone while several slots run tasks.
static REAP: Mutex<()> = Mutex::new(());

/// What to run and how.
pub struct Launch<'a> {
    /// The resolved program.
    pub program: &'a Path,
    /// Its arguments (without the program).
    pub args: &'a [String],
    /// The whole environment the task gets.
    pub env: Vec<(String, String)>,
    /// Kill the group after this long.
    pub timeout: Option<Duration>,
    /// Bytes kept of each of stdout and stderr.
    pub output_cap: u64,
    /// Kernel limits set before the program starts.
    pub limits: TaskLimits,
    /// Told the child's pid (its process group's id) once it is spawned.
    pub spawned: Option<Box<dyn FnOnce(u32) + Send + 'a>>,
    /// The task's memory cgroup, when its memory is limited by one (then the address space
    /// is not limited).
    pub cgroup: Option<&'a TaskCgroup>,
    /// Where stdout and stderr are captured as they come, for whoever sends them on while the
    /// task runs.
    pub captures: Captures,
}

/// One stream's bytes as they are captured, shared with the sender of the running task's output.
pub type SharedCapture = Arc<Mutex<Captured>>;

/// A task's two streams as they are captured.
#[derive(Clone, Debug, Default)]
pub struct Captures {
    /// Standard output.
    pub stdout: SharedCapture,
    /// Standard error.
    pub stderr: SharedCapture,
}

/// One stream's captured bytes.
#[derive(Debug, Default)]
pub struct Captured {
    /// The kept bytes, at most the cap.
    pub bytes: Vec<u8>,
    /// Every byte written, kept or not.
    pub total: u64,
}

impl Captured {
    /// Whether bytes past the cap were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct Ran {
    /// Exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Why the runner killed it (`timeout`), if it did.
    pub killed: Option<String>,
    /// Standard output.
    pub stdout: Captured,
    /// Standard error.
    pub stderr: Captured,
    /// Wall time.
    pub wall: Duration,
    /// User + system CPU of the child and its reaped descendants.
    pub cpu: Duration,
    /// Peak RSS in KiB, when known.
    pub max_rss_kib: Option<u64>,
}

/// A fresh private working directory, removed when dropped.
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// Creates `gridwatch-task-RANDOM` (mode 0700) under the system's temporary directory.
    pub fn create() -> std::io::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        let name = format!("gridwatch-task-{}", uuid::Uuid::new_v4().simple());
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(WorkDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_ok() {
            return;
        }
        // A task may leave read-only directories behind: make them writable, then try again.
        make_writable(&self.0);
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(component = "worker", dir = %self.0.display(), error = %err, "a task's working directory could not be removed");
        }
    }
}

/// Gives the owner write access to every directory under `dir` (symbolic links not followed).
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Runs the program in `dir` until it ends, `timeout` passes or `stop` turns true.
pub async fn run(
    launch: Launch<'_>,
    dir: &Path,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Ran> {
    let started = Instant::now();
    let procs = launch.cgroup.map(TaskCgroup::procs_file);
    let mut child = command_limits::command(
        launch.program,
        launch.args,
        &launch.limits,
        procs.as_deref(),
    )?
    .current_dir(dir)
    .env_clear()
    .envs(launch.env)
    .process_group(0)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    if let Some(spawned) = launch.spawned {
        spawned(child.id());
    }
    let stdout = capture(
        child.stdout.take(),
        launch.output_cap,
        &launch.captures.stdout,
    );
    let stderr = capture(
        child.stderr.take(),
        launch.output_cap,
        &launch.captures.stderr,
    );
    let (done_tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(wait_and_reap(child, pid));
    });
    let mut ran = Ran::default();
    let (reaped, sampled_rss) = supervise(pid, done, stop, launch.timeout, &mut ran).await?;
    let (status, cpu, rusage_rss) = reaped?;
    ran.wall = started.elapsed();
    ran.exit_code = status.code();
    ran.signal = status.signal();
    ran.cpu = cpu;
    ran.max_rss_kib = match (rusage_rss, sampled_rss) {
        (Some(kib), sampled) => Some(kib.max(sampled)),
        (None, 0) => None,
        (None, sampled) => Some(sampled),
    };
    ran.stdout = collect(stdout, &launch.captures.stdout).await;
    ran.stderr = collect(stderr, &launch.captures.stderr).await;
    Ok(ran)
}

/// Watches the running group until its leader has ended and been reaped (`done`): samples its
/// peak RSS, kills the group on timeout (SIGTERM, then SIGKILL after [`KILL_GRACE`]) and as soon
/// as `stop` is true. Returns the reap and the peak RSS sampled (KiB, 0 when none).
///
/// `stop` is acted on at the top of every turn, not only in the branch that sees it change: a
/// change that lands in a turn another ready branch wins (a sample tick, the deadline) is not
/// acted on in that turn, and a branch guarded by the stop value itself is disabled from then on,
/// so a cancelled task would run on.
async fn supervise(
    pid: Pid,
    mut done: oneshot::Receiver<Reaped>,
    mut stop: watch::Receiver<bool>,
    timeout: Option<Duration>,
    ran: &mut Ran,
) -> std::io::Result<(Reaped, u64)> {
    let mut sampled_rss = 0;
    let mut sample = tokio::time::interval(Duration::from_millis(100));
    // A stalled worker takes one sample when it wakes, not a burst of them.
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut stopped = false;
    loop {
        if !stopped && *stop.borrow_and_update() {
            let _ = killpg(pid, Signal::SIGKILL);
            stopped = true;
        }
        tokio::select! {
            reaped = &mut done => {
                let reaped = reaped.map_err(|_| std::io::Error::other("the task's waiter ended"))?;
                return Ok((reaped, sampled_rss));
            }
            _ = sample.tick() => sampled_rss = sampled_rss.max(peak_rss_kib(pid).unwrap_or(0)),
            _ = sleep_until(deadline), if ran.killed.is_none() => {
                ran.killed = Some("timeout".into());
                let _ = killpg(pid, Signal::SIGTERM);
                kill_at = Some(tokio::time::Instant::now() + KILL_GRACE);
            }
            _ = sleep_until(kill_at), if kill_at.is_some() => {
                let _ = killpg(pid, Signal::SIGKILL);
                kill_at = None;
            }
            changed = stop.changed(), if !stopped => {
                // The value is acted on at the top of the loop; a sender gone means stop too.
                if changed.is_err() {
                    let _ = killpg(pid, Signal::SIGKILL);
                    stopped = true;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type Reaped = std::io::Result<(std::process::ExitStatus, Duration, Option<u64>)>;

/// Waits for the child to end without reaping it, kills what is left of its group (the group id
/// cannot be reused while the leader is unreaped), then reaps it, reading the children's rusage
/// around the reap: the CPU difference is this child's; its peak RSS is known when it raised the
/// children's maximum.
fn wait_and_reap(mut child: Child, pid: Pid) -> Reaped {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(std::io::Error::from(err)),
        }
    }
    let _ = killpg(pid, Signal::SIGKILL);
    let _guard = REAP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(std::io::Error::from)?;
    let status = child.wait()?;
    let after = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(std::io::Error::from)?;
    let micros = |u: &nix::sys::resource::Usage| {
        let t = u.user_time() + u.system_time();
        t.tv_sec() * 1_000_000 + t.tv_usec()
    };
    let cpu = Duration::from_micros((micros(&after) - micros(&before)).max(0) as u64);
    let rss = (after.max_rss() > before.max_rss()).then_some(after.max_rss() as u64);
    Ok((status, cpu, rss))
}

/// The child's peak RSS so far (VmHWM), KiB.
fn peak_rss_kib(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a pipe to its end on a thread of its own into `into`, keeping `cap` bytes and counting
/// the rest; the receiver hears when the pipe has closed.
fn capture(
    pipe: Option<impl Read + Send + 'static>,
    cap: u64,
    into: &SharedCapture,
) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    let into = into.clone();
    std::thread::spawn(move || {
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut captured = into.lock().unwrap_or_else(|p| p.into_inner());
                        let room = cap.saturating_sub(captured.bytes.len() as u64) as usize;
                        captured.bytes.extend_from_slice(&buf[..n.min(room)]);
                        captured.total += n as u64;
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// What a stream captured, once its pipe has closed or, past [`PIPE_GRACE`] (a process outside
/// the group holds it open), what it captured by then.
async fn collect(closed: oneshot::Receiver<()>, captured: &SharedCapture) -> Captured {
    let _ = tokio::time::timeout(PIPE_GRACE, closed).await;
    std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A long `sleep` in a group of its own, reaped by a waiter thread as the runner reaps a task.
    fn sleeper() -> (Pid, oneshot::Receiver<Reaped>) {
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .expect("spawning sleep");
        let pid = Pid::from_raw(child.id() as i32);
        let (done_tx, done) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(wait_and_reap(child, pid));
        });
        (pid, done)
    }

    /// Regression: a stop that the runner did not see change (it came while another branch won
    /// the turn) left a cancelled task running. A stop already set when the runner looks is
    /// the same situation, made certain.
    #[tokio::test]
    async fn a_stop_set_before_the_runner_looks_still_kills_the_group() {
        let (pid, done) = sleeper();
        let (stop_tx, stop) = watch::channel(false);
        stop_tx.send(true).unwrap();
        let mut ran = Ran::default();
        let watched = supervise(pid, done, stop, None, &mut ran);
        let (reaped, _) = tokio::time::timeout(Duration::from_secs(60), watched)
            .await
            .expect("the group was never killed")
            .unwrap();
        assert_eq!(reaped.unwrap().0.signal(), Some(9));
    }

    #[tokio::test]
    async fn a_stop_sent_while_running_kills_the_group() {
        let (pid, done) = sleeper();
        let (stop_tx, stop) = watch::channel(false);
        let mut ran = Ran::default();
        let watched = supervise(pid, done, stop, None, &mut ran);
        tokio::pin!(watched);
        // Let the runner take a few turns (sample ticks) before the stop arrives.
        for _ in 0..3 {
            assert!(
                tokio::time::timeout(Duration::from_millis(150), &mut watched)
                    .await
                    .is_err(),
                "the sleeper ended by itself"
            );
        }
        stop_tx.send(true).unwrap();
        let (reaped, _) = tokio::time::timeout(Duration::from_secs(60), watched)
            .await
            .expect("the group was never killed")
            .unwrap();
        assert_eq!(reaped.unwrap().0.signal(), Some(9));
    }
}
