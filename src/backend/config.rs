//! Which backend a process uses, and the one way to open it: `--backend embedded | redis |
//! redis://HOST:PORT/DB`, with `REDIS_HOST` / `REDIS_PORT` as environment fallbacks (the names
//! container setups already pass), then [`BackendConfig::connect_master`] for the master and
//! [`BackendConfig::connect_peer`] for a worker or the collector, each handing out only the
//! capabilities that role uses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::embedded::{EmbeddedBackend, EmbeddedConfig};
use super::redis::{
    claim_worker_id, parse_port, RedisBackend, RedisOptions, RedisUrl, RedisUrlError,
    DEFAULT_REDIS_PORT,
};
use super::remote::RemoteBackend;
use super::{
    BackendResult, GenomeStore, InputSource, Leases, MasterQueue, MasterStore, MonitorSink,
    QueueAdmin, ResultSink, WorkerIds,
};
use crate::protocol::{ClientTls, Greeting, Role};

/// Where tasks and job state live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendConfig {
    /// SQLite and spool files owned by the master; workers lease over the master's protocol.
    Embedded,
    /// A Redis server shared by master and workers.
    Redis(RedisUrl),
}

impl std::fmt::Display for BackendConfig {
    /// `embedded`, or the Redis URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendConfig::Embedded => f.write_str("embedded"),
            BackendConfig::Redis(url) => write!(f, "{url}"),
        }
    }
}

/// A `--backend` value (or environment) that names no usable backend.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackendConfigError {
    /// Neither `embedded`, `redis` nor a redis:// or rediss:// URL.
    #[error(
        "backend {0:?}: expected `embedded`, `redis` or a URL like redis://HOST:PORT/DB \
         (rediss:// for Redis over TLS)"
    )]
    Unknown(String),
    /// A redis:// URL that does not parse.
    #[error(transparent)]
    BadRedisUrl(#[from] RedisUrlError),
    /// `REDIS_PORT` is not a port number.
    #[error("REDIS_PORT={0:?} is not a port number (1-65535)")]
    BadRedisPort(String),
    /// The Redis CA file could not be read.
    #[error("cannot read the Redis CA file {path}: {reason}; check --redis-ca")]
    CaFile {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A Redis CA for a backend that does not use TLS.
    #[error("--redis-ca is given but the backend is {0}: use a rediss:// URL for Redis over TLS")]
    CaWithoutTls(String),
    /// The Redis password file could not be read.
    #[error("cannot read the Redis password file {path}: {reason}; check --redis-password-file")]
    PasswordFile {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
}

/// The backend flag shared by every role that needs one; flatten it into a role's arguments.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct BackendArgs {
    /// Where tasks and job state live: `embedded` (one machine), `redis` (uses REDIS_HOST and
    /// REDIS_PORT) or redis://HOST:PORT/DB, or rediss://HOST:PORT/DB for Redis over TLS (for a
    /// Redis server across a network you do not trust). Default: redis when REDIS_HOST is set,
    /// else embedded.
    #[arg(long, env = "GRIDWATCH_BACKEND", value_name = "BACKEND", value_parser = check_backend_flag)]
    pub backend: Option<String>,
    /// With a rediss:// backend, trust only the CA certificates in this PEM file for the Redis
    /// server (a private CA); without it the system's CAs are trusted.
    #[arg(long, env = "REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<std::path::PathBuf>,
    /// A file holding the Redis password (or set REDIS_PASSWORD): unlike a password in the URL,
    /// neither shows in `ps`.
    #[arg(long, env = "REDIS_PASSWORD_FILE", value_name = "PATH")]
    pub redis_password_file: Option<std::path::PathBuf>,
}

/// Rejects a malformed `--backend` while parsing arguments, so it is a usage error (exit 2).
fn check_backend_flag(value: &str) -> Result<String, BackendConfigError> {
    BackendConfig::resolve(Some(value), |_| None).map(|_| value.to_string())
}

/// The master's handle on the backend: every queue and store capability, and the genome store
/// where the backend keeps genomes. Cheap to clone; every method may be called concurrently.
#[derive(Clone)]
pub struct MasterBackend {
    /// Where tasks go, and are taken back.
    pub queue: Arc<dyn MasterQueue>,
    /// Where job state, results, alerts and worker views live.
    pub store: Arc<dyn MasterStore>,
    /// Where uploaded genomes are kept for reuse; `None` for a backend that keeps none.
    pub genomes: Option<Arc<dyn GenomeStore>>,
}

/// A worker's or the collector's handle on the backend: what those roles use and nothing more.
/// Cheap to clone; every method may be called concurrently.
#[derive(Clone)]
pub struct PeerBackend {
    /// A worker's leases.
    pub leases: Arc<dyn Leases>,
    /// Where a worker stores its results.
    pub results: Arc<dyn ResultSink>,
    /// Where a worker reads command inputs.
    pub inputs: Arc<dyn InputSource>,
    /// Where the collector sends alerts and worker views.
    pub monitor: Arc<dyn MonitorSink>,
    /// The queue's admin side, when this process reaches a shared backend (Redis) directly: the
    /// collector then re-queues a dead worker's tasks itself. `None` through the master.
    pub admin: Option<Arc<dyn QueueAdmin>>,
    /// Worker ids claimed in a shared backend (Redis); `None` through the master, whose
    /// registry keeps them.
    pub ids: Option<Arc<dyn WorkerIds>>,
}

/// Wraps `queue` so that its leases come with their genome ranges filled in: wherever a queue
/// hands tasks to workers (the embedded master, any Redis process), tasks that reference a
/// stored genome get their bases read from `genomes`.
fn with_genomes(
    queue: Arc<dyn MasterQueue>,
    genomes: Arc<dyn GenomeStore>,
) -> Arc<dyn MasterQueue> {
    Arc::new(super::genome::GenomeQueue::new(queue, genomes))
}

/// Delivery settings both backends honour.
#[derive(Clone, Copy, Debug)]
pub struct DeliverySettings {
    /// How long a lease stays invisible unless its worker extends it.
    pub visibility_timeout: Duration,
    /// Deliveries of a task before it is dead-lettered and its job fails.
    pub max_attempts: u32,
}

impl BackendConfig {
    /// Opens the backend for the master:
    /// - embedded: the database in `data_dir`, with the leases of the previous run returned to
    ///   the queue (their workers talked to the master that stopped);
    /// - Redis: the shared server, waiting with backoff until it answers (it may start after the
    ///   roles that use it). Leases are left alone: their workers read Redis directly and may
    ///   still be working.
    ///
    /// `delivery` sets the visibility timeout and attempts every task is delivered under. Every
    /// result this process stores is checked with `check` (the job kinds' check).
    pub async fn connect_master(
        &self,
        data_dir: &Path,
        delivery: DeliverySettings,
        check: super::SharedResultCheck,
    ) -> BackendResult<MasterBackend> {
        match self {
            BackendConfig::Embedded => {
                let config = EmbeddedConfig {
                    visibility_timeout: delivery.visibility_timeout,
                    max_attempts: delivery.max_attempts,
                };
                let backend =
                    Arc::new(EmbeddedBackend::open(data_dir, config)?.with_result_check(check));
                let released = backend.release_all_leases().await?;
                if released > 0 {
                    tracing::info!(
                        component = "master",
                        tasks = released,
                        "leases of the previous run returned to the queue"
                    );
                }
                Ok(MasterBackend {
                    queue: with_genomes(backend.clone(), backend.clone()),
                    store: backend.clone(),
                    genomes: Some(backend),
                })
            }
            BackendConfig::Redis(url) => {
                let options = RedisOptions {
                    visibility_timeout: delivery.visibility_timeout,
                    max_attempts: delivery.max_attempts,
                    ..RedisOptions::default()
                };
                let backend = open_redis(url, options, check).await?;
                Ok(MasterBackend {
                    queue: with_genomes(backend.clone(), backend.clone()),
                    store: backend.clone(),
                    genomes: Some(backend),
                })
            }
        }
    }

    /// Opens the backend for a worker or the collector, who says `greeting` in its hello:
    /// - embedded: the master at `master` over the protocol (TLS when `tls` is given), one
    ///   connection per concurrent call; a worker greets at once, so a refused hello fails now;
    /// - Redis: the shared server, directly, with the default options because only the master's
    ///   settings matter (only the master reclaims expired leases, and every task carries the
    ///   master's attempt limit). A worker claims its id there.
    ///
    /// Every result this process stores is checked with `check` (the job kinds' check).
    pub async fn connect_peer(
        &self,
        master: String,
        greeting: Greeting,
        tls: Option<ClientTls>,
        check: super::SharedResultCheck,
    ) -> BackendResult<PeerBackend> {
        match self {
            BackendConfig::Embedded => {
                let worker = greeting.role == Role::Worker;
                let remote = Arc::new(RemoteBackend::with_greeting(master, greeting).with_tls(tls));
                if worker {
                    remote.greet_now().await?;
                }
                Ok(PeerBackend {
                    leases: remote.clone(),
                    results: remote.clone(),
                    inputs: remote.clone(),
                    monitor: remote,
                    admin: None,
                    ids: None,
                })
            }
            BackendConfig::Redis(url) => {
                let backend = open_redis(url, RedisOptions::default(), check).await?;
                // A worker reads tasks from Redis directly: its id is claimed there.
                if let (Role::Worker, Some(id), Some(instance)) =
                    (greeting.role, &greeting.id, &greeting.instance)
                {
                    claim_worker_id(&backend, id, instance).await?;
                }
                let queue = with_genomes(backend.clone(), backend.clone());
                Ok(PeerBackend {
                    leases: queue.clone(),
                    results: backend.clone(),
                    inputs: backend.clone(),
                    monitor: backend.clone(),
                    admin: Some(queue),
                    ids: Some(backend),
                })
            }
        }
    }

    /// The backend's name, for logs and the HTTP API.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Embedded => "embedded",
            BackendConfig::Redis(_) => "redis",
        }
    }

    /// Whether workers and the collector reach the backend directly (Redis) rather than through
    /// the master (embedded): then they keep working while the master is away.
    pub fn is_shared(&self) -> bool {
        matches!(self, BackendConfig::Redis(_))
    }
}

/// Connects to the Redis server at `url`, waiting with backoff until it answers.
async fn open_redis(
    url: &RedisUrl,
    options: RedisOptions,
    check: super::SharedResultCheck,
) -> BackendResult<Arc<RedisBackend>> {
    let backend = RedisBackend::connect_patiently(url, options).await?;
    let backend = Arc::new(backend.with_result_check(check));
    tracing::info!(component = "backend", redis = %url, "connected to redis");
    Ok(backend)
}

impl BackendArgs {
    /// Resolves the flag against the process environment, adding the Redis password from
    /// `--redis-password-file` or `REDIS_PASSWORD`.
    pub fn resolve(&self) -> Result<BackendConfig, BackendConfigError> {
        let config =
            BackendConfig::resolve(self.backend.as_deref(), |name| std::env::var(name).ok())?;
        // A Redis CA means nothing to a process that does not reach Redis (a worker leasing
        // through the master): the multi-host recipe exports REDIS_CA on every host.
        let BackendConfig::Redis(mut url) = config else {
            return Ok(config);
        };
        if let Some(path) = &self.redis_ca {
            if !url.is_tls() {
                return Err(BackendConfigError::CaWithoutTls(url.to_string()));
            }
            let pem = std::fs::read(path).map_err(|err| BackendConfigError::CaFile {
                path: path.display().to_string(),
                reason: err.to_string(),
            })?;
            url = url.with_ca(pem);
        }
        let password = match &self.redis_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|text| text.trim().to_string())
                    .map_err(|err| BackendConfigError::PasswordFile {
                        path: path.display().to_string(),
                        reason: err.to_string(),
                    })?,
            ),
            None => std::env::var("REDIS_PASSWORD").ok(),
        };
        Ok(BackendConfig::Redis(match password {
            Some(password) => url.with_password(&password),
            None => url,
        }))
    }
}

impl BackendConfig {
    /// Resolves a `--backend` value, with `env` looking up `REDIS_HOST` and `REDIS_PORT`:
    /// no value means redis when `REDIS_HOST` is set and embedded otherwise; `redis` means
    /// `REDIS_HOST` (default 127.0.0.1) and `REDIS_PORT` (default 6379); a URL without a port
    /// takes `REDIS_PORT`.
    pub fn resolve(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, BackendConfigError> {
        let env_port = match env("REDIS_PORT").filter(|p| !p.is_empty()) {
            Some(text) => Some(parse_port(&text).ok_or(BackendConfigError::BadRedisPort(text))?),
            None => None,
        };
        let env_host = env("REDIS_HOST").filter(|h| !h.is_empty());
        let flag = flag.map(str::trim).filter(|f| !f.is_empty());
        match flag {
            None if env_host.is_none() => Ok(BackendConfig::Embedded),
            Some("embedded") => Ok(BackendConfig::Embedded),
            None | Some("redis") => Ok(BackendConfig::Redis(RedisUrl::new(
                env_host.unwrap_or_else(|| "127.0.0.1".into()),
                env_port.unwrap_or(DEFAULT_REDIS_PORT),
                0,
            ))),
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(BackendConfig::Redis(RedisUrl::parse(url, env_port)?))
            }
            Some(other) => Err(BackendConfigError::Unknown(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<String, BackendConfigError> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        BackendConfig::resolve(flag, lookup).map(|config| match config {
            BackendConfig::Embedded => "embedded".to_string(),
            BackendConfig::Redis(url) => url.connection_url(),
        })
    }

    #[test]
    fn embedded_is_the_default_without_redis_host() {
        assert_eq!(resolve(None, &[]).unwrap(), "embedded");
        assert_eq!(
            resolve(Some("embedded"), &[("REDIS_HOST", "r")]).unwrap(),
            "embedded"
        );
    }

    #[test]
    fn redis_host_in_the_environment_selects_redis() {
        let vars = [("REDIS_HOST", "redis"), ("REDIS_PORT", "6380")];
        assert_eq!(resolve(None, &vars).unwrap(), "redis://redis:6380/0");
        assert_eq!(
            resolve(Some("redis"), &[]).unwrap(),
            "redis://127.0.0.1:6379/0"
        );
    }

    #[test]
    fn urls_parse_with_fallbacks_for_the_missing_parts() {
        assert_eq!(
            resolve(Some("redis://h:7000/2"), &[]).unwrap(),
            "redis://h:7000/2"
        );
        let port = [("REDIS_PORT", "7001")];
        assert_eq!(
            resolve(Some("redis://h"), &port).unwrap(),
            "redis://h:7001/0"
        );
        assert_eq!(
            resolve(Some("redis://h:7000/"), &port).unwrap(),
            "redis://h:7000/0"
        );
        assert_eq!(
            resolve(Some("redis://:pw@[::1]:7000/1"), &[]).unwrap(),
            "redis://:pw@[::1]:7000/1"
        );
    }

    #[test]
    fn passwords_are_hidden_when_shown() {
        let Ok(BackendConfig::Redis(url)) =
            BackendConfig::resolve(Some("redis://:secret@h:1/0"), |_| None)
        else {
            panic!("expected a redis backend");
        };
        assert_eq!(url.to_string(), "redis://***@h:1/0");
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[test]
    fn a_password_from_outside_the_url_is_encoded_and_hidden() {
        let Ok(BackendConfig::Redis(url)) = BackendConfig::resolve(Some("redis://h:1/0"), |_| None)
        else {
            panic!("expected a redis backend");
        };
        let url = url.with_password("p@ss word");
        assert_eq!(url.connection_url(), "redis://:p%40ss%20word@h:1/0");
        assert_eq!(url.to_string(), "redis://***@h:1/0");
    }

    #[test]
    fn bad_values_name_the_input() {
        let err = resolve(Some("postgres://x"), &[]).unwrap_err();
        assert!(err.to_string().contains("postgres://x"), "{err}");
        let err = resolve(Some("redis://h:port/0"), &[]).unwrap_err();
        assert!(err.to_string().contains("port is not a number"), "{err}");
        let err = resolve(Some("redis://h:1/x"), &[]).unwrap_err();
        assert!(err.to_string().contains("database"), "{err}");
        let err = resolve(Some("redis://:1/0"), &[]).unwrap_err();
        assert!(err.to_string().contains("no host"), "{err}");
        let err = resolve(None, &[("REDIS_PORT", "99999")]).unwrap_err();
        assert_eq!(err, BackendConfigError::BadRedisPort("99999".into()));
    }

    #[test]
    fn rediss_urls_keep_their_scheme_and_hide_their_password() {
        let Ok(BackendConfig::Redis(url)) =
            BackendConfig::resolve(Some("rediss://:secret@h:1/2"), |_| None)
        else {
            panic!("expected a redis backend");
        };
        assert!(url.is_tls());
        assert_eq!(url.connection_url(), "rediss://:secret@h:1/2");
        assert_eq!(url.to_string(), "rediss://***@h:1/2");
        let url = url.with_ca(b"-----BEGIN CERTIFICATE-----".to_vec());
        assert!(!format!("{url:?}").contains("secret") && !format!("{url:?}").contains("BEGIN"));
    }

    #[test]
    fn a_redis_ca_needs_a_rediss_url_and_is_ignored_without_redis() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").expect("write");
        let args = |backend: &str, ca: &Path| BackendArgs {
            backend: Some(backend.to_string()),
            redis_ca: Some(ca.to_path_buf()),
            redis_password_file: None,
        };
        let err = args("redis://h:1/0", &ca)
            .resolve()
            .expect_err("plain redis");
        assert!(err.to_string().contains("rediss://"), "{err}");
        // Exported host-wide, it must not stop a worker that leases through the master.
        assert_eq!(
            args("embedded", &ca).resolve().ok(),
            Some(BackendConfig::Embedded)
        );
        let Ok(BackendConfig::Redis(url)) = args("rediss://h:1/0", &ca).resolve() else {
            panic!("expected a redis backend");
        };
        assert_eq!(url.ca_pem(), Some(&b"pem"[..]));
        let err = args("rediss://h:1/0", &dir.path().join("missing.pem"))
            .resolve()
            .expect_err("no CA file");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
