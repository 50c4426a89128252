//! Logging setup: JSON lines for servers (timestamp, level, component, message, fields),
//! human-readable text for interactive clients. `LOG_LEVEL` (or `RUST_LOG`) sets the filter.

pub mod rotating_log;

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for servers and log shippers.
    Json,
    /// Compact human-readable lines on stderr, for interactive commands.
    Text,
}

/// Installs the global subscriber. Safe to call once per process; later calls are ignored.
pub fn init(format: LogFormat, component: &'static str) {
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .map(EnvFilter::new)
        .unwrap_or_else(|| match format {
            LogFormat::Json => EnvFilter::new("info"),
            LogFormat::Text => EnvFilter::new("warn"),
        });
    let result = match format {
        LogFormat::Json => fmt()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
        LogFormat::Text => fmt()
            .compact()
            .with_target(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    if result.is_ok() {
        tracing::debug!(component, "logging initialised");
    }
}
