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

use super::watch::{process_alive, ConnectionId, WorkerWatch};
use crate::protocol::handshake::{read_hello, welcome};
use crate::protocol::{Connection, ErrorCode, Message, ProtocolError, Role};

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
    watch: Mutex<WorkerWatch>,
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
            watch: Mutex::new(WorkerWatch::new(heartbeat_timeout)),
            status_changed: Notify::new(),
            advice: watch::channel(LeaseAdvice::default()).0,
            next_connection: AtomicU64::new(1),
        }
    }

    /// Locks the worker watch (a poisoned lock still holds valid bookkeeping).
    pub fn watch(&self) -> MutexGuard<'_, WorkerWatch> {
        self.watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self, changed: bool) {
        if changed {
            let watch = self.watch();
            tracing::info!(
                status = watch.status().as_str(),
                reason = watch.reason().unwrap_or(""),
                "worker status changed"
            );
            drop(watch);
            self.status_changed.notify_one();
        }
    }
}

/// Serves worker connections until `shutdown` completes.
pub async fn serve(listener: UnixListener, shared: Arc<AgentShared>, shutdown: impl Future) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(handle_worker(stream, Arc::clone(&shared)));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = &mut shutdown => return,
        }
    }
}

/// Checks the heartbeat timeout on time, until `shutdown` completes.
pub async fn check_hangs(shared: Arc<AgentShared>, shutdown: impl Future) {
    tokio::pin!(shutdown);
    loop {
        let deadline = shared.watch().next_deadline();
        // Without a deadline, look again soon: a heartbeat may have set one meanwhile.
        let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = &mut shutdown => return,
        }
        let changed = shared.watch().check(Instant::now());
        shared.changed(changed);
    }
}

async fn handle_worker(stream: UnixStream, shared: Arc<AgentShared>) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection::new(stream);
    // The socket's directory is private to its owner: the peer is trusted without a token.
    let accepted = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut conn, None)).await {
        Ok(Ok(peer)) if peer.role == Role::Worker => Ok(()),
        Ok(Ok(_)) => Err(Some((
            ErrorCode::UnexpectedMessage,
            "expected a worker hello first".to_string(),
        ))),
        Ok(Err(err)) => Err(err.reply()),
        Err(_) => Err(None),
    };
    match accepted {
        Ok(()) => {
            if welcome(&mut conn).await.is_err() {
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
    let pid = shared.watch().pid();
    let alive = match pid {
        Some(pid) => wait_for_exit(pid).await,
        None => false,
    };
    let changed = shared.watch().on_disconnect(id, alive);
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
                    ..
                }) => {
                    let now = Instant::now();
                    let mut watch = shared.watch();
                    let before = watch.status();
                    if watch.connection() != Some(id) || watch.pid() != Some(pid) {
                        watch.on_hello(id, pid, now);
                    }
                    watch.on_heartbeat(id, tasks_completed, current_task, now);
                    let changed = watch.status() != before;
                    drop(watch);
                    shared.changed(changed);
                }
                Some(Message::Goodbye) => {
                    let changed = shared.watch().on_goodbye(id);
                    shared.changed(changed);
                }
                Some(other) => {
                    let message = format!("unexpected {} on the agent socket", type_name(&other));
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

fn type_name(message: &Message) -> String {
    serde_json::to_value(message)
        .ok()
        .and_then(|value| {
            value
                .get("type")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "message".into())
}
