//! `gridwatch health`: does a role's address answer the hello? Exit 0 if it welcomes us, 1 if
//! not; for container healthchecks, where the image has no curl.

use std::path::PathBuf;
use std::time::Duration;

use super::connect::ClientError;
use crate::protocol::handshake::{hello, HelloError};
use crate::protocol::{Connection, Dial, Greeting, Message, Requester, Role, TlsArgs, TokenArgs};

/// How long the whole check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `gridwatch health` flags: exactly one address to check.
#[derive(Clone, Debug, clap::Args)]
#[group(required = true, multiple = false, id = "target")]
pub struct HealthArgs {
    /// A master's protocol address (HOST:PORT).
    #[arg(long, group = "target")]
    pub master: Option<String>,
    /// A collector's address (HOST:PORT).
    #[arg(long, group = "target")]
    pub collector: Option<String>,
    /// An agent's Unix socket (only the agent's own user, or root, is let in).
    #[arg(long, group = "target")]
    pub agent_socket: Option<PathBuf>,
    /// The cluster token, for a master or collector that has one.
    #[command(flatten)]
    pub auth: TokenArgs,
    /// TLS towards the master or collector, when it serves TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print JSON instead of text (`{"status": "ok", "target": ...}`; on failure the error).
    #[arg(long)]
    pub json: bool,
}

/// Greets the chosen address; `Ok` once it answers `welcome`.
pub async fn health(args: HealthArgs) -> Result<(), ClientError> {
    let token = args.auth.resolve()?;
    let greeting = Greeting::new(Role::Client).with_token(token);
    let checked = tokio::time::timeout(CHECK_TIMEOUT, check(&args, &greeting)).await;
    let (what, outcome) = checked.unwrap_or_else(|_| {
        let reason = format!("no welcome within {CHECK_TIMEOUT:?}");
        (describe(&args), Err(reason))
    });
    match outcome {
        Ok(()) if args.json => {
            println!("{}", serde_json::json!({ "status": "ok", "target": what }));
            Ok(())
        }
        Ok(()) => {
            println!("ok: {what} answers");
            Ok(())
        }
        Err(reason) => Err(ClientError::JobFailed(format!(
            "unhealthy: {what}: {reason}"
        ))),
    }
}

fn describe(args: &HealthArgs) -> String {
    match (&args.master, &args.collector, &args.agent_socket) {
        (Some(master), _, _) => format!("master {master}"),
        (_, Some(collector), _) => format!("collector {collector}"),
        (_, _, Some(socket)) => format!("agent {}", socket.display()),
        _ => "nothing".into(),
    }
}

async fn check(args: &HealthArgs, greeting: &Greeting) -> (String, Result<(), String>) {
    let what = describe(args);
    let outcome = match (&args.master, &args.collector, &args.agent_socket) {
        (Some(address), _, _) | (_, Some(address), _) => {
            let tls = match args.tls.client() {
                Ok(tls) => tls,
                Err(err) => return (what, Err(err.to_string())),
            };
            let dial = Dial {
                read_timeout: Some(CHECK_TIMEOUT),
                tls,
                ..Dial::default()
            };
            Requester::connect(address, greeting, &dial)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        }
        (_, _, Some(socket)) => match tokio::net::UnixStream::connect(socket).await {
            Ok(stream) => {
                let mut conn = Connection::new(stream);
                match hello(&mut conn, greeting).await {
                    Ok(_) => Ok(()),
                    // The agent refuses a stranger before reading its hello: read why.
                    Err(HelloError::Transport(err)) => match conn.read_message().await {
                        Ok(Some(Message::Error { message, .. })) => Err(message),
                        _ => Err(err.to_string()),
                    },
                    Err(err) => Err(err.to_string()),
                }
            }
            Err(err) => Err(err.to_string()),
        },
        _ => Err("no address given".into()),
    };
    (what, outcome)
}
