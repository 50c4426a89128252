//! The master's accept loop and per-connection handler (mini-redis `server.rs`): admission bounds
//! connections (per address, those not yet greeted, and greeted ones; extra ones queue), accept
//! errors back off, and one shutdown signal reaches every handler. Until its hello is welcomed,
//! a connection may send frames of 64 KiB at most, must greet within the hello timeout (with
//! TLS, the handshake counts against it too) and may be closed to make room for a newcomer.
//! A frame-level error (bad JSON, oversized frame, unknown type) gets an `error` frame and closes
//! that connection only; request-level errors get an `error` frame and the connection goes on.
//! Beside the handlers run the master's sweeps: expired leases, workers seen in the backend, and
//! spare genome copies whose job has ended.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::cmd::{self, HandlerError, Session};
use super::state::BACKEND_WORKERS_WINDOW;
use super::workers::IdClaim;
use super::MasterState;
use crate::protocol::accept::{open_stream, refuse, Acceptor};
use crate::protocol::admission::Slot;
use crate::protocol::handshake::{read_hello, welcome, AcceptError};
use crate::protocol::{
    Admission, AdmissionLimits, Connection, ConnectionLimits, ErrorCode, ProtocolError, Role,
    ServerRole, ServerTls, Stream,
};

/// How long handlers get to finish their current request after shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves connections on `listener` in plain TCP until `shutdown` completes, then drains the
/// handlers. Also runs the lease-expiry sweep.
pub async fn run(listener: TcpListener, state: Arc<MasterState>, shutdown: impl Future) {
    run_with_tls(listener, state, None, shutdown).await
}

/// [`run`], serving TLS only when `tls` is given.
pub async fn run_with_tls(
    listener: TcpListener,
    state: Arc<MasterState>,
    tls: Option<ServerTls>,
    shutdown: impl Future,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let admission = Arc::new(Admission::new(AdmissionLimits {
        max_connections: state.config.max_connections,
        max_unauthenticated: state.config.max_unauthenticated,
        per_address: state.config.max_connections_per_address,
        queue: state.config.connection_queue,
        queue_timeout: state.config.queue_timeout,
        flag_prefix: "",
    }));
    let mut handlers = JoinSet::new();
    handlers.spawn(reclaim_expired_leases(state.clone(), stop_rx.clone()));
    handlers.spawn(track_backend_workers(state.clone(), stop_rx.clone()));
    handlers.spawn(sweep_spare_copies(state.clone(), stop_rx.clone()));
    tokio::pin!(shutdown);
    let mut acceptor = Acceptor::new(listener, "master");
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = acceptor.accept() => accepted,
        };
        let _ = socket.set_nodelay(true);
        let (state, stop, admission) = (state.clone(), stop_rx.clone(), admission.clone());
        let tls = tls.clone();
        handlers.spawn(async move {
            let slot = match admission.admit(peer.ip()).await {
                Ok(slot) => slot,
                Err(refused) => {
                    let deadline = connection_limits(&state).hello_deadline();
                    refuse(socket, peer, tls.as_ref(), deadline, refused.0, "master").await;
                    return;
                }
            };
            handle_connection(socket, peer, tls, state, stop, slot).await;
        });
        // Reap finished handlers so the set does not grow without bound.
        while handlers.try_join_next().is_some() {}
    }
    tracing::info!(component = "master", "shutting down: draining connections");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while handlers.join_next().await.is_some() {}
    })
    .await;
    handlers.abort_all();
}

/// Periodically returns leases whose visibility timeout passed (the safety net behind the
/// collector's immediate `worker_down`).
async fn reclaim_expired_leases(state: Arc<MasterState>, mut stop: watch::Receiver<bool>) {
    let period = (state.config.visibility_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        match state.queue.reclaim_expired().await {
            Ok(0) => {}
            Ok(moved) => tracing::warn!(
                component = "master",
                tasks = moved,
                "expired leases returned to the queue"
            ),
            Err(err) => tracing::warn!(component = "master", error = %err, "lease sweep failed"),
        }
    }
}

/// Deletes spare genome copies (uploaded while the same genome was stored by another upload)
/// once their job has ended: at start, then every few seconds, since a job ends wherever its
/// last task settles (on Redis, in a worker's script). Ends at once on a backend that stores no
/// genomes.
async fn sweep_spare_copies(state: Arc<MasterState>, mut stop: watch::Receiver<bool>) {
    const PERIOD: Duration = Duration::from_secs(2);
    let mut ticker = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let Ok(genomes) = state.genome_store() else {
            return;
        };
        match genomes.sweep_spares().await {
            Ok(swept) if swept.is_empty() => {}
            Ok(swept) => tracing::info!(
                component = "master",
                copies = swept.len(),
                "spare genome copies deleted: their jobs ended"
            ),
            Err(err) => {
                tracing::debug!(component = "master", error = %err, "sweeping spare genome copies failed")
            }
        }
    }
}

/// Counts workers the backend sees (Redis: they lease there, never from the master) as active,
/// for `query_status` and the "no active workers" warning. Ends at once on a backend that does
/// not see workers (embedded: workers are seen on their connections).
async fn track_backend_workers(state: Arc<MasterState>, mut stop: watch::Receiver<bool>) {
    const PERIOD: Duration = Duration::from_secs(2);
    let mut ticker = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        match state.queue.recent_workers(BACKEND_WORKERS_WINDOW).await {
            Ok(None) => return,
            Ok(Some(workers)) => workers.iter().for_each(|w| state.workers.touch(w)),
            Err(err) => {
                tracing::debug!(component = "master", error = %err, "listing backend workers failed")
            }
        }
    }
}

/// The master's read limits for one connection, from its configuration.
fn connection_limits(state: &MasterState) -> ConnectionLimits {
    ConnectionLimits {
        hello_timeout: state.config.hello_timeout,
        idle_timeout: state.config.idle_timeout,
        frame_timeout: state.config.frame_timeout,
        max_frame: state.config.max_frame,
    }
}

/// Serves one connection: the TLS handshake if any and `hello` first, then requests until
/// close, error or shutdown. Until it greets, a newer connection may take its place (`slot`).
async fn handle_connection(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<ServerTls>,
    state: Arc<MasterState>,
    mut stop: watch::Receiver<bool>,
    mut slot: Slot<'_>,
) {
    let limits = connection_limits(&state);
    let deadline = limits.hello_deadline();
    let opened = tokio::select! {
        opened = open_stream(socket, peer, tls.as_ref(), deadline, "master") => opened,
        _ = slot.evicted() => None,
    };
    let Some(stream) = opened else {
        return;
    };
    let mut conn = limits.unauthenticated(stream);
    let greeting = tokio::time::timeout_at(deadline, greet(&mut conn, &state, peer));
    let greeted = tokio::select! {
        greeted = greeting => greeted.unwrap_or_else(|_| {
            let (code, message) = limits.hello_late();
            Err(HandlerError::fatal(code, message))
        }),
        _ = slot.evicted() => Err(HandlerError::fatal(ErrorCode::Busy, slot.evicted_message())),
    };
    // The worker id's claim lives as long as this connection.
    let (mut session, _id_claim) = match greeted {
        Ok(greeted) => greeted,
        Err(err) => {
            report(&mut conn, err, peer).await;
            return;
        }
    };
    if let Err(refused) = slot.greeted().await {
        report(
            &mut conn,
            HandlerError::fatal(ErrorCode::Busy, refused.0),
            peer,
        )
        .await;
        return;
    }
    conn.set_max_frame(limits.max_frame);
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = conn.read_message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(err) => {
                report(&mut conn, HandlerError::Protocol(err), peer).await;
                return;
            }
        };
        if let Err(err) = cmd::dispatch(&mut conn, &state, &mut session, message).await {
            if !report(&mut conn, err, peer).await {
                return;
            }
        }
    }
    conn.shutdown().await;
}

/// Reads and checks `hello` (version, cluster token, a worker's id not held by another live
/// worker), answers `welcome`.
async fn greet(
    conn: &mut Connection<Stream>,
    state: &MasterState,
    peer: SocketAddr,
) -> Result<(Session, Option<IdClaim>), HandlerError> {
    let hello = read_hello(conn, state.config.token.as_deref())
        .await
        .map_err(|err| match err {
            AcceptError::Closed => HandlerError::Protocol(ProtocolError::Closed),
            AcceptError::Protocol(err) => HandlerError::Protocol(err),
            AcceptError::Refused { code, message } => HandlerError::fatal(code, message),
        })?;
    let mut claim = None;
    if hello.role == Role::Worker {
        let Some(worker) = hello.id.as_deref().filter(|w| !w.is_empty()) else {
            return Err(HandlerError::fatal(
                ErrorCode::BadMessage,
                "a worker's hello needs its id",
            ));
        };
        let mut held = state
            .workers
            .claim(worker, hello.instance.as_deref(), &peer.to_string())
            .map_err(|message| HandlerError::fatal(ErrorCode::IdInUse, message))?;
        // The claim value names the worker process (its nonce), and that it came through a
        // master, so a direct claimant never mistakes it for one of its own machine's.
        let holder = format!(
            "{} via-master",
            hello.instance.as_deref().unwrap_or(&peer.to_string())
        );
        held.hold_shared(state.queue.clone(), holder)
            .await
            .map_err(|message| HandlerError::fatal(ErrorCode::IdInUse, message))?;
        claim = Some(held);
        state.workers.touch(worker);
    }
    welcome(conn, ServerRole::Master)
        .await
        .map_err(HandlerError::Protocol)?;
    let session = Session {
        role: hello.role,
        id: hello.id,
        peer,
    };
    Ok((session, claim))
}

/// Sends the error frame for `err`; returns whether the connection may go on.
async fn report(conn: &mut Connection<Stream>, err: HandlerError, peer: SocketAddr) -> bool {
    let reason = err.refusal_reason();
    let (code, message, keep_open) = err.into_reply();
    if matches!(code, ErrorCode::Internal) {
        tracing::error!(component = "master", %peer, error = %message, "request failed");
    } else {
        tracing::info!(component = "master", %peer, %code, error = %message, "request refused");
    }
    conn.send_refusal(code, message, reason).await;
    if !keep_open {
        conn.shutdown().await;
    }
    keep_open
}
