//! The worker's side of the agent link: one Unix-socket connection kept open, a heartbeat every
//! second (tasks completed, every task its slots run with the pid of a command task's child),
//! and the agent's lease advice passed back to the worker. With no agent listening the worker
//! keeps working; the client retries with backoff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

use crate::protocol::handshake::{hello, Greeting};
use crate::protocol::{Connection, Message, ProtocolError, Role, RunningTask};
use crate::time::unix_now;

/// How often the worker heartbeats: every second, so a hang is noticed within the heartbeat
/// timeout give or take a second.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a missing agent link is normal: `up` and most deployments start the worker before
/// its agent, so only a link still missing after this is worth a warning.
const LINK_GRACE: Duration = Duration::from_secs(10);

/// What the worker shares with its heartbeat task.
#[derive(Debug)]
struct Progress {
    worker_id: String,
    tasks_completed: AtomicU64,
    /// The tasks the slots run now, by the order they started in (the key of each mark).
    running: Mutex<BTreeMap<u64, RunningTask>>,
    next_mark: AtomicU64,
    paused: watch::Sender<bool>,
    stop: Notify,
    /// Why the worker leaves, told to the agent with the goodbye.
    leaving: Mutex<Option<String>>,
    finished: watch::Sender<bool>,
}

/// Handle the worker keeps: report progress, read the lease advice, say goodbye.
#[derive(Clone, Debug)]
pub struct HeartbeatClient {
    progress: Arc<Progress>,
}

impl HeartbeatClient {
    /// Starts heartbeating to the agent at `socket` (on the current tokio runtime).
    pub fn spawn(worker_id: &str, socket: PathBuf, interval: Duration) -> HeartbeatClient {
        let progress = Arc::new(Progress {
            worker_id: worker_id.to_string(),
            tasks_completed: AtomicU64::new(0),
            running: Mutex::new(BTreeMap::new()),
            next_mark: AtomicU64::new(0),
            paused: watch::channel(false).0,
            stop: Notify::new(),
            leaving: Mutex::new(None),
            finished: watch::channel(false).0,
        });
        tokio::spawn(run(Arc::clone(&progress), socket, interval));
        HeartbeatClient { progress }
    }

    /// A slot started `task`: it is told to the agent until the returned mark is dropped.
    #[must_use = "the task leaves the heartbeat as soon as its mark is dropped"]
    pub fn task_started(&self, task: impl Into<String>) -> RunningMark {
        let key = self.progress.next_mark.fetch_add(1, Ordering::Relaxed);
        let entry = RunningTask {
            task: task.into(),
            pid: None,
        };
        if let Ok(mut running) = self.progress.running.lock() {
            running.insert(key, entry);
        }
        RunningMark {
            progress: Arc::clone(&self.progress),
            key,
        }
    }

    /// `tasks` more tasks had their results stored and their leases acked.
    pub fn tasks_completed_add(&self, tasks: u64) {
        self.progress
            .tasks_completed
            .fetch_add(tasks, Ordering::Relaxed);
    }

    /// Tasks completed so far.
    pub fn tasks_completed(&self) -> u64 {
        self.progress.tasks_completed.load(Ordering::Relaxed)
    }

    /// Whether the collector asked this worker to stop leasing (a firing resource warning).
    pub fn leasing_paused(&self) -> bool {
        *self.progress.paused.borrow()
    }

    /// Waits until leasing is allowed (returns at once when it is).
    pub async fn wait_until_leasing_allowed(&self) {
        let mut paused = self.progress.paused.subscribe();
        let _ = paused.wait_for(|paused| !paused).await;
    }

    /// Tells the agent this is a clean exit (not a crash) and stops heartbeating; waits up to a
    /// second for the goodbye to be written.
    /// `reason` says why it leaves (`scaled down`), when it was told.
    pub async fn goodbye(&self, reason: Option<String>) {
        if let Ok(mut leaving) = self.progress.leaving.lock() {
            *leaving = reason;
        }
        self.progress.stop.notify_one();
        let mut finished = self.progress.finished.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(1), finished.wait_for(|done| *done)).await;
    }
}

/// One running task in the heartbeat; dropping it (the slot is done with the task) removes it.
#[derive(Debug)]
pub struct RunningMark {
    progress: Arc<Progress>,
    key: u64,
}

impl RunningMark {
    /// The task runs as child process `pid`, leader of its own process group: the agent
    /// measures that group.
    pub fn set_pid(&self, pid: u32) {
        if let Ok(mut running) = self.progress.running.lock() {
            if let Some(entry) = running.get_mut(&self.key) {
                entry.pid = Some(pid);
            }
        }
    }
}

impl Drop for RunningMark {
    fn drop(&mut self) {
        if let Ok(mut running) = self.progress.running.lock() {
            running.remove(&self.key);
        }
    }
}

async fn run(progress: Arc<Progress>, socket: PathBuf, interval: Duration) {
    link(&progress, socket, interval).await;
    progress.finished.send_replace(true);
}

async fn link(progress: &Progress, socket: PathBuf, interval: Duration) {
    let mut retry = RETRY_MIN;
    let mut warned = false;
    let mut missing_since = tokio::time::Instant::now();
    loop {
        let outcome = match UnixStream::connect(&socket).await {
            Ok(stream) => {
                retry = RETRY_MIN;
                warned = false;
                let outcome = session(progress, Connection::new(stream), interval).await;
                missing_since = tokio::time::Instant::now();
                outcome
            }
            Err(err) => Err(ProtocolError::Io(err)),
        };
        progress.paused.send_replace(false);
        match outcome {
            Ok(()) => return,
            Err(err) if !warned && missing_since.elapsed() >= LINK_GRACE => {
                tracing::warn!(socket = %socket.display(), error = %err,
                    missing_secs = missing_since.elapsed().as_secs(),
                    "no agent link; working on and retrying");
                warned = true;
            }
            Err(err) => tracing::debug!(socket = %socket.display(), error = %err,
                "agent link not up yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = progress.stop.notified() => return,
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

enum Event {
    Tick,
    Received(Result<Option<Message>, ProtocolError>),
    Stop,
}

/// One connection's life; `Ok(())` means the worker said goodbye.
async fn session(
    progress: &Progress,
    mut conn: Connection<UnixStream>,
    interval: Duration,
) -> Result<(), ProtocolError> {
    // The agent trusts its peer by the socket's owner, not by a token: none is sent.
    let greeting = Greeting::new(Role::Worker).with_id(progress.worker_id.clone());
    hello(&mut conn, &greeting).await?;
    let mut ticks = tokio::time::interval(interval);
    // After a SIGSTOP, one heartbeat on resume, not a burst of the missed ones.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            _ = ticks.tick() => Event::Tick,
            received = conn.read_message() => Event::Received(received),
            _ = progress.stop.notified() => Event::Stop,
        };
        match event {
            Event::Tick => conn.write_message(&heartbeat(progress)).await?,
            Event::Received(Ok(Some(Message::LeaseAdvice { pause, reason }))) => {
                if progress.paused.send_replace(pause) != pause {
                    tracing::info!(
                        pause,
                        reason = reason.as_deref().unwrap_or(""),
                        "lease advice from agent"
                    );
                }
            }
            Event::Received(Ok(Some(_))) => {}
            Event::Received(Ok(None)) => return Err(ProtocolError::Closed),
            Event::Received(Err(err)) => return Err(err),
            Event::Stop => {
                let reason = progress.leaving.lock().ok().and_then(|r| r.clone());
                conn.write_message(&Message::Goodbye { reason }).await?;
                conn.shutdown().await;
                return Ok(());
            }
        }
    }
}

fn heartbeat(progress: &Progress) -> Message {
    let running: Vec<RunningTask> = progress
        .running
        .lock()
        .map(|running| running.values().cloned().collect())
        .unwrap_or_default();
    Message::Heartbeat {
        timestamp: unix_now(),
        pid: std::process::id(),
        tasks_completed: progress.tasks_completed.load(Ordering::Relaxed),
        current_task: running.first().map(|entry| entry.task.clone()),
        running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(client: &HeartbeatClient) -> (Option<String>, Vec<RunningTask>) {
        match heartbeat(&client.progress) {
            Message::Heartbeat {
                current_task,
                running,
                ..
            } => (current_task, running),
            other => panic!("not a heartbeat: {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_busy_slot_is_in_the_heartbeat_until_its_mark_drops() {
        let socket = std::env::temp_dir().join("gridwatch-no-agent-here.sock");
        let client = HeartbeatClient::spawn("w1", socket, Duration::from_secs(3600));
        let first = client.task_started("j/0");
        let second = client.task_started("j/1");
        second.set_pid(4242);
        let (current, running) = beat(&client);
        assert_eq!(current.as_deref(), Some("j/0"));
        let expected = vec![
            RunningTask {
                task: "j/0".into(),
                pid: None,
            },
            RunningTask {
                task: "j/1".into(),
                pid: Some(4242),
            },
        ];
        assert_eq!(running, expected);
        drop(first);
        let (current, running) = beat(&client);
        assert_eq!(current.as_deref(), Some("j/1"));
        assert_eq!(running.len(), 1);
        drop(second);
        assert_eq!(beat(&client), (None, Vec::new()));
    }
}
