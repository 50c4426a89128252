//! The collector's TCP server: agents open one connection each, say hello and send `metrics`;
//! each report is answered by `metrics_ack` carrying the lease verdict. Clients may also ask for
//! `list_workers` / `list_alerts` here. A bad frame gets an `error` frame and closes only that
//! connection.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::clock::Moment;
use super::gate::{Claim, Gate};
use super::watchtower::Watchtower;
use crate::protocol::handshake::{read_hello, welcome, Peer};
use crate::protocol::{Connection, ErrorCode, Message, ProtocolError, Role, ServerTls, Stream};

/// Most connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 1024;
/// An agent reports at least every report interval; a connection silent this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Time a TLS client gets to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Accepts connections (over TLS when `tls` is given) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<ServerTls>,
    tower: SharedWatchtower,
    gate: Arc<Gate>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    let (tower, gate, tls) = (tower.clone(), gate.clone(), tls.clone());
                    tokio::spawn(async move {
                        handle(stream, tls, tower, gate).await;
                        drop(permit);
                    });
                }
                Err(err) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            _ = &mut shutdown => return,
        }
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
    stream: TcpStream,
    tls: Option<ServerTls>,
    tower: SharedWatchtower,
    gate: Arc<Gate>,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::warn!(peer, error = %err, "connection refused");
                return;
            }
            Err(_) => {
                tracing::warn!(peer, "connection refused: no TLS handshake in time");
                return;
            }
        },
    };
    let mut conn = Connection::new(stream).with_read_timeout(Some(IDLE_TIMEOUT));
    let reporter = match admit(&mut conn, &gate, &peer).await {
        Ok(reporter) => reporter,
        Err(Some((code, message))) => {
            tracing::warn!(peer, %code, error = %message, "connection refused");
            conn.send_error(code, message).await;
            return;
        }
        Err(None) => return,
    };
    if welcome(&mut conn).await.is_ok() {
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
        .claim(&worker, peer, Instant::now())
        .map_err(|message| Some((ErrorCode::IdInUse, message)))?;
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
            message: "the collector takes metrics, agent_heartbeat, list_workers and list_alerts"
                .into(),
        },
    }
}
