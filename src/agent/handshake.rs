//! The opening exchange every watchman link uses: `hello` from the connecting side, `welcome` (or
//! an `error` naming the problem) from the server.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::protocol::{Connection, ErrorCode, Message, ProtocolError, Role, PROTOCOL_VERSION};

/// Sends `hello` as `role` (with `id`) and waits for `welcome`.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    role: Role,
    id: Option<String>,
) -> Result<(), ProtocolError> {
    let token = std::env::var("GRIDWATCH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    conn.write_message(&Message::Hello {
        role,
        version: PROTOCOL_VERSION,
        token,
        id,
    })
    .await?;
    match conn.expect_message().await? {
        Message::Welcome { .. } => Ok(()),
        Message::Error { code, message } => Err(ProtocolError::Decode { code, message }),
        _ => Err(ProtocolError::Decode {
            code: ErrorCode::UnexpectedMessage,
            message: "expected welcome after hello".into(),
        }),
    }
}

/// Answers a `hello` with `welcome`.
pub async fn welcome<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
) -> Result<(), ProtocolError> {
    conn.write_message(&Message::Welcome {
        version: PROTOCOL_VERSION,
        server: format!("gridwatch {}", env!("CARGO_PKG_VERSION")),
    })
    .await
}
