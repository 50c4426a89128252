//! The agent's Unix-socket server: workers connect, say hello, and heartbeat. A closed
//! connection whose process is gone makes the worker DEAD at once; the hang checker makes a
//! silent-but-alive worker DEAD after the heartbeat timeout. Every status change wakes the
//! reporter so the collector hears of it immediately.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};

use super::tracker::{process_alive, ConnectionId, WorkerTracker};
use crate::protocol::accept::Acceptor;
use crate::protocol::handshake::{read_hello, welcome};
use crate::protocol::{Connection, ErrorCode, Message, ProtocolError, Role, ServerRole};

/// How long after a dropped connection the agent looks for the process to disappear: a killed
/// process closes its sockets a moment before it becomes a zombie.
const EXIT_PROBE_WINDOW: Duration = Duration::from_millis(300);
const EXIT_PROBE_STEP: Duration = Duration::from_millis(2);
/// A worker that does not say hello within this time is disconnected.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Lease advice passed from the collector's verdict to the worker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseAdvice {
    /// Stop leasing new tasks.
    pub pause: bool,
    /// Why (the firing warning).
    pub reason: Option<String>,
}

/// State shared by the socket server, the hang checker and the reporter.
#[derive(Debug)]
pub struct AgentShared {
    tracker: Mutex<WorkerTracker>,
    /// Notified on every status change: the reporter sends a report at once.
    pub status_changed: Notify,
    /// The collector's latest verdict for this worker.
    pub advice: watch::Sender<LeaseAdvice>,
    next_connection: AtomicU64,
}

impl AgentShared {
    /// Shared state for a worker with the given heartbeat timeout.
    pub fn new(heartbeat_timeout: Duration) -> AgentShared {
        AgentShared {
            tracker: Mutex::new(WorkerTracker::new(heartbeat_timeout, Instant::now())),
            status_changed: Notify::new(),
            advice: watch::channel(LeaseAdvice::default()).0,
            next_connection: AtomicU64::new(1),
        }
    }

    /// Locks the worker tracker (a poisoned lock still holds valid bookkeeping).
    pub fn tracker(&self) -> MutexGuard<'_, WorkerTracker> {
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self, changed: bool) {
        if changed {
            let tracker = self.tracker();
            tracing::info!(
                status = tracker.status().as_str(),
                reason = tracker.reason().unwrap_or(""),
                "worker status changed"
            );
            drop(tracker);
            self.status_changed.notify_one();
        }
    }
}

/// Serves worker connections until `shutdown` completes.
pub async fn serve(listener: UnixListener, shared: Arc<AgentShared>, shutdown: impl Future) {
    tokio::pin!(shutdown);
    let mut acceptor = Acceptor::new(listener, "agent");
    loop {
        tokio::select! {
            (stream, _) = acceptor.accept() => {
                tokio::spawn(handle_worker(stream, Arc::clone(&shared)));
            }
            _ = &mut shutdown => return,
        }
    }
}

/// Checks the heartbeat timeout on time, until `shutdown` completes.
pub async fn check_hangs(shared: Arc<AgentShared>, shutdown: impl Future) {
    tokio::pin!(shutdown);
    loop {
        let deadline = shared.tracker().next_deadline();
        // Without a deadline, look again soon: a heartbeat may have set one meanwhile.
        let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = &mut shutdown => return,
        }
        let changed = shared.tracker().check(Instant::now());
        shared.changed(changed);
    }
}

/// Whether a process of `uid` may use this agent: the agent's own user, or root. The socket's
/// directory already keeps others out; this holds even if its permissions are loosened.
fn trusted_peer(stream: &UnixStream) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me || cred.uid() == 0 => Ok(()),
        Ok(cred) => Err(format!(
            "uid {} may not use the agent of uid {me}: only the worker's own user may connect",
            cred.uid()
        )),
        Err(err) => Err(format!("cannot read the peer's credentials: {err}")),
    }
}

async fn handle_worker(stream: UnixStream, shared: Arc<AgentShared>) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let trusted = trusted_peer(&stream);
    let mut conn = Connection::new(stream);
    if let Err(reason) = trusted {
        tracing::warn!(error = %reason, "connection refused");
        conn.send_error(ErrorCode::Unauthorized, reason).await;
        return;
    }
    // The peer is this user's (checked above): it is trusted without a token. A client hello is a
    // health check: welcomed, then closed.
    let accepted = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut conn, None)).await {
        Ok(Ok(peer)) if peer.role == Role::Worker => Ok(true),
        Ok(Ok(peer)) if peer.role == Role::Client => Ok(false),
        Ok(Ok(_)) => Err(Some((
            ErrorCode::UnexpectedMessage,
            "expected a worker hello first".to_string(),
        ))),
        Ok(Err(err)) => Err(err.reply()),
        Err(_) => Err(None),
    };
    match accepted {
        Ok(worker) => {
            if welcome(&mut conn, ServerRole::Agent).await.is_err() || !worker {
                conn.shutdown().await;
                return;
            }
        }
        Err(reply) => {
            if let Some((code, message)) = reply {
                conn.send_error(code, message).await;
            }
            return;
        }
    }
    if let Err(err) = heartbeats(&mut conn, id, &shared).await {
        tracing::debug!(error = %err, "worker connection ended with an error");
    }
    let pid = shared.tracker().pid();
    let alive = match pid {
        Some(pid) => wait_for_exit(pid).await,
        None => false,
    };
    let changed = shared.tracker().on_disconnect(id, alive);
    shared.changed(changed);
}

enum Event {
    Received(Result<Option<Message>, ProtocolError>),
    Advice,
}

async fn heartbeats(
    conn: &mut Connection<UnixStream>,
    id: ConnectionId,
    shared: &AgentShared,
) -> Result<(), ProtocolError> {
    let mut advice = shared.advice.subscribe();
    advice.mark_changed();
    loop {
        let event = tokio::select! {
            received = conn.read_message() => Event::Received(received),
            Ok(()) = advice.changed() => Event::Advice,
        };
        match event {
            Event::Advice => {
                let LeaseAdvice { pause, reason } = advice.borrow_and_update().clone();
                conn.write_message(&Message::LeaseAdvice { pause, reason })
                    .await?;
            }
            Event::Received(received) => match received? {
                None => return Ok(()),
                Some(Message::Heartbeat {
                    pid,
                    tasks_completed,
                    current_task,
                    running,
                    ..
                }) => {
                    let now = Instant::now();
                    let mut tracker = shared.tracker();
                    let before = tracker.status();
                    if tracker.connection() != Some(id) || tracker.pid() != Some(pid) {
                        tracker.on_hello(id, pid, now);
                    }
                    tracker.on_heartbeat_running(id, tasks_completed, current_task, running, now);
                    let changed = tracker.status() != before;
                    drop(tracker);
                    shared.changed(changed);
                }
                Some(Message::Goodbye { reason }) => {
                    let changed = shared.tracker().on_goodbye(id, reason);
                    shared.changed(changed);
                }
                Some(other) => {
                    let message = format!("unexpected {} on the agent socket", other.type_name());
                    conn.send_error(ErrorCode::UnexpectedMessage, message).await;
                    return Ok(());
                }
            },
        }
    }
}

/// Polls until `pid` is gone or the probe window ends; returns whether it still runs.
async fn wait_for_exit(pid: u32) -> bool {
    let deadline = Instant::now() + EXIT_PROBE_WINDOW;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(EXIT_PROBE_STEP).await;
    }
    false
}
