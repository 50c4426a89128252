//! The HTTP port's accept loop. It has its own admission, separate from the protocol port's, so
//! a flood here never takes a slot (or a descriptor budget) the grid needs: a connection that
//! has not sent a complete request header sits in a small pool whose oldest member a newcomer
//! closes, a request's header must arrive within the header timeout, and a connection on which
//! no byte moves for the idle timeout is closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::master::config::HttpLimits;
use crate::protocol::accept::Acceptor;
use crate::protocol::admission::Slot;
use crate::protocol::{Admission, AdmissionLimits};

/// How long open connections get to finish their request once shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` completes, then asks open connections to
/// close and waits a little for them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let admission = Arc::new(Admission::new(AdmissionLimits {
        max_connections: limits.max_connections,
        max_unauthenticated: limits.max_pending,
        per_address: limits.max_connections_per_address,
        queue: limits.connection_queue,
        // A request waits for a slot no longer than its header may take to arrive.
        queue_timeout: limits.header_timeout,
        flag_prefix: "http-",
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut acceptor = Acceptor::new(listener, "http");
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = acceptor.accept() => accepted,
        };
        let (admission, router, stop) = (admission.clone(), router.clone(), stop_rx.clone());
        connections.spawn(async move {
            match admission.admit(peer.ip()).await {
                Ok(slot) => serve_connection(socket, peer, router, limits, slot, stop).await,
                Err(refused) => refuse(socket, peer, &refused.0).await,
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// Answers 503 to a connection that got no slot, then closes it.
async fn refuse(mut socket: TcpStream, peer: SocketAddr, message: &str) {
    tracing::debug!(component = "http", %peer, "connection refused: busy");
    let body = serde_json::json!({ "error": message }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.write_all(response.as_bytes()),
    )
    .await;
}

/// Serves one connection's requests until it closes, idles out, is evicted before its first
/// complete request, or shutdown.
async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    mut slot: Slot<'_>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: socket,
        activity: activity.clone(),
    });
    // The first request whose header is complete moves the connection out of the pool of
    // connections a newcomer may close.
    let (first_request, mut first_request_seen) = oneshot::channel::<()>();
    let first_request = Arc::new(Mutex::new(Some(first_request)));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // Handlers that count per client (the rate limiter) read the peer's address here.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        if let Some(signal) = first_request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = signal.send(());
        }
        router.clone().call(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut greeted = false;
    let mut idle_check =
        tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(component = "http", %peer, error = %err, "connection ended");
                }
                return;
            }
            _ = &mut first_request_seen, if !greeted => {
                greeted = true;
                if let Err(refused) = slot.greeted().await {
                    tracing::debug!(component = "http", %peer, error = %refused.0, "connection closed: busy");
                    return;
                }
            }
            _ = slot.evicted() => {
                tracing::debug!(component = "http", %peer, "connection closed: newer connections waiting");
                return;
            }
            _ = idle_check.tick() => {
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!(component = "http", %peer, "connection closed: idle");
                    return;
                }
            }
            _ = stop.changed() => break,
        }
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
}

/// When a connection last moved a byte, in milliseconds since it was accepted.
#[derive(Clone)]
struct Activity {
    since: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// A socket that records when bytes last moved either way.
struct Watched {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
