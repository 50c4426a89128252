//! Which backend a process uses: `--backend embedded | redis | redis://HOST:PORT/DB`, with the
//! seed's `REDIS_HOST` / `REDIS_PORT` as environment fallbacks (seed 000 §12).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::embedded::{EmbeddedBackend, EmbeddedConfig};
use super::redis::{RedisBackend, RedisOptions};
use super::{BackendResult, Queue, Store};

/// Port of a Redis server when neither the URL nor `REDIS_PORT` names one.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// Where tasks and job state live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendConfig {
    /// SQLite and spool files owned by the master; workers lease over the master's protocol.
    Embedded,
    /// A Redis server shared by master and workers.
    Redis(RedisUrl),
}

/// A validated `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` address.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `USER:PASSWORD@` or `:PASSWORD@`, when given.
    credentials: Option<String>,
    /// Host name or IP address (IPv6 in brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number.
    pub db: u32,
}

impl RedisUrl {
    /// The URL to connect with, credentials included.
    pub fn connection_url(&self) -> String {
        let credentials = self.credentials.as_deref().unwrap_or("");
        format!(
            "redis://{credentials}{}:{}/{}",
            self.host, self.port, self.db
        )
    }
}

impl fmt::Display for RedisUrl {
    /// Shows the address without its password, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        write!(f, "redis://{hidden}{}:{}/{}", self.host, self.port, self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `--backend` value (or environment) that names no usable backend.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackendConfigError {
    /// Neither `embedded`, `redis` nor a redis:// URL.
    #[error("backend {0:?}: expected `embedded`, `redis` or a URL like redis://HOST:PORT/DB")]
    Unknown(String),
    /// A redis:// URL that does not parse.
    #[error("backend {url:?}: {reason}; expected redis://HOST:PORT/DB")]
    BadRedisUrl {
        /// The value given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `REDIS_PORT` is not a port number.
    #[error("REDIS_PORT={0:?} is not a port number (1-65535)")]
    BadRedisPort(String),
}

/// The backend flag shared by every role that needs one; flatten it into a role's arguments.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct BackendArgs {
    /// Where tasks and job state live: `embedded` (one machine), `redis` (uses REDIS_HOST and
    /// REDIS_PORT) or redis://HOST:PORT/DB. Default: redis when REDIS_HOST is set, else embedded.
    #[arg(long, env = "GRIDWATCH_BACKEND", value_name = "BACKEND", value_parser = check_backend_flag)]
    pub backend: Option<String>,
}

/// Rejects a malformed `--backend` while parsing arguments, so it is a usage error (exit 2).
fn check_backend_flag(value: &str) -> Result<String, BackendConfigError> {
    BackendConfig::resolve(Some(value), |_| None).map(|_| value.to_string())
}

/// A backend's queue and store, shared by every task of a process.
pub type SharedBackend = (Arc<dyn Queue>, Arc<dyn Store>);

/// Delivery settings both backends honour.
#[derive(Clone, Copy, Debug)]
pub struct DeliverySettings {
    /// How long a lease stays invisible unless its worker extends it.
    pub visibility_timeout: Duration,
    /// Deliveries of a task before it is dead-lettered and its job fails.
    pub max_attempts: u32,
}

impl BackendConfig {
    /// Opens the backend as the master does at start: the embedded one in `data_dir`, with the
    /// leases of the previous run returned to the queue (their workers talked to the master that
    /// stopped); or the shared Redis server, waiting with backoff until it answers, leases left
    /// alone (their workers read Redis directly and may still be working).
    pub async fn open(
        &self,
        data_dir: &Path,
        delivery: DeliverySettings,
    ) -> BackendResult<SharedBackend> {
        match self {
            BackendConfig::Embedded => {
                let config = EmbeddedConfig {
                    visibility_timeout: delivery.visibility_timeout,
                    max_attempts: delivery.max_attempts,
                };
                let backend = Arc::new(EmbeddedBackend::open(data_dir, config)?);
                let released = backend.release_all_leases().await?;
                if released > 0 {
                    tracing::info!(
                        component = "master",
                        tasks = released,
                        "leases of the previous run returned to the queue"
                    );
                }
                Ok((backend.clone(), backend))
            }
            BackendConfig::Redis(url) => open_redis(url, delivery).await,
        }
    }
}

/// Connects to the Redis backend, retrying with backoff while Redis is unreachable (it may start
/// after the roles that use it).
pub async fn open_redis(
    url: &RedisUrl,
    delivery: DeliverySettings,
) -> BackendResult<SharedBackend> {
    let options = RedisOptions {
        visibility_timeout: delivery.visibility_timeout,
        max_attempts: delivery.max_attempts,
        ..RedisOptions::default()
    };
    let backend = Arc::new(RedisBackend::connect_patiently(url, options).await?);
    tracing::info!(component = "backend", redis = %url, "connected to redis");
    Ok((backend.clone(), backend))
}

impl BackendArgs {
    /// Resolves the flag against the process environment.
    pub fn resolve(&self) -> Result<BackendConfig, BackendConfigError> {
        BackendConfig::resolve(self.backend.as_deref(), |name| std::env::var(name).ok())
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
            None | Some("redis") => Ok(BackendConfig::Redis(RedisUrl {
                credentials: None,
                host: env_host.unwrap_or_else(|| "127.0.0.1".into()),
                port: env_port.unwrap_or(DEFAULT_REDIS_PORT),
                db: 0,
            })),
            Some(url) if url.starts_with("redis://") => {
                parse_redis_url(url, env_port).map(BackendConfig::Redis)
            }
            Some(other) => Err(BackendConfigError::Unknown(other.to_string())),
        }
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.parse().ok().filter(|port| *port != 0)
}

fn parse_redis_url(url: &str, env_port: Option<u16>) -> Result<RedisUrl, BackendConfigError> {
    let bad = |reason: &str| BackendConfigError::BadRedisUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = &url["redis://".len()..];
    let (authority, db) = match rest.split_once('/') {
        Some((authority, "")) => (authority, 0),
        Some((authority, db)) => (
            authority,
            db.parse()
                .map_err(|_| bad("the database after / must be a number"))?,
        ),
        None => (rest, 0),
    };
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((credentials, host_port)) => (Some(format!("{credentials}@")), host_port),
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port).ok_or_else(|| bad("the port is not a number"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(RedisUrl {
        credentials,
        host: host.to_string(),
        port: port.or(env_port).unwrap_or(DEFAULT_REDIS_PORT),
        db,
    })
}

/// Splits `host[:port]` (host possibly a bracketed IPv6 address). `None` if the port is bad.
fn split_host_port(host_port: &str) -> Option<(&str, Option<u16>)> {
    let port_sep = if host_port.starts_with('[') {
        host_port.rfind("]:").map(|i| i + 1)
    } else {
        host_port.rfind(':')
    };
    match port_sep {
        Some(i) => Some((&host_port[..i], Some(parse_port(&host_port[i + 1..])?))),
        None => Some((host_port, None)),
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
}
