//! Jobs per client per minute, as a sliding window per client address. Time is
//! passed in, so the rule is tested without waiting a minute.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sliding-window counter of submissions per client.
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Allows `limit` submissions per `window` per client.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Records a submission at `now`, or returns how long until the client may submit again.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let times = recent.entry(client.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self
                .window
                .saturating_sub(now.saturating_duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }

    /// The configured limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleventh_job_in_a_minute_is_refused_until_the_window_slides() {
        let limiter = RateLimiter::new(10, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..10 {
            assert!(limiter.check("a", start + Duration::from_secs(i)).is_ok());
        }
        let wait = limiter
            .check("a", start + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        assert!(limiter.check("b", start + Duration::from_secs(30)).is_ok());
        assert!(limiter.check("a", start + Duration::from_secs(60)).is_ok());
    }
}
