//! Wall-clock time and durations as the command line writes them, shared by every role. Rules
//! that depend on time take it from their caller (the collector's `Moment`, the embedded
//! backend's `Clock`); this module only reads the system clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current Unix time in seconds (0 if the system clock is before 1970).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Parses a duration given as seconds (`15`, `0.5`) or with a unit (`500ms`, `10s`, `5m`,
/// `12h`, `7d`), as the flags and environment variables (`HEARTBEAT_TIMEOUT`,
/// `AGENT_REPORT_INTERVAL`, `--keep-finished`) take it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else if let Some(h) = text.strip_suffix('h') {
        (h, 3600.0)
    } else if let Some(d) = text.strip_suffix('d') {
        (d, 86400.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a duration; use seconds (15, 0.5) or a unit (500ms, 10s, 5m, 12h, 7d)"
        )
    })?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{text:?} is not a duration: it must be zero or positive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
