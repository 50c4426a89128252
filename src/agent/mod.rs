//! The per-worker agent: takes heartbeats over a Unix socket, samples system metrics, reports to
//! the collector. Crash → DEAD at once; hang → DEAD after the heartbeat timeout; no worker within
//! the heartbeat timeout of the agent's start → MISSING; every status change is reported
//! immediately, the rest every report interval; between reports a small heartbeat each second
//! tells the collector the host is still there.

mod reporter;
pub mod sampler;
mod server;
mod task_usage;
pub mod tracker;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};

use thiserror::Error;
use tokio::net::UnixListener;

use crate::protocol::{Greeting, Role};

pub use reporter::ReportBuffer;
pub use server::{AgentShared, LeaseAdvice};

use crate::time::parse_duration;

/// Agent settings: flags, with environment variables as fallbacks.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentConfig {
    /// The worker this agent watches.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: String,
    /// Unix socket the worker connects to [default: $XDG_RUNTIME_DIR/gridwatch/ID.sock, or
    /// /tmp/gridwatch-UID/ID.sock]. Its directory must be owned by this user and writable by no
    /// one else (created with mode 0700 when missing); only this user (or root) may connect.
    #[arg(long, env = "IPC_SOCKET_PATH")]
    pub socket: Option<PathBuf>,
    /// Collector host.
    #[arg(long, env = "COLLECTOR_HOST", default_value = "127.0.0.1")]
    pub collector_host: String,
    /// Collector port.
    #[arg(long, env = "COLLECTOR_PORT", default_value_t = 6000)]
    pub collector_port: u16,
    /// How often to report when nothing changes (seconds, or with a unit: 500ms, 10s).
    #[arg(long, env = "AGENT_REPORT_INTERVAL", default_value = "10", value_parser = parse_duration)]
    pub report_interval: Duration,
    /// How often to send the collector a small heartbeat between full reports, so it can tell
    /// a lost host within a few seconds (0 sends none).
    #[arg(long, env = "AGENT_BEAT_INTERVAL", default_value = "1", value_parser = parse_duration)]
    pub beat_interval: Duration,
    /// Heartbeat silence after which a live worker process counts as hung, hence DEAD; also how
    /// long the agent waits for its worker's first hello before reporting it MISSING (the
    /// collector then raises `worker_missing` until the worker connects).
    #[arg(long, env = "HEARTBEAT_TIMEOUT", default_value = "15", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
    /// The cluster token sent in the hello to the collector, when the cluster has one (never
    /// asked of the worker: the socket's directory and peer credentials vouch for it).
    #[command(flatten)]
    pub auth: crate::protocol::TokenArgs,
    /// TLS towards the collector, when it serves TLS.
    #[command(flatten)]
    pub tls: crate::protocol::TlsArgs,
    /// Reports kept while the collector is unreachable; the oldest are dropped beyond this.
    #[arg(long, default_value_t = 1000)]
    pub buffer_reports: usize,
}

impl AgentConfig {
    /// The socket path: `--socket`, or the default for the worker id.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::protocol::default_agent_socket(&self.worker_id))
    }

    /// The collector's address as `host:port`.
    pub fn collector_addr(&self) -> String {
        format!("{}:{}", self.collector_host, self.collector_port)
    }
}

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum AgentError {
    /// Another agent already serves this socket.
    #[error("another agent is already listening on {0}; stop it or pass a different --socket")]
    AlreadyRunning(PathBuf),
    /// The socket's directory could be entered or changed by another user.
    #[error("refusing the socket directory {path}: {reason}; use a directory only you own and may write (mode 0700), or pass another --socket")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker id breaks the id rule.
    #[error(transparent)]
    WorkerId(#[from] crate::protocol::BadWorkerId),
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] crate::protocol::TokenError),
    /// The TLS CA file could not be used.
    #[error("{0}; check --tls-ca")]
    Tls(#[from] crate::protocol::TlsError),
    /// The socket could not be created.
    #[error("cannot listen on {path}: {source}; check the directory exists and is writable, or pass --socket")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl AgentError {
    /// Process exit code: every error is the user's to fix (another agent, a bad path or token).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// Binds the worker socket, replacing a stale socket file left by a crashed agent.
async fn bind(path: &Path) -> Result<UnixListener, AgentError> {
    let bind_error = |source| AgentError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        private_directory(dir)?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(AgentError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Creates `dir` (mode 0700) if missing, then checks nobody else can change it: a directory
/// another user owns or may write could hold a socket of theirs in our socket's place. (The
/// socket itself is mode 0600, and peers are checked by their credentials.)
fn private_directory(dir: &Path) -> Result<(), AgentError> {
    let unsafe_dir = |reason: String| AgentError::UnsafeDirectory {
        path: dir.to_path_buf(),
        reason,
    };
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(err) => return Err(unsafe_dir(format!("cannot create it: {err}"))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unsafe_dir(e.to_string()))?;
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "it is not a directory (a symbolic link?)".into(),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "its mode is {mode:o}: other users may create or replace files in it (chmod 700 it)"
        )));
    }
    Ok(())
}

/// Runs an agent from the command line until Ctrl-C or SIGTERM.
pub async fn serve(config: AgentConfig) -> Result<(), AgentError> {
    run(config, crate::shutdown::signal()).await
}

/// Runs the agent until `shutdown` completes, then removes its socket.
pub async fn run(config: AgentConfig, shutdown: impl Future) -> Result<(), AgentError> {
    crate::protocol::check_worker_id(&config.worker_id)?;
    let token = config.auth.resolve()?;
    let tls = config.tls.client()?;
    let path = config.socket_path();
    let listener = bind(&path).await?;
    tracing::info!(worker = %config.worker_id, socket = %path.display(),
        collector = %config.collector_addr(), "agent listening");
    let shared = Arc::new(AgentShared::new(config.heartbeat_timeout));
    let buffer = Arc::new(ReportBuffer::new(config.buffer_reports));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let settings = reporter::ReportSettings {
        worker_id: config.worker_id.clone(),
        interval: config.report_interval,
        beat_interval: config.beat_interval,
        disk_path: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    };
    let tasks = [
        tokio::spawn(server::serve(listener, Arc::clone(&shared), stopped())),
        tokio::spawn(server::check_hangs(Arc::clone(&shared), stopped())),
        tokio::spawn(reporter::produce(
            settings,
            Arc::clone(&shared),
            Arc::clone(&buffer),
            stopped(),
        )),
        tokio::spawn(reporter::deliver(
            reporter::CollectorLink {
                address: config.collector_addr(),
                tls,
                greeting: Greeting::new(Role::Agent)
                    .with_id(config.worker_id.clone())
                    .with_token(token),
            },
            config.worker_id.clone(),
            config.beat_interval,
            Arc::clone(&shared),
            buffer,
            stopped(),
        )),
    ];
    shutdown.await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&path);
    tracing::info!("agent stopped");
    Ok(())
}
