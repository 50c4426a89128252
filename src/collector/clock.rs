//! Time as the collector's rules see it. Every rule evaluation takes a `Moment` from its caller,
//! so tests drive "CPU > 95 % for 5 min" with `Moment::plus` in microseconds of real time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point in time: a monotonic instant for durations, and the matching Unix time for records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moment {
    /// For measuring durations (immune to wall-clock jumps).
    pub instant: Instant,
    /// Unix time in seconds, for timestamps in alerts and logs.
    pub unix_secs: f64,
}

impl Moment {
    /// The present.
    pub fn now() -> Moment {
        Moment {
            instant: Instant::now(),
            unix_secs: unix_now(),
        }
    }

    /// This moment moved `by` into the future.
    pub fn plus(self, by: Duration) -> Moment {
        Moment {
            instant: self.instant + by,
            unix_secs: self.unix_secs + by.as_secs_f64(),
        }
    }

    /// Time elapsed from `earlier` to this moment (zero if `earlier` is later).
    pub fn since(self, earlier: Moment) -> Duration {
        self.instant.saturating_duration_since(earlier.instant)
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Parses a duration given as seconds (`15`, `0.5`) or with a unit (`500ms`, `10s`, `5m`), as
/// the flags and environment variables (`HEARTBEAT_TIMEOUT`, `AGENT_REPORT_INTERVAL`) take it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("{text:?} is not a duration; use seconds (15, 0.5) or a unit (500ms, 10s, 5m)")
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
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
