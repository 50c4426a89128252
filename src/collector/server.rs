//! The collector's TCP server: agents open one connection each, say hello and send `metrics`;
//! each report is answered by `metrics_ack` carrying the lease verdict. Clients may also ask for
//! `list_workers` / `list_alerts` here. A bad frame gets an `error` frame and closes only that
//! connection. Strangers meet the master's defences: a slot per address, a hello deadline, a
//! per-frame deadline and a 64 KiB frame limit until the hello is welcomed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use super::clock::Moment;
use super::gate::{Claim, Gate};
use super::watchtower::Watchtower;
use crate::protocol::accept::{open_stream, refuse, Acceptor};
use crate::protocol::admission::Slot;
use crate::protocol::handshake::{read_hello, welcome, Peer};
use crate::protocol::{
    Admission, AdmissionLimits, Connection, ConnectionLimits, ErrorCode, Message, ProtocolError,
    Role, ServerRole, ServerTls, Stream,
};

/// An agent reports at least every report interval; a connection silent this long is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The listener's limits: who gets a slot, and what a connection may take before and after its
/// hello.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connection slots, overall and per address, and the queue for them.
    pub admission: AdmissionLimits,
    /// Hello, idle and frame deadlines, and the frame limit once welcomed.
    pub connection: ConnectionLimits,
}

/// The watchtower behind a lock shared by connections and the ticker.
#[derive(Clone, Debug)]
pub struct SharedWatchtower(Arc<Mutex<Watchtower>>);

impl SharedWatchtower {
    /// Shares `tower`.
    pub fn new(tower: Watchtower) -> SharedWatchtower {
        SharedWatchtower(Arc::new(Mutex::new(tower)))
    }

    /// Locks it (a poisoned lock still holds valid bookkeeping).
    pub fn lock(&self) -> MutexGuard<'_, Watchtower> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Accepts connections (over TLS when `tls` is given) until `shutdown` completes. Each waits for
/// a slot from the admission (overall and per address), then must greet within the hello
/// deadline, in small frames, before it may report or ask.
pub async fn serve(
    listener: TcpListener,
    tls: Option<ServerTls>,
    limits: Limits,
    tower: SharedWatchtower,
    gate: Arc<Gate>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let admission = Arc::new(Admission::new(limits.admission));
    let mut acceptor = Acceptor::new(listener, "collector");
    loop {
        let (socket, peer) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = &mut shutdown => return,
        };
        let _ = socket.set_nodelay(true);
        let (tower, gate, tls) = (tower.clone(), gate.clone(), tls.clone());
        let admission = admission.clone();
        tokio::spawn(async move {
            let slot = match admission.admit(peer.ip()).await {
                Ok(slot) => slot,
                Err(refused) => {
                    let deadline = limits.connection.hello_deadline();
                    refuse(socket, peer, tls.as_ref(), deadline, refused.0, "collector").await;
                    return;
                }
            };
            handle(socket, peer, tls, limits.connection, tower, gate, slot).await;
        });
    }
}

/// Runs the rules every `period` (for silent workers) and refreshes stored views every
/// `refresh_every` ticks, until `shutdown` completes.
pub async fn tick(
    tower: SharedWatchtower,
    period: Duration,
    refresh_every: u32,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(period);
    let mut count = 0u32;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut shutdown => return,
        }
        count = count.wrapping_add(1);
        tower
            .lock()
            .tick(Moment::now(), count % refresh_every.max(1) == 0);
    }
}

/// The agent a connection speaks for: the worker its hello named, and its claim on that id.
struct Reporter {
    worker: String,
    claim: Claim,
}

async fn handle(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<ServerTls>,
    limits: ConnectionLimits,
    tower: SharedWatchtower,
    gate: Arc<Gate>,
    mut slot: Slot<'_>,
) {
    let deadline = limits.hello_deadline();
    let opened = tokio::select! {
        opened = open_stream(socket, peer, tls.as_ref(), deadline, "collector") => opened,
        _ = slot.evicted() => None,
    };
    let Some(stream) = opened else {
        return;
    };
    let mut conn = limits.unauthenticated(stream);
    let address = peer.ip();
    let peer = peer.to_string();
    let admitting = tokio::time::timeout_at(deadline, admit(&mut conn, &gate, &peer, address));
    let mut admitted = tokio::select! {
        admitted = admitting => admitted.unwrap_or_else(|_| Err(Some(limits.hello_late()))),
        _ = slot.evicted() => Err(Some((ErrorCode::Busy, slot.evicted_message()))),
    };
    if admitted.is_ok() {
        if let Err(refused) = slot.greeted().await {
            if let Ok(Some(reporter)) = &admitted {
                gate.release(&reporter.worker, reporter.claim);
            }
            admitted = Err(Some((ErrorCode::Busy, refused.0)));
        }
    }
    let reporter = match admitted {
        Ok(reporter) => reporter,
        Err(Some((code, message))) => {
            // A silent or slow stranger is routine on an open port; a bad token is worth a warning.
            if code == ErrorCode::Timeout {
                tracing::info!(peer, %code, error = %message, "connection refused");
            } else {
                tracing::warn!(peer, %code, error = %message, "connection refused");
            }
            conn.send_error(code, message).await;
            conn.shutdown().await;
            return;
        }
        Err(None) => return,
    };
    conn.set_max_frame(limits.max_frame);
    if welcome(&mut conn, ServerRole::Collector).await.is_ok() {
        if let Err(err) = serve_requests(&mut conn, &tower, &gate, reporter.as_ref()).await {
            tracing::debug!(peer, error = %err, "collector connection ended");
            if !matches!(err, ProtocolError::Io(_) | ProtocolError::Closed) {
                if matches!(err.code(), ErrorCode::Unauthorized | ErrorCode::IdInUse) {
                    tracing::warn!(peer, error = %err, "report refused");
                }
                conn.send_error(err.code(), err.to_string()).await;
            }
        }
    }
    if let Some(reporter) = reporter {
        gate.release(&reporter.worker, reporter.claim);
    }
    conn.shutdown().await;
}

/// Checks the hello: the cluster token for everyone; an agent must name its worker, and no
/// other live agent may hold that worker. Clients (queries) report nothing.
async fn admit(
    conn: &mut Connection<Stream>,
    gate: &Gate,
    peer: &str,
    address: std::net::IpAddr,
) -> Result<Option<Reporter>, Option<(ErrorCode, String)>> {
    let Peer { role, id, .. } = read_hello(conn, gate.token())
        .await
        .map_err(|err| err.reply())?;
    if role != Role::Agent {
        return Ok(None);
    }
    let Some(worker) = id.filter(|id| !id.is_empty()) else {
        let message = "an agent's hello must name the worker it watches (its id)";
        return Err(Some((ErrorCode::BadMessage, message.to_string())));
    };
    let claim = gate
        .claim(&worker, peer, address, Instant::now())
        .map_err(Some)?;
    Ok(Some(Reporter { worker, claim }))
}

async fn serve_requests(
    conn: &mut Connection<Stream>,
    tower: &SharedWatchtower,
    gate: &Gate,
    reporter: Option<&Reporter>,
) -> Result<(), ProtocolError> {
    while let Some(message) = conn.read_message().await? {
        match &message {
            Message::Metrics { data } => {
                let beat = data
                    .beat_interval_secs
                    .and_then(|secs| beat_interval(secs).ok());
                check_report(&data.worker_id, gate, reporter, beat)?
            }
            Message::AgentHeartbeat {
                worker_id,
                interval_secs,
            } => {
                let interval = beat_interval(*interval_secs)?;
                check_report(worker_id, gate, reporter, Some(interval))?
            }
            _ => {}
        }
        let reply = answer(message, tower);
        conn.write_message(&reply).await?;
    }
    Ok(())
}

/// A heartbeat interval an agent may announce: positive and at most a minute.
fn beat_interval(secs: f64) -> Result<Duration, ProtocolError> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d >= Duration::from_millis(10) && *d <= Duration::from_secs(60))
        .ok_or_else(|| ProtocolError::Decode {
            code: ErrorCode::BadMessage,
            message: format!(
                "heartbeat interval {secs} s is out of range: send one between 0.01 and 60 s"
            ),
        })
}

/// A report or heartbeat is taken only from the agent of the worker it names, while that agent
/// still holds the worker's id. A heartbeat's interval shortens how long the holder's silence is
/// tolerated before another agent may take over (a host that returns reconnects within seconds).
fn check_report(
    worker: &str,
    gate: &Gate,
    reporter: Option<&Reporter>,
    beat: Option<Duration>,
) -> Result<(), ProtocolError> {
    let refuse = |code, message: String| Err(ProtocolError::Decode { code, message });
    let Some(reporter) = reporter else {
        return refuse(
            ErrorCode::Unauthorized,
            "only an agent reports metrics; its hello names the worker it watches".into(),
        );
    };
    if reporter.worker != worker {
        return refuse(
            ErrorCode::Unauthorized,
            format!(
                "this agent watches worker {:?}, not {worker:?}: report only for your own worker",
                reporter.worker
            ),
        );
    }
    if !gate.refresh(worker, reporter.claim, Instant::now(), beat) {
        return refuse(
            ErrorCode::IdInUse,
            format!("another agent now reports for worker {worker:?}"),
        );
    }
    Ok(())
}
fn answer(message: Message, tower: &SharedWatchtower) -> Message {
    match message {
        Message::Metrics { data } => {
            let seq = data.seq;
            let verdict = tower.lock().on_report(*data, Moment::now());
            Message::MetricsAck {
                seq,
                pause_leasing: verdict.pause,
                reason: verdict.reason,
            }
        }
        Message::AgentHeartbeat {
            worker_id,
            interval_secs,
        } => {
            let interval = Duration::try_from_secs_f64(interval_secs).unwrap_or_default();
            let verdict = tower.lock().on_beat(&worker_id, interval, Moment::now());
            Message::AgentHeartbeatAck {
                pause_leasing: verdict.pause,
                reason: verdict.reason,
            }
        }
        Message::ListWorkers => Message::Workers {
            workers: tower.lock().views(Moment::now()),
        },
        Message::ListAlerts { limit } => Message::Alerts {
            alerts: tower.lock().recent_alerts(limit as usize),
        },
        _ => Message::Error {
            code: ErrorCode::UnexpectedMessage,
            reason: None,
            message: "the collector takes metrics, agent_heartbeat, list_workers and list_alerts"
                .into(),
        },
    }
}
