//! The address of a Redis server: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://`
//! for Redis over TLS (optionally with the CA that signed the server's certificate), validated
//! once, shown without its password.

use std::fmt;

use thiserror::Error;

/// Port of a Redis server when neither the URL nor `REDIS_PORT` names one.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// A validated `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]` address.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`: the connection runs over TLS.
    tls: bool,
    /// With TLS, the CA certificates (PEM) that vouch for the server instead of the system's.
    ca_pem: Option<Vec<u8>>,
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
            "{}://{credentials}{}:{}/{}",
            self.scheme(),
            self.host,
            self.port,
            self.db
        )
    }

    /// `rediss` over TLS, else `redis`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "rediss"
        } else {
            "redis"
        }
    }

    /// Whether the connection runs over TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The CA certificates (PEM) trusted for this server, when given.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The same address trusting the CA certificates in `pem` (a `rediss://` address only).
    pub fn with_ca(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
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
        write!(
            f,
            "{}://{hidden}{}:{}/{}",
            self.scheme(),
            self.host,
            self.port,
            self.db
        )
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A redis:// URL that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("backend {url:?}: {reason}; expected redis://HOST:PORT/DB (or rediss:// for TLS)")]
pub struct RedisUrlError {
    /// The value given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A port number, 1 to 65535.
pub fn parse_port(text: &str) -> Option<u16> {
    text.parse().ok().filter(|port| *port != 0)
}

impl RedisUrl {
    /// The same address authenticating with `password` (from `REDIS_PASSWORD` or a file, so it
    /// never shows in `ps`); a password written in the URL itself wins.
    pub fn with_password(mut self, password: &str) -> Self {
        if self.credentials.is_none() && !password.is_empty() {
            let encoded: String = password
                .bytes()
                .map(|byte| match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(byte).to_string()
                    }
                    other => format!("%{other:02X}"),
                })
                .collect();
            self.credentials = Some(format!(":{encoded}@"));
        }
        self
    }

    /// The server at `host:port`, database `db`, without credentials.
    pub fn new(host: impl Into<String>, port: u16, db: u32) -> Self {
        Self {
            tls: false,
            ca_pem: None,
            credentials: None,
            host: host.into(),
            port,
            db,
        }
    }

    /// Parses a `redis://` or `rediss://` URL; a URL without a port takes `default_port` (the environment's
    /// `REDIS_PORT`), then 6379.
    pub fn parse(url: &str, default_port: Option<u16>) -> Result<Self, RedisUrlError> {
        parse_redis_url(url, default_port)
    }
}

fn parse_redis_url(url: &str, env_port: Option<u16>) -> Result<RedisUrl, RedisUrlError> {
    let bad = |reason: &str| RedisUrlError {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (tls, rest) = match (url.strip_prefix("rediss://"), url.strip_prefix("redis://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(bad("the scheme must be redis:// or rediss://")),
    };
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
        tls,
        ca_pem: None,
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
