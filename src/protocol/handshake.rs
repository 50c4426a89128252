//! The opening exchange of every connection: the connecting side sends `hello` (role, version,
//! id, and the cluster token when there is one), the server answers `welcome`, or an `error`
//! naming the problem and closes. Written once for every link: client, worker and collector to
//! the master, agent to the collector, worker to its agent. The token is passed in by the caller;
//! nothing here reads the environment.

use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Connection, ErrorCode, Message, ProtocolError, Role, ServerRole, PROTOCOL_VERSION};

/// Who the connecting side says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// The sender's role.
    pub role: Role,
    /// Worker or agent id, when the role has one.
    pub id: Option<String>,
    /// The cluster token, when the cluster has one.
    pub token: Option<String>,
    /// A worker process's nonce, shared by all its connections.
    pub instance: Option<String>,
}

impl Greeting {
    /// A greeting as `role`, with no id and no token.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            id: None,
            token: None,
            instance: None,
        }
    }

    /// The same greeting carrying a fresh random instance nonce (a worker, once per process).
    pub fn with_new_instance(mut self) -> Self {
        self.instance = Some(uuid::Uuid::new_v4().simple().to_string());
        self
    }

    /// The same greeting carrying `id`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The same greeting carrying `token` (an empty token counts as none).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }
}

/// Why the connecting side's `hello` was not welcomed.
#[derive(Debug, Error)]
pub enum HelloError {
    /// The connection failed while greeting.
    #[error(transparent)]
    Transport(#[from] ProtocolError),
    /// The server answered with an `error` frame.
    #[error("{message}")]
    Refused {
        /// The server's reason.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with something other than `welcome`.
    #[error("expected welcome after hello, got {0}")]
    Unexpected(String),
}

impl From<HelloError> for ProtocolError {
    /// Folds a refused or unexpected answer into the protocol error the link already reports.
    fn from(err: HelloError) -> Self {
        match err {
            HelloError::Transport(err) => err,
            HelloError::Refused { code, message } => ProtocolError::Decode { code, message },
            HelloError::Unexpected(got) => ProtocolError::Decode {
                code: ErrorCode::UnexpectedMessage,
                message: format!("expected welcome after hello, got {got}"),
            },
        }
    }
}

/// Sends `hello` and waits for `welcome`; returns the role the server says it has.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    greeting: &Greeting,
) -> Result<Option<ServerRole>, HelloError> {
    conn.write_message(&Message::Hello {
        role: greeting.role,
        version: PROTOCOL_VERSION,
        token: greeting.token.clone(),
        id: greeting.id.clone(),
        instance: greeting.instance.clone(),
    })
    .await?;
    match conn.expect_message().await? {
        Message::Welcome { role, .. } => Ok(role),
        Message::Error { code, message, .. } => Err(HelloError::Refused { code, message }),
        other => Err(HelloError::Unexpected(format!("{other:?}"))),
    }
}

/// A `hello` the server accepted: who is on the other end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's role.
    pub role: Role,
    /// Its worker or agent id, if it gave one.
    pub id: Option<String>,
    /// Its process nonce, if it gave one.
    pub instance: Option<String>,
}

/// Why a server turned a connection away before welcoming it.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// The peer closed before sending anything: there is no one to answer.
    #[error("closed before hello")]
    Closed,
    /// The first frame could not be read (bad frame, too large, timeout).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The hello is refused; the peer is told why.
    #[error("{message}")]
    Refused {
        /// Machine-readable reason.
        code: ErrorCode,
        /// What was wrong and what to do.
        message: String,
    },
}

impl AcceptError {
    /// A refusal with `code` and `message`.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        AcceptError::Refused {
            code,
            message: message.into(),
        }
    }

    /// The `error` frame to send the peer, if anyone is listening.
    pub fn reply(&self) -> Option<(ErrorCode, String)> {
        match self {
            AcceptError::Closed => None,
            AcceptError::Protocol(err) => Some((err.code(), err.to_string())),
            AcceptError::Refused { code, message } => Some((*code, message.clone())),
        }
    }
}

/// Reads the first frame and checks it is a `hello` of this protocol version carrying `token`
/// (when the server has one; compared in constant time). The caller may check the role, then
/// answers with [`welcome`].
pub async fn read_hello<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    token: Option<&str>,
) -> Result<Peer, AcceptError> {
    let Some(first) = conn.read_message().await? else {
        return Err(AcceptError::Closed);
    };
    let Message::Hello {
        role,
        version,
        token: offered,
        id,
        instance,
    } = first
    else {
        return Err(AcceptError::refused(
            ErrorCode::UnexpectedMessage,
            "the first frame must be a hello (role, version, token)",
        ));
    };
    if version != PROTOCOL_VERSION {
        return Err(AcceptError::refused(
            ErrorCode::VersionMismatch,
            format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}: upgrade the older side"),
        ));
    }
    if let Some(expected) = token {
        let matches = offered
            .as_deref()
            .is_some_and(|offered| token_matches(offered, expected));
        if !matches {
            return Err(AcceptError::refused(
                ErrorCode::Unauthorized,
                "missing or wrong cluster token (set GRIDWATCH_TOKEN to the cluster's token)",
            ));
        }
    }
    if let Some(id) = &id {
        super::check_worker_id(id)
            .map_err(|err| AcceptError::refused(ErrorCode::BadMessage, err.to_string()))?;
    }
    Ok(Peer { role, id, instance })
}

/// Answers an accepted `hello` with `welcome`, saying which server `role` this is.
pub async fn welcome<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    role: ServerRole,
) -> Result<(), ProtocolError> {
    conn.write_message(&Message::Welcome {
        version: PROTOCOL_VERSION,
        server: format!("gridwatch {}", env!("CARGO_PKG_VERSION")),
        role: Some(role),
    })
    .await
}

/// Whether an offered cluster token is the expected one, byte for byte (no trimming: a token is
/// what was configured, whichever door it comes through). Compared without stopping at the first
/// difference, so the time taken does not tell an attacker how much of a guessed token was right.
pub fn token_matches(offered: &str, expected: &str) -> bool {
    bool::from(offered.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (
        Connection<tokio::io::DuplexStream>,
        Connection<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (Connection::new(a), Connection::new(b))
    }

    async fn greet(
        greeting: Greeting,
        server_token: Option<&'static str>,
    ) -> (
        Result<Option<ServerRole>, HelloError>,
        Result<Peer, AcceptError>,
    ) {
        let (mut client, mut server) = pair();
        let serve = async move {
            let accepted = read_hello(&mut server, server_token).await;
            match &accepted {
                Ok(_) => welcome(&mut server, ServerRole::Master)
                    .await
                    .expect("welcome"),
                Err(err) => {
                    if let Some((code, message)) = err.reply() {
                        server.send_error(code, message).await;
                    }
                }
            }
            accepted
        };
        tokio::join!(hello(&mut client, &greeting), serve)
    }

    #[tokio::test]
    async fn a_hello_with_the_right_token_is_welcomed_and_names_its_peer() {
        let greeting = Greeting::new(Role::Worker)
            .with_id("w1")
            .with_token(Some("s3cret".into()));
        let (client, server) = greet(greeting, Some("s3cret")).await;
        assert!(client.is_ok(), "{client:?}");
        let peer = server.expect("accepted");
        assert_eq!(peer.role, Role::Worker);
        assert_eq!(peer.id.as_deref(), Some("w1"));
    }

    #[tokio::test]
    async fn a_wrong_or_missing_token_is_refused_as_unauthorized() {
        for offered in [Some("guess".to_string()), None] {
            let greeting = Greeting::new(Role::Client).with_token(offered);
            let (client, server) = greet(greeting, Some("s3cret")).await;
            assert!(matches!(
                client,
                Err(HelloError::Refused {
                    code: ErrorCode::Unauthorized,
                    ..
                })
            ));
            assert!(matches!(server, Err(AcceptError::Refused { .. })));
        }
    }

    #[tokio::test]
    async fn a_server_without_a_token_welcomes_anyone() {
        let greeting = Greeting::new(Role::Agent).with_token(Some("any".into()));
        let (client, server) = greet(greeting, None).await;
        assert!(client.is_ok() && server.is_ok());
    }

    #[tokio::test]
    async fn another_first_message_or_version_is_refused() {
        let (mut client, mut server) = pair();
        client
            .write_message(&Message::ListJobs)
            .await
            .expect("write");
        let err = read_hello(&mut server, None)
            .await
            .expect_err("not a hello");
        assert_eq!(
            err.reply().map(|(code, _)| code),
            Some(ErrorCode::UnexpectedMessage)
        );
        client
            .write_message(&Message::Hello {
                role: Role::Client,
                version: PROTOCOL_VERSION + 1,
                token: None,
                id: None,
                instance: None,
            })
            .await
            .expect("write");
        let err = read_hello(&mut server, None)
            .await
            .expect_err("newer version");
        assert_eq!(
            err.reply().map(|(code, _)| code),
            Some(ErrorCode::VersionMismatch)
        );
        drop(client);
        let err = read_hello(&mut server, None).await.expect_err("closed");
        assert!(err.reply().is_none(), "nobody to answer after a close");
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("abc ", "abc"));
        assert!(token_matches("", ""));
    }
}
