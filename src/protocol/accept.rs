//! Accepting on a grid server's socket (the master's, its HTTP port's and the collector's TCP
//! ports, an agent's Unix socket): a failed accept is logged and retried after a pause that
//! doubles up to a second. Then the first moments of a connection, the same for the master and
//! the collector: a slot from [`Admission`](super::admission::Admission) or a `busy` refusal,
//! the TLS handshake, then frames of at most [`PRE_AUTH_MAX_FRAME`] bytes, each within the frame
//! deadline, until the hello is welcomed, which must happen within the hello deadline. A
//! stranger who never authenticates thus holds a few KiB and a slot for seconds, however it
//! trickles its bytes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::unix::SocketAddr as UnixAddr;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::time::Instant;

use super::{Connection, ErrorCode, ServerTls, Stream, PRE_AUTH_MAX_FRAME};

/// The first pause after a failed accept, and the longest.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// A socket that accepts connections: a TCP listener, or a Unix one.
pub trait Listen {
    /// An accepted connection.
    type Stream;
    /// The peer's address.
    type Addr;
    /// The next connection, or why none could be taken.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    type Addr = UnixAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(UnixStream, UnixAddr)>> + Send {
        UnixListener::accept(self)
    }
}

/// A listening socket whose failed accepts (out of file descriptors and the like) are logged and
/// retried after a pause that doubles up to a second, so a server under such a failure neither
/// spins nor stops.
pub struct Acceptor<L = TcpListener> {
    listener: L,
    backoff: Duration,
    /// Which server logs the failure.
    component: &'static str,
}

impl<L: Listen> Acceptor<L> {
    /// Accepts on `listener` for `component`.
    pub fn new(listener: L, component: &'static str) -> Self {
        Acceptor {
            listener,
            backoff: ACCEPT_BACKOFF.0,
            component,
        }
    }

    /// The next connection. Cancel-safe: dropped during a pause, the next call accepts at once.
    pub async fn accept(&mut self) -> (L::Stream, L::Addr) {
        loop {
            match self.listener.accept().await {
                Ok(pair) => {
                    self.backoff = ACCEPT_BACKOFF.0;
                    return pair;
                }
                Err(err) => {
                    tracing::warn!(component = self.component, error = %err, "accept failed");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            }
        }
    }
}

/// How long a connection may take to greet and to send each frame, and how large its frames may
/// be once greeted.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// From accept to the hello being read, the TLS handshake included.
    pub hello_timeout: Duration,
    /// Silence allowed between frames.
    pub idle_timeout: Duration,
    /// One frame's first byte to its last.
    pub frame_timeout: Duration,
    /// The frame limit once the hello is welcomed (before it, [`PRE_AUTH_MAX_FRAME`] at most).
    pub max_frame: usize,
}

impl ConnectionLimits {
    /// When a connection accepted now must have greeted.
    pub fn hello_deadline(&self) -> Instant {
        Instant::now() + self.hello_timeout
    }

    /// Frames `stream` as a peer not yet welcomed: the small pre-hello frame limit, the idle and
    /// frame deadlines. Once its hello is welcomed, `set_max_frame(self.max_frame)` lifts the limit.
    pub fn unauthenticated(&self, stream: Stream) -> Connection<Stream> {
        Connection::new(stream)
            .with_max_frame(PRE_AUTH_MAX_FRAME.min(self.max_frame))
            .with_read_timeout(Some(self.idle_timeout))
            .with_frame_timeout(Some(self.frame_timeout))
    }

    /// What a connection that missed the hello deadline is told before it is closed.
    pub fn hello_late(&self) -> (ErrorCode, String) {
        (
            ErrorCode::Timeout,
            format!(
                "no hello within {:?} of connecting; closing",
                self.hello_timeout
            ),
        )
    }
}

/// The stream for an accepted socket: the socket itself in plain TCP, else the TLS stream once
/// the handshake is done (by `deadline`). `None` when the peer is turned away: a plain-text
/// client at a TLS port (told so in its own protocol), a failed or late handshake.
pub async fn open_stream(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<&ServerTls>,
    deadline: Instant,
    component: &'static str,
) -> Option<Stream> {
    let Some(tls) = tls else {
        return Some(Stream::Plain(socket));
    };
    match tokio::time::timeout_at(deadline, tls.accept(socket)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::info!(component, %peer, error = %err, "connection refused");
            None
        }
        Err(_) => {
            tracing::info!(component, %peer, "connection refused: no TLS handshake in time");
            None
        }
    }
}

/// Tells a connection that got no slot why (over TLS when the server speaks it, the handshake
/// bounded by `deadline`), then closes it.
pub async fn refuse(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<&ServerTls>,
    deadline: Instant,
    message: String,
    component: &'static str,
) {
    tracing::debug!(component, %peer, "connection refused: busy");
    if let Some(stream) = open_stream(socket, peer, tls, deadline, component).await {
        let mut conn = Connection::new(stream).with_max_frame(PRE_AUTH_MAX_FRAME);
        conn.send_error(ErrorCode::Busy, message).await;
        conn.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn limits(max_frame: usize) -> ConnectionLimits {
        ConnectionLimits {
            hello_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(10),
            max_frame,
        }
    }

    #[tokio::test]
    async fn a_stranger_s_frame_is_held_to_64_kib_until_the_limit_is_lifted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (socket, _) = listener.accept().await.expect("accept");
        let mut conn = limits(16 << 20).unauthenticated(Stream::Plain(socket));
        assert_eq!(conn.max_frame(), 64 * 1024);
        client
            .write_all(&(64u32 * 1024 + 1).to_be_bytes())
            .await
            .expect("announce");
        let err = conn
            .read_frame()
            .await
            .expect_err("over the pre-hello limit");
        assert_eq!(err.code(), ErrorCode::FrameTooLarge);
        conn.set_max_frame(16 << 20);
        assert_eq!(conn.max_frame(), 16 << 20);
        // A server whose own limit is below 64 KiB keeps it before the hello too.
        let small = limits(1000).unauthenticated(Stream::Plain(
            TcpStream::connect(listener.local_addr().expect("address"))
                .await
                .expect("connect"),
        ));
        assert_eq!(small.max_frame(), 1000);
    }
}
