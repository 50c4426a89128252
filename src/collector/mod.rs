//! The collector: keeps every worker's metrics, evaluates alert rules with durations, and tells
//! the master when a worker is dead. A restarted collector takes back the workers the store
//! knew, so a host lost while no collector watched is still found.

pub mod alert;
pub mod clock;
pub mod delivery;
mod downstream;
pub mod flapping;
mod gate;
pub mod liveness;
mod rebuild;
pub mod rules;
mod server;
mod watchtower;

pub use alert::AlertLog;
pub use clock::Moment;
pub use downstream::Downstream;
pub use liveness::Liveness;
pub use rules::{RuleEngine, Thresholds};
pub use server::SharedWatchtower;
pub use watchtower::{Outgoing, Watchtower};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;

use crate::backend::config::BackendConfigError;
use crate::backend::BackendError;
use crate::protocol::{
    check_listen, AdmissionLimits, ConnectionLimits, Greeting, Role, TlsArgs, TlsError,
    TlsServerArgs, TokenArgs, TokenError, Unprotected, DEFAULT_MAX_FRAME,
};

/// Default of --flap-changes: an honest crash and restart is two changes; six in a minute is
/// three deaths, more than any healthy worker has.
pub const DEFAULT_FLAP_CHANGES: u32 = 6;
/// Default of --flap-window.
pub const DEFAULT_FLAP_WINDOW: &str = "60s";
/// Default of --max-workers-per-address: a host with many workers fits, an agent inventing ids
/// does not.
pub const DEFAULT_MAX_WORKERS_PER_ADDRESS: usize = 64;

/// What anyone reaching an unprotected collector could do, for the refusal to start.
const COLLECTOR_RISK: &str = "report workers dead and have their tasks taken from them";

use crate::time::parse_duration;

/// Collector settings: flags, their environment variables, and an optional TOML rules file.
#[derive(Clone, Debug, clap::Args)]
pub struct CollectorConfig {
    /// Address to listen on [default: 127.0.0.1:$COLLECTOR_PORT, or 127.0.0.1:6000].
    #[arg(long)]
    pub listen: Option<String>,
    /// The master's `host:port`, told of dead workers (and storing alerts for the embedded
    /// backend) [default: $MASTER_HOST:$MASTER_PORT, or 127.0.0.1:5000].
    #[arg(long)]
    pub master: Option<String>,
    /// The cluster token: every agent and client must present it, and the collector presents it
    /// to the master. Required when --listen is not a loopback address, unless --insecure.
    #[command(flatten)]
    pub auth: TokenArgs,
    /// Serve agents and clients over TLS (certificate and key files), for networks you do not
    /// trust: reports and the token are then encrypted and agents check the collector's identity.
    #[command(flatten)]
    pub tls_server: TlsServerArgs,
    /// TLS towards the master, when it serves TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Listen on a non-loopback address without a token (a warning is logged on every start).
    /// Only for a network where every host is trusted.
    #[arg(long, env = "GRIDWATCH_INSECURE")]
    pub insecure: bool,
    /// Where alerts and worker metrics are stored (with `embedded`, through the master).
    #[command(flatten)]
    pub backend: crate::backend::config::BackendArgs,
    /// Where alert events are delivered besides the log and the store: an Alertmanager and
    /// webhooks.
    #[command(flatten)]
    pub delivery: delivery::DeliveryArgs,
    /// JSON-lines alert log.
    #[arg(long, default_value = "data/alerts.log")]
    pub alert_log: PathBuf,
    /// Size in bytes at which the alert log is rotated (alerts.log → alerts.log.1 → …).
    #[arg(long, default_value_t = crate::telemetry::rotating_log::DEFAULT_MAX_BYTES)]
    pub alert_log_max_bytes: u64,
    /// Rotated alert logs kept besides the live one; the oldest is deleted.
    #[arg(long, default_value_t = crate::telemetry::rotating_log::DEFAULT_KEEP)]
    pub alert_log_keep: u32,
    /// Alert changes (firings and resolutions) one worker may have within --flap-window; one
    /// more and it is flapping: one `worker_flapping` alert, then its alerts (and `worker_down`
    /// to the master) are held until it has been stable for a whole window, when its final
    /// state is sent once.
    #[arg(long, default_value_t = DEFAULT_FLAP_CHANGES)]
    pub flap_changes: u32,
    /// The window of --flap-changes, and how long a flapping worker must stay stable.
    #[arg(long, default_value = DEFAULT_FLAP_WINDOW, value_parser = parse_duration)]
    pub flap_window: Duration,
    /// Distinct worker ids the agents of one address may introduce while the collector runs;
    /// more are refused. Each id costs the collector state it keeps; raise it for a host that
    /// runs (or has restarted with new ids) more workers.
    #[arg(long, default_value_t = DEFAULT_MAX_WORKERS_PER_ADDRESS)]
    pub max_workers_per_address: usize,
    /// TOML file with alert thresholds (`cpu_percent`, `cpu_for`, `memory_percent`,
    /// `memory_for`, `no_report_after`, `heartbeat_misses`; durations in seconds). Flags and
    /// environment win.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Host CPU percent above which a worker is warned about (after --cpu-for).
    #[arg(long, env = "ALERT_THRESHOLD_CPU")]
    pub cpu_threshold: Option<f64>,
    /// How long CPU must stay above the threshold (seconds, or 500ms, 5m).
    #[arg(long, value_parser = parse_duration)]
    pub cpu_for: Option<Duration>,
    /// Host memory percent above which a worker is warned about.
    #[arg(long, env = "ALERT_THRESHOLD_MEMORY")]
    pub memory_threshold: Option<f64>,
    /// Silence after which a worker's agent counts as lost (critical), for agents that send
    /// no heartbeats.
    #[arg(long, value_parser = parse_duration)]
    pub no_report_after: Option<Duration>,
    /// Heartbeats an agent may miss in a row before its host counts as lost: a critical
    /// `worker_unreachable` alert, and its tasks are re-queued. Detection takes this many agent
    /// heartbeat intervals (1 s by default) plus up to a quarter second [default: 3].
    #[arg(long, env = "HEARTBEAT_MISSES")]
    pub heartbeat_misses: Option<u32>,
    /// Once listening, write the bound HOST:PORT to this file (for --listen 127.0.0.1:0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Most connections served at once (each agent holds one). Extra connections wait in the
    /// queue (see --connection-queue).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Most connections served at once from one address, so one address cannot take every
    /// slot. A host's agents (one per worker) and its `gridwatch workers` clients share its
    /// share: raise it for a host running more workers.
    #[arg(long, default_value_t = 128)]
    pub max_connections_per_address: usize,
    /// Connections that may wait for a free slot, first come first served, for up to
    /// --queue-timeout. A connection that finds the queue full gets a `busy` error at once; one
    /// still waiting at the timeout gets it then; either is then closed.
    #[arg(long, default_value_t = 1024)]
    pub connection_queue: usize,
    /// Most connections that have not yet greeted (TLS handshake and hello), at once; they do
    /// not count against --max-connections. When they are this many, a new connection closes
    /// the oldest of them from the address holding most, so strangers that never greet cannot
    /// keep an agent from greeting.
    #[arg(long, default_value_t = 128)]
    pub max_unauthenticated_connections: usize,
    /// How long a queued connection waits for a slot before it is refused as `busy`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// How long a connection that has a slot gets for its TLS handshake and hello before it is
    /// closed. Until its hello is welcomed, a connection's frames are limited to 64 KiB.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hello_timeout: Duration,
    /// How long one frame may take from its first byte to its last, however steadily the bytes
    /// trickle in.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub frame_timeout: Duration,
}

/// Why the collector could not start.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The listen address is taken or invalid.
    #[error("cannot listen on {address}: {source}; pick another --listen address")]
    Listen {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The rules file could not be read or parsed.
    #[error("rules file {path}: {message}; see `gridwatch collector --help` for the keys")]
    Rules {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The alert log could not be opened.
    #[error("cannot open the alert log {path}: {source}; pass a writable --alert-log")]
    AlertLog {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--backend` (or REDIS_HOST / REDIS_PORT) names no usable backend.
    #[error(transparent)]
    BackendConfig(#[from] BackendConfigError),
    /// The backend could not be opened.
    #[error("opening the backend: {0}")]
    Backend(#[from] BackendError),
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A non-loopback address without a token (and without `--insecure`).
    #[error(transparent)]
    Unprotected(#[from] Unprotected),
    /// The TLS files could not be used.
    #[error("{0}; check --tls-cert, --tls-key and --tls-ca")]
    Tls(#[from] TlsError),
    /// An --alertmanager or --webhook URL cannot be used.
    #[error("alert receiver {0}")]
    Delivery(#[from] delivery::http::EndpointError),
}

impl CollectorError {
    /// Process exit code: 2 for errors the user can fix (every one but a failing backend), 1
    /// otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CollectorError::Backend(_) => 1,
            _ => 2,
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

impl CollectorConfig {
    /// The address to listen on.
    pub fn listen_addr(&self) -> String {
        self.listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", env_or("COLLECTOR_PORT", "6000")))
    }

    /// The master's address.
    pub fn master_addr(&self) -> String {
        self.master
            .clone()
            .unwrap_or_else(crate::protocol::default_master_address)
    }

    /// The connection limits of the listener: slots, queue and per-connection deadlines.
    pub fn limits(&self) -> server::Limits {
        // A zero deadline would close every connection before it could greet.
        let at_least = |d: Duration| d.max(Duration::from_millis(100));
        server::Limits {
            admission: AdmissionLimits {
                max_connections: self.max_connections,
                max_unauthenticated: self.max_unauthenticated_connections,
                per_address: self.max_connections_per_address,
                queue: self.connection_queue,
                queue_timeout: self.queue_timeout,
                flag_prefix: "",
            },
            connection: ConnectionLimits {
                hello_timeout: at_least(self.hello_timeout),
                idle_timeout: server::IDLE_TIMEOUT,
                frame_timeout: at_least(self.frame_timeout),
                max_frame: DEFAULT_MAX_FRAME,
            },
        }
    }

    /// Thresholds: defaults, then the rules file, then flags and environment.
    pub fn thresholds(&self) -> Result<Thresholds, CollectorError> {
        let mut thresholds = match &self.rules {
            Some(path) => read_rules(path)?,
            None => Thresholds::default(),
        };
        if let Some(cpu) = self.cpu_threshold {
            thresholds.cpu_percent = cpu;
        }
        if let Some(cpu_for) = self.cpu_for {
            thresholds.cpu_for = cpu_for;
        }
        if let Some(memory) = self.memory_threshold {
            thresholds.memory_percent = memory;
        }
        if let Some(after) = self.no_report_after {
            thresholds.no_report_after = after;
        }
        if let Some(misses) = self.heartbeat_misses {
            thresholds.heartbeat_misses = misses.max(1);
        }
        Ok(thresholds)
    }
}

fn read_rules(path: &Path) -> Result<Thresholds, CollectorError> {
    let error = |message: String| CollectorError::Rules {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| error(e.to_string()))
}

/// Writes the address atomically (temp file, then rename), so a reader never sees half of it.
fn write_addr_file(path: &Path, address: &str) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, address)?;
    std::fs::rename(&temp, path)
}

/// Binds the collector's listener (so callers learn the port before serving).
pub async fn bind(config: &CollectorConfig) -> Result<TcpListener, CollectorError> {
    let address = config.listen_addr();
    TcpListener::bind(&address)
        .await
        .map_err(|source| CollectorError::Listen { address, source })
}

/// Runs a collector from the command line until Ctrl-C or SIGTERM. With a shared backend (Redis)
/// it writes the store and reclaims a dead worker's tasks itself; with the embedded backend both
/// go through the master.
pub async fn serve(config: CollectorConfig) -> Result<(), CollectorError> {
    let token = config.auth.resolve()?;
    let listener = bind(&config).await?;
    if let Ok(local) = listener.local_addr() {
        let has_token = token.is_some();
        check_listen(
            "collector",
            local,
            has_token,
            config.insecure,
            COLLECTOR_RISK,
        )?;
    }
    let backend_config = config.backend.resolve()?;
    let master = config.master_addr();
    let greeting = Greeting::new(Role::Collector).with_token(token.clone());
    let tls = config.tls.client()?;
    let backend = backend_config
        .connect_peer(
            master.clone(),
            greeting,
            tls.clone(),
            crate::jobs::result_check(),
        )
        .await?;
    let downstream = Downstream {
        master: Some(master),
        token,
        tls,
        backend,
    };
    run(config, listener, downstream, crate::shutdown::signal()).await
}

/// Serves agents on `listener` until `shutdown` completes, sending findings to `downstream`.
pub async fn run(
    config: CollectorConfig,
    listener: TcpListener,
    downstream: Downstream,
    shutdown: impl Future,
) -> Result<(), CollectorError> {
    let thresholds = config.thresholds()?;
    let tls = config.tls_server.server()?;
    let alert_log_error = |source| CollectorError::AlertLog {
        path: config.alert_log.clone(),
        source,
    };
    let firing = AlertLog::still_firing(&config.alert_log, config.alert_log_keep)
        .map_err(alert_log_error)?;
    let log = AlertLog::open(
        &config.alert_log,
        config.alert_log_max_bytes,
        config.alert_log_keep,
    )
    .map_err(alert_log_error)?;
    let (items_tx, items_rx) = tokio::sync::mpsc::unbounded_channel();
    let flapping = flapping::FlapSettings {
        changes: config.flap_changes,
        window: config.flap_window,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let (delivery, delivery_tasks) = config.delivery.start(&stopped)?;
    let mut watchtower = Watchtower::new(thresholds.clone(), flapping, log, items_tx);
    watchtower.deliver_to(delivery);
    let adopted = watchtower.reconcile(&firing, Moment::now());
    if adopted > 0 {
        tracing::info!(
            adopted,
            "alerts left firing by the previous run are kept until their workers report, \
             and resolved if their condition no longer holds"
        );
    }
    let tower = SharedWatchtower::new(watchtower);
    // A live agent reports well within the silence alert; half that marks a link as dead.
    let stale_after = thresholds.no_report_after / 2;
    let gate = std::sync::Arc::new(gate::Gate::new(
        downstream.token.clone(),
        stale_after,
        thresholds.heartbeat_misses,
        config.max_workers_per_address,
    ));
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some(path) = &config.addr_file {
        write_addr_file(path, &local).map_err(|source| CollectorError::Listen {
            address: format!("{local} (writing {})", path.display()),
            source,
        })?;
    }
    tracing::info!(listen = %local, tls = tls.is_some(), master = downstream.master.as_deref().unwrap_or("none"), alert_log = %config.alert_log.display(),
        ?thresholds, "collector listening");
    // The host-loss window of every worker taken back from the store runs from here, when
    // agents can reach this collector again.
    let started = Moment::now();
    let store = downstream.backend.monitor.clone();
    let tasks = [
        tokio::spawn(rebuild::rebuild(store, tower.clone(), started, stopped())),
        tokio::spawn(server::serve(
            listener,
            tls,
            config.limits(),
            tower.clone(),
            gate,
            stopped(),
        )),
        // Rules for silent workers four times a second, so a lost host is judged within a
        // quarter second of its last missed heartbeat; stored views refreshed every 2 s (TTL 60 s).
        tokio::spawn(server::tick(
            tower,
            Duration::from_millis(250),
            8,
            stopped(),
        )),
        tokio::spawn(downstream::forward(downstream, items_rx, stopped())),
    ];
    shutdown.await;
    let _ = stop_tx.send(true);
    for task in tasks.into_iter().chain(delivery_tasks) {
        let _ = task.await;
    }
    tracing::info!("collector stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        collector: CollectorConfig,
    }

    #[test]
    fn thresholds_come_from_defaults_then_the_file_then_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = dir.path().join("rules.toml");
        std::fs::write(
            &rules,
            "cpu_percent = 80.0\nmemory_percent = 70.0\ncpu_for = 60\n",
        )
        .expect("write rules");
        let rules = rules.to_str().expect("utf-8");
        let args = Args::parse_from(["collector", "--rules", rules, "--memory-threshold", "75"]);
        let thresholds = args.collector.thresholds().expect("valid rules");
        assert_eq!(thresholds.cpu_percent, 80.0, "from the file");
        assert_eq!(thresholds.cpu_for, Duration::from_secs(60), "from the file");
        assert_eq!(
            thresholds.memory_percent, 75.0,
            "the flag wins over the file"
        );
        assert_eq!(
            thresholds.no_report_after,
            Duration::from_secs(30),
            "the default"
        );
    }

    #[test]
    fn a_bad_rules_file_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, "cpu_percent = \"high\"\n").expect("write rules");
        let args = Args::parse_from(["collector", "--rules", rules.to_str().expect("utf-8")]);
        let error = args
            .collector
            .thresholds()
            .expect_err("a string is not a percentage");
        assert!(error.to_string().contains("rules.toml"), "{error}");
    }
}
