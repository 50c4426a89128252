//! The agent's judgement of its worker: ALIVE while heartbeats arrive; DEAD at once when the
//! connection drops and the process is gone; DEAD after the heartbeat timeout when the process
//! lives but is silent (a hang); STOPPED after a goodbye; MISSING when no worker has said hello
//! within the heartbeat timeout of the agent's start, so an agent left alone on a host (its
//! worker never restarted) is not mistaken for one whose worker is about to come. Time comes
//! from the caller.

use std::time::{Duration, Instant};

use crate::protocol::{RunningTask, WorkerStatus};

/// Most running tasks kept from one heartbeat: a worker has a slot per core, and each task's
/// process group is measured for every report.
pub const MAX_RUNNING: usize = 256;

/// Identifies one worker connection, so a late disconnect of an old connection is ignored after
/// the worker reconnected.
pub type ConnectionId = u64;

/// Everything the agent knows about its worker.
#[derive(Debug)]
pub struct WorkerTracker {
    heartbeat_timeout: Duration,
    /// When the agent started waiting for its first worker.
    waiting_since: Instant,
    status: WorkerStatus,
    reason: Option<String>,
    pid: Option<u32>,
    connection: Option<ConnectionId>,
    hello_at: Option<Instant>,
    last_heartbeat: Option<Instant>,
    tasks_completed: u64,
    current_task: Option<String>,
    running: Vec<RunningTask>,
}

impl WorkerTracker {
    /// A tracker with no worker yet, waiting for one from `now`.
    pub fn new(heartbeat_timeout: Duration, now: Instant) -> WorkerTracker {
        WorkerTracker {
            heartbeat_timeout,
            waiting_since: now,
            status: WorkerStatus::Waiting,
            reason: None,
            pid: None,
            connection: None,
            hello_at: None,
            last_heartbeat: None,
            tasks_completed: 0,
            current_task: None,
            running: Vec::new(),
        }
    }

    /// The current status.
    pub fn status(&self) -> WorkerStatus {
        self.status
    }

    /// Why the status is what it is, if there is more to say.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The worker's pid, from its hello.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Tasks completed, from the latest heartbeat.
    pub fn tasks_completed(&self) -> u64 {
        self.tasks_completed
    }

    /// The task in progress, from the latest heartbeat.
    pub fn current_task(&self) -> Option<&str> {
        self.current_task.as_deref()
    }

    /// Every task in progress, from the latest heartbeat (none from workers that tell only
    /// their current task).
    pub fn running(&self) -> &[RunningTask] {
        &self.running
    }

    /// Time since the worker's hello.
    pub fn uptime(&self, now: Instant) -> Option<Duration> {
        self.hello_at.map(|at| now.saturating_duration_since(at))
    }

    /// The current connection, if a worker is connected.
    pub fn connection(&self) -> Option<ConnectionId> {
        self.connection
    }

    /// A worker said hello on `connection`. Returns true if the status changed.
    pub fn on_hello(&mut self, connection: ConnectionId, pid: u32, now: Instant) -> bool {
        if self.pid != Some(pid) {
            self.hello_at = Some(now);
            self.tasks_completed = 0;
        }
        self.pid = Some(pid);
        self.connection = Some(connection);
        self.last_heartbeat = Some(now);
        self.set(WorkerStatus::Alive, None)
    }

    /// A heartbeat arrived on `connection`. Returns true if the status changed (a hung worker
    /// that resumed is alive again).
    pub fn on_heartbeat(
        &mut self,
        connection: ConnectionId,
        tasks_completed: u64,
        current_task: Option<String>,
        now: Instant,
    ) -> bool {
        self.on_heartbeat_running(connection, tasks_completed, current_task, Vec::new(), now)
    }

    /// A heartbeat naming every running task arrived on `connection`; as
    /// [`WorkerTracker::on_heartbeat`]. At most [`MAX_RUNNING`] tasks are kept.
    pub fn on_heartbeat_running(
        &mut self,
        connection: ConnectionId,
        tasks_completed: u64,
        current_task: Option<String>,
        mut running: Vec<RunningTask>,
        now: Instant,
    ) -> bool {
        if self.connection != Some(connection) {
            return false;
        }
        self.last_heartbeat = Some(now);
        self.tasks_completed = tasks_completed;
        self.current_task = current_task;
        running.truncate(MAX_RUNNING);
        self.running = running;
        self.set(WorkerStatus::Alive, None)
    }

    /// The worker announced a clean exit. Returns true if the status changed.
    /// `reason` is the worker's own word for why it left (`scaled down`), bounded here since
    /// it is shown in every view.
    pub fn on_goodbye(&mut self, connection: ConnectionId, reason: Option<String>) -> bool {
        if self.connection != Some(connection) {
            return false;
        }
        self.current_task = None;
        self.running.clear();
        let reason = reason
            .map(|r| {
                r.chars()
                    .filter(|c| !c.is_control())
                    .take(80)
                    .collect::<String>()
            })
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "worker shut down cleanly".into());
        self.set(WorkerStatus::Stopped, Some(reason))
    }

    /// `connection` closed; `process_alive` says whether the worker's pid still runs.
    /// Returns true if the status changed.
    pub fn on_disconnect(&mut self, connection: ConnectionId, process_alive: bool) -> bool {
        if self.connection != Some(connection) {
            return false;
        }
        self.connection = None;
        if process_alive || self.status == WorkerStatus::Stopped {
            // A live process without its connection is judged by the heartbeat timeout.
            return false;
        }
        let pid = self
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into());
        self.set(WorkerStatus::Dead, Some(format!("process {pid} exited")))
    }

    /// Checks the heartbeat timeout at `now`. Returns true if the worker just became DEAD (a
    /// hang) or MISSING (no worker came).
    pub fn check(&mut self, now: Instant) -> bool {
        match self.status {
            WorkerStatus::Alive => self.check_hang(now),
            WorkerStatus::Waiting => self.check_missing(now),
            _ => false,
        }
    }

    fn check_hang(&mut self, now: Instant) -> bool {
        let Some(last) = self.last_heartbeat else {
            return false;
        };
        let silence = now.saturating_duration_since(last);
        if silence < self.heartbeat_timeout {
            return false;
        }
        let reason = format!(
            "no heartbeat for {:.1} s (process alive but hung)",
            silence.as_secs_f64()
        );
        self.set(WorkerStatus::Dead, Some(reason))
    }

    fn check_missing(&mut self, now: Instant) -> bool {
        let waited = now.saturating_duration_since(self.waiting_since);
        if waited < self.heartbeat_timeout {
            return false;
        }
        let reason = format!(
            "no worker has connected to its agent for {:.1} s (not started, or not restarted \
             after its host came back)",
            waited.as_secs_f64()
        );
        self.set(WorkerStatus::Missing, Some(reason))
    }

    /// When `check` should next run to catch a timeout on time.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.status {
            WorkerStatus::Alive => self
                .last_heartbeat
                .map(|last| last + self.heartbeat_timeout),
            WorkerStatus::Waiting => Some(self.waiting_since + self.heartbeat_timeout),
            _ => None,
        }
    }

    fn set(&mut self, status: WorkerStatus, reason: Option<String>) -> bool {
        let changed = self.status != status;
        self.status = status;
        if changed {
            self.reason = reason;
        }
        changed
    }
}

/// Whether process `pid` runs (a zombie awaiting its parent's wait counts as gone).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => !is_zombie(pid),
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Whether `pid` has exited but is not reaped yet (Linux; elsewhere, never).
fn is_zombie(pid: u32) -> bool {
    crate::procfs::stat(Some(pid)).is_some_and(|stat| stat.has_exited())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(15);

    #[test]
    fn a_crash_is_dead_at_once_and_a_reconnect_revives() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(TIMEOUT, t0);
        assert_eq!(tracker.status(), WorkerStatus::Waiting);
        assert!(tracker.on_hello(1, 4242, t0));
        assert!(tracker.on_disconnect(1, false));
        assert_eq!(tracker.status(), WorkerStatus::Dead);
        assert_eq!(tracker.reason(), Some("process 4242 exited"));
        assert!(tracker.on_hello(2, 4243, t0 + Duration::from_secs(1)));
        assert_eq!(tracker.status(), WorkerStatus::Alive);
    }

    #[test]
    fn a_hang_is_dead_only_after_the_heartbeat_timeout() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(TIMEOUT, t0);
        tracker.on_hello(1, 10, t0);
        tracker.on_heartbeat(1, 3, Some("job/7".into()), t0 + Duration::from_secs(1));
        assert_eq!(tracker.next_deadline(), Some(t0 + Duration::from_secs(16)));
        assert!(!tracker.check(t0 + Duration::from_millis(15_999)));
        assert!(tracker.check(t0 + Duration::from_secs(16)));
        assert_eq!(tracker.status(), WorkerStatus::Dead);
        assert!(
            !tracker.check(t0 + Duration::from_secs(17)),
            "dead once, not on every check"
        );
        // SIGCONT: the heartbeat resumes on the same connection.
        assert!(tracker.on_heartbeat(1, 4, None, t0 + Duration::from_secs(20)));
        assert_eq!(
            (tracker.status(), tracker.tasks_completed()),
            (WorkerStatus::Alive, 4)
        );
    }

    #[test]
    fn a_disconnect_of_a_live_process_waits_for_the_timeout() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(TIMEOUT, t0);
        tracker.on_hello(1, 10, t0);
        assert!(!tracker.on_disconnect(1, true));
        assert_eq!(tracker.status(), WorkerStatus::Alive);
        assert!(tracker.check(t0 + TIMEOUT));
    }

    #[test]
    fn stale_connections_and_goodbyes_are_not_deaths() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(TIMEOUT, t0);
        tracker.on_hello(1, 10, t0);
        tracker.on_hello(2, 11, t0);
        assert!(
            !tracker.on_disconnect(1, false),
            "the old connection's close is ignored"
        );
        assert!(
            !tracker.on_heartbeat(1, 9, None, t0),
            "and so are its heartbeats"
        );
        assert!(tracker.on_goodbye(2, None));
        assert!(!tracker.on_disconnect(2, false));
        assert_eq!(tracker.status(), WorkerStatus::Stopped);
        assert!(!tracker.check(t0 + TIMEOUT * 2));
    }

    #[test]
    fn an_agent_left_without_its_worker_reports_it_missing_until_one_comes() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(TIMEOUT, t0);
        assert_eq!(tracker.next_deadline(), Some(t0 + TIMEOUT));
        assert!(!tracker.check(t0 + TIMEOUT - Duration::from_millis(1)));
        assert_eq!(tracker.status(), WorkerStatus::Waiting);
        assert!(tracker.check(t0 + TIMEOUT));
        assert_eq!(tracker.status(), WorkerStatus::Missing);
        assert!(
            tracker.reason().is_some_and(|r| r.contains("15.0 s")),
            "{:?}",
            tracker.reason()
        );
        assert!(
            !tracker.check(t0 + TIMEOUT * 3),
            "missing once, not on every check"
        );
        assert!(tracker.on_hello(1, 77, t0 + TIMEOUT * 3));
        assert_eq!(tracker.status(), WorkerStatus::Alive);
    }

    #[test]
    fn a_worker_that_came_in_time_is_never_missing_even_after_it_stops() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(TIMEOUT, t0);
        tracker.on_hello(1, 10, t0 + Duration::from_secs(1));
        assert!(tracker.on_goodbye(1, None));
        assert!(!tracker.check(t0 + TIMEOUT * 4));
        assert_eq!(tracker.status(), WorkerStatus::Stopped);
        tracker.on_hello(2, 11, t0 + TIMEOUT * 4);
        assert!(tracker.on_disconnect(2, false));
        assert!(!tracker.check(t0 + TIMEOUT * 8));
        assert_eq!(
            tracker.status(),
            WorkerStatus::Dead,
            "a crash stays a crash"
        );
    }

    #[test]
    fn process_probe_tells_running_from_exited_and_unreaped() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not yet reaped: a zombie until wait(); poll until it has exited.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(pid) {
            assert!(
                Instant::now() < deadline,
                "child {pid} never became a zombie"
            );
            std::thread::yield_now();
        }
        child.wait().expect("reap");
        assert!(!process_alive(pid));
    }
}
