//! `gridwatch health`: does a role's address answer the hello? Exit 0 if it welcomes us, 1 if
//! not; for container healthchecks, where the image has no curl. A worker listens nowhere, so
//! `--worker ID` asks the master instead: healthy while its agent reports it alive.

use std::path::PathBuf;
use std::time::Duration;

use super::connect::ClientError;
use gridwatch::protocol::handshake::{hello, HelloError};
use gridwatch::protocol::{
    Connection, Dial, Greeting, LivenessState, Message, Requester, Role, TlsArgs, TokenArgs,
};

/// How long the whole check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `gridwatch health` flags: exactly one thing to check.
#[derive(Clone, Debug, clap::Args)]
#[group(multiple = false, id = "target")]
pub struct HealthArgs {
    /// A master's protocol address (HOST:PORT); with --worker, the master to ask (default:
    /// MASTER_HOST:MASTER_PORT, else 127.0.0.1:5000).
    #[arg(long, group = "target")]
    pub master: Option<String>,
    /// A worker's id: healthy while the master lists it as active or unstable (its agent
    /// reports it alive), unhealthy when it is inactive or unknown.
    #[arg(long, value_name = "ID", conflicts_with_all = ["collector", "agent_socket"])]
    pub worker: Option<String>,
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
    if args.master.is_none()
        && args.collector.is_none()
        && args.agent_socket.is_none()
        && args.worker.is_none()
    {
        return Err(ClientError::Usage(
            "name what to check: --master HOST:PORT, --collector HOST:PORT, --agent-socket PATH \
             or --worker ID"
                .into(),
        ));
    }
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
    if let Some(worker) = &args.worker {
        return format!("worker {worker} (asked {})", master_address(args));
    }
    match (&args.master, &args.collector, &args.agent_socket) {
        (Some(master), _, _) => format!("master {master}"),
        (_, Some(collector), _) => format!("collector {collector}"),
        (_, _, Some(socket)) => format!("agent {}", socket.display()),
        _ => "nothing".into(),
    }
}

fn master_address(args: &HealthArgs) -> String {
    args.master
        .clone()
        .unwrap_or_else(gridwatch::protocol::default_master_address)
}

/// Asks the master how the worker's agent last saw it.
async fn check_worker(
    args: &HealthArgs,
    worker: &str,
    greeting: &Greeting,
    dial: &Dial,
) -> Result<(), String> {
    let mut master = Requester::connect(&master_address(args), greeting, dial)
        .await
        .map_err(|err| err.to_string())?;
    let workers = match master.request(&Message::ListWorkers).await {
        Ok(Message::Workers { workers }) => workers,
        Ok(other) => return Err(format!("unexpected reply from the master: {other:?}")),
        Err(err) => return Err(err.to_string()),
    };
    match workers.iter().find(|view| view.worker_id == worker) {
        Some(view) if view.state != LivenessState::Inactive => Ok(()),
        Some(view) => Err(format!(
            "inactive (status {}): its agent has not seen it alive lately",
            view.status.as_str()
        )),
        None => Err("the master knows no such worker (no agent reports it)".into()),
    }
}

async fn check(args: &HealthArgs, greeting: &Greeting) -> (String, Result<(), String>) {
    let what = describe(args);
    if let Some(worker) = &args.worker {
        let dial = match args.tls.client() {
            Ok(tls) => Dial {
                read_timeout: Some(CHECK_TIMEOUT),
                tls,
                ..Dial::default()
            },
            Err(err) => return (what, Err(err.to_string())),
        };
        return (what, check_worker(args, worker, greeting, &dial).await);
    }
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
