//! One way to ask a server: connect over TCP or TLS (retrying briefly if asked), greet with
//! `hello`, then send a request and read its reply; an `error` reply becomes
//! [`RequestError::Refused`] and the connection stays usable. Command-line clients, the worker's remote backend, the collector and
//! the demo all ask the master (or the collector) through this type.

use std::time::Duration;

use thiserror::Error;

use super::handshake::{hello, Greeting, HelloError};
use super::transport::{self, ClientTls, ConnectError, Stream};
use super::{Connection, ErrorCode, Message, ProtocolError, ServerRole};
use crate::records::RefusalReason;

/// How to reach a server.
#[derive(Clone, Debug)]
pub struct Dial {
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Connection attempts before giving up (at least 1); the pause between them starts at
    /// 100 ms and doubles, for a server that is still starting.
    pub attempts: u32,
    /// How long to wait for any one frame of a reply; `None` waits as long as it takes.
    pub read_timeout: Option<Duration>,
    /// TLS settings when the server speaks TLS; `None` connects in plain TCP.
    pub tls: Option<ClientTls>,
}

impl Default for Dial {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            attempts: 1,
            read_timeout: None,
            tls: None,
        }
    }
}

/// Why a request got no usable reply.
#[derive(Debug, Error)]
pub enum RequestError {
    /// No connection could be made.
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// The socket error, or the timeout.
        reason: String,
    },
    /// The TLS handshake failed for a reason retrying will not fix: the server's certificate is
    /// not signed by the configured CA, or the server speaks no TLS.
    #[error("{reason}")]
    Tls {
        /// The address tried.
        address: String,
        /// What went wrong and what to change.
        reason: String,
    },
    /// The server refused a result, saying why.
    #[error("{message}")]
    ResultRefused {
        /// Why, as the server sent it.
        reason: RefusalReason,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with an `error` frame (to the hello or to the request).
    #[error("{message}")]
    Refused {
        /// The server's reason.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection broke, or the server answered out of protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl From<HelloError> for RequestError {
    fn from(err: HelloError) -> Self {
        match err {
            HelloError::Refused { code, message } => RequestError::Refused { code, message },
            other => RequestError::Protocol(other.into()),
        }
    }
}

/// An open, greeted connection on which each request gets one reply.
pub struct Requester {
    conn: Connection<Stream>,
    server: Option<ServerRole>,
}

impl Requester {
    /// Connects to `address` and says hello with `greeting`.
    pub async fn connect(
        address: &str,
        greeting: &Greeting,
        dial: &Dial,
    ) -> Result<Self, RequestError> {
        let mut pause = Duration::from_millis(100);
        let mut attempt = 1;
        let stream = loop {
            let reason =
                match transport::connect(address, dial.tls.as_ref(), dial.connect_timeout).await {
                    Ok(stream) => break stream,
                    Err(ConnectError::Unreachable(reason)) => reason,
                    Err(ConnectError::Tls(reason)) => {
                        return Err(RequestError::Tls {
                            address: address.to_string(),
                            reason,
                        })
                    }
                };
            if attempt >= dial.attempts.max(1) {
                return Err(RequestError::Unreachable {
                    address: address.to_string(),
                    reason,
                });
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        };
        let mut conn = Connection::new(stream).with_read_timeout(dial.read_timeout);
        let server = hello(&mut conn, greeting).await?;
        Ok(Self { conn, server })
    }

    /// Which server welcomed us, if it said.
    pub fn server_role(&self) -> Option<ServerRole> {
        self.server
    }

    /// Sends a request and returns its reply.
    pub async fn request(&mut self, message: &Message) -> Result<Message, RequestError> {
        self.conn.write_message(message).await?;
        self.reply().await
    }

    /// Reads the next reply.
    pub async fn reply(&mut self) -> Result<Message, RequestError> {
        match self.conn.expect_message().await? {
            Message::Error {
                code: ErrorCode::ResultRefused,
                message,
                reason,
            } => Err(RequestError::ResultRefused {
                // A master that names no reason refuses a lease it does not see held.
                reason: reason.unwrap_or(RefusalReason::NotHolder),
                message,
            }),
            Message::Error { code, message, .. } => Err(RequestError::Refused { code, message }),
            other => Ok(other),
        }
    }

    /// The underlying connection, for data frames (uploads, task data).
    pub fn connection(&mut self) -> &mut Connection<Stream> {
        &mut self.conn
    }
}
