//! Time as the collector's rules see it. Every rule evaluation takes a `Moment` from its caller,
//! so tests drive "CPU > 95 % for 5 min" with `Moment::plus` in microseconds of real time.

use std::time::{Duration, Instant};

use crate::time::unix_now;

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
