//! A client's connection to the master: connect, `hello`, then request/reply. Also the error
//! type of every grid client command, with its exit code (2 for errors the user can fix).

use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpStream;

use crate::protocol::{Connection, ErrorCode, Message, ProtocolError, Role, PROTOCOL_VERSION};

/// How often a client retries reaching a master that is not listening yet.
const CONNECT_ATTEMPTS: u32 = 5;

/// Where the master is and how to introduce ourselves; flattened into each client command.
#[derive(Clone, Debug, clap::Args)]
pub struct MasterAddr {
    /// The master's protocol address (HOST:PORT). MASTER_HOST / MASTER_PORT are honoured too.
    #[arg(long, env = "GRIDWATCH_MASTER")]
    pub master: Option<String>,
    /// Shared secret, when the cluster has one.
    #[arg(long, env = "GRIDWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl MasterAddr {
    /// `--master`, else `MASTER_HOST:MASTER_PORT` (seed 000 names), else 127.0.0.1:5000.
    pub fn address(&self) -> String {
        self.master
            .clone()
            .unwrap_or_else(crate::protocol::default_master_address)
    }
}

/// Why a client command failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Bad arguments or input the user can fix.
    #[error("{0}")]
    Usage(String),
    /// The master could not be reached.
    #[error("cannot reach the master at {addr}: {reason} (is `gridwatch master` or `gridwatch up` running? see --master)")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// The socket error.
        reason: String,
    },
    /// The master refused the request.
    #[error("{message}")]
    Refused {
        /// The master's error code.
        code: ErrorCode,
        /// The master's explanation.
        message: String,
    },
    /// The connection broke or the master answered out of protocol.
    #[error("connection to the master failed: {0}")]
    Protocol(#[from] ProtocolError),
    /// The job ended without completing.
    #[error("{0}")]
    JobFailed(String),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl ClientError {
    /// Process exit code: 2 for errors the user can fix, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Refused {
                code:
                    ErrorCode::BadPattern
                    | ErrorCode::BadInput
                    | ErrorCode::BadMessage
                    | ErrorCode::UploadTooLarge
                    | ErrorCode::UploadIncomplete
                    | ErrorCode::RateLimited
                    | ErrorCode::NoSuchJob
                    | ErrorCode::JobNotReady
                    | ErrorCode::Unauthorized
                    | ErrorCode::VersionMismatch,
                ..
            } => 2,
            _ => 1,
        }
    }
}

/// An open, greeted connection to the master.
pub struct MasterClient {
    conn: Connection<TcpStream>,
}

impl MasterClient {
    /// Connects (retrying briefly while the master starts) and says hello.
    pub async fn connect(addr: &MasterAddr) -> Result<Self, ClientError> {
        let address = addr.address();
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        let stream = loop {
            match TcpStream::connect(&address).await {
                Ok(stream) => break stream,
                Err(err) if attempt >= CONNECT_ATTEMPTS => {
                    return Err(ClientError::Unreachable {
                        addr: address,
                        reason: err.to_string(),
                    })
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let mut client = Self {
            conn: Connection::new(stream),
        };
        let hello = Message::Hello {
            role: Role::Client,
            version: PROTOCOL_VERSION,
            token: addr.token.clone(),
            id: None,
        };
        match client.request(&hello).await? {
            Message::Welcome { .. } => Ok(client),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a request and returns the reply; an `error` reply becomes `ClientError::Refused`.
    pub async fn request(&mut self, message: &Message) -> Result<Message, ClientError> {
        self.conn.write_message(message).await?;
        self.reply().await
    }

    /// Reads the next reply; an `error` reply becomes `ClientError::Refused`.
    pub async fn reply(&mut self) -> Result<Message, ClientError> {
        match self.conn.expect_message().await? {
            Message::Error { code, message } => Err(ClientError::Refused { code, message }),
            other => Ok(other),
        }
    }

    /// The underlying connection (for streaming uploads).
    pub fn connection(&mut self) -> &mut Connection<TcpStream> {
        &mut self.conn
    }
}

/// An out-of-protocol reply.
pub fn unexpected(reply: &Message) -> ClientError {
    ClientError::Protocol(ProtocolError::Decode {
        code: ErrorCode::UnexpectedMessage,
        message: format!("unexpected reply from the master: {reply:?}"),
    })
}
