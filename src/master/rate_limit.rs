//! One limiter for every way jobs come in (a protocol submit, each `submit_batch` message, an
//! HTTP `POST /jobs`): per client address, jobs and queued tasks in a sliding window. A request
//! is admitted whole or refused whole, so a batch is never half-counted. Time is passed in, so
//! the rule is tested without waiting a minute.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Client addresses remembered before idle ones are dropped (their windows are empty).
const PRUNE_ABOVE_CLIENTS: usize = 4096;

/// What a client asks to add, or has added in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Jobs.
    pub jobs: u64,
    /// Queued tasks.
    pub tasks: u64,
}

/// A refused request: which limit, how full it is, and when to retry.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("client {client} added {used} {what} in the last minute, of the {limit} it may add per minute; this request adds {asked}: {advice}")]
pub struct RateRefusal {
    /// The client address.
    pub client: String,
    /// `jobs` or `tasks`.
    pub what: &'static str,
    /// The limit.
    pub limit: u64,
    /// Used in the window.
    pub used: u64,
    /// Asked by this request.
    pub asked: u64,
    /// When the request could fit, if it ever can.
    pub retry_after: Option<Duration>,
    /// What to do, naming the flag.
    pub advice: String,
}

/// A sliding-window counter of jobs and tasks per client.
pub struct RateLimiter {
    limit: Load,
    window: Duration,
    recent: Mutex<HashMap<String, VecDeque<(Instant, Load)>>>,
}

impl RateLimiter {
    /// Allows `jobs` jobs and `tasks` queued tasks per `window` per client.
    pub fn new(jobs: u32, tasks: u64, window: Duration) -> Self {
        Self {
            limit: Load {
                jobs: u64::from(jobs),
                tasks,
            },
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Records `asked` for `client` at `now` if it fits both limits; otherwise records nothing
    /// and says which limit it passes.
    pub fn admit(&self, client: &str, asked: Load, now: Instant) -> Result<(), RateRefusal> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() > PRUNE_ABOVE_CLIENTS {
            let window = self.window;
            recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) < window)
            });
        }
        let times = recent.entry(client.to_string()).or_default();
        while times
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        let used = times.iter().fold(Load::default(), |sum, (_, load)| Load {
            jobs: sum.jobs + load.jobs,
            tasks: sum.tasks + load.tasks,
        });
        let checks = [
            (
                "jobs",
                "--jobs-per-minute",
                used.jobs,
                asked.jobs,
                self.limit.jobs,
            ),
            (
                "tasks",
                "--tasks-per-minute",
                used.tasks,
                asked.tasks,
                self.limit.tasks,
            ),
        ];
        for (what, flag, used, asked, limit) in checks {
            if used.saturating_add(asked) <= limit {
                continue;
            }
            let retry_after = (asked <= limit).then(|| self.wait(times, what, limit - asked, now));
            let advice = match retry_after {
                Some(wait) => format!(
                    "retry in {} s, or ask the operator to raise the master's {flag}",
                    wait.as_secs() + 1
                ),
                None => format!(
                    "split it into requests of at most {limit} {what}, or ask the operator to raise the master's {flag}"
                ),
            };
            return Err(RateRefusal {
                client: client.to_string(),
                what,
                limit,
                used,
                asked,
                retry_after,
                advice,
            });
        }
        times.push_back((now, asked));
        Ok(())
    }

    /// How long until the window's `what` count falls to `room` or less.
    fn wait(
        &self,
        times: &VecDeque<(Instant, Load)>,
        what: &str,
        room: u64,
        now: Instant,
    ) -> Duration {
        let count = |load: &Load| {
            if what == "jobs" {
                load.jobs
            } else {
                load.tasks
            }
        };
        let mut left: u64 = times.iter().map(|(_, load)| count(load)).sum();
        for (at, load) in times {
            left -= count(load);
            if left <= room {
                return self
                    .window
                    .saturating_sub(now.saturating_duration_since(*at));
            }
        }
        Duration::ZERO
    }

    /// The configured limits.
    pub fn limit(&self) -> Load {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(n: u64) -> Load {
        Load { jobs: n, tasks: n }
    }

    #[test]
    fn eleventh_job_in_a_minute_is_refused_until_the_window_slides() {
        let limiter = RateLimiter::new(10, 1000, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..10 {
            assert!(limiter
                .admit("a", jobs(1), start + Duration::from_secs(i))
                .is_ok());
        }
        let refused = limiter
            .admit("a", jobs(1), start + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
        assert!(
            refused.to_string().contains("--jobs-per-minute"),
            "{refused}"
        );
        assert!(limiter
            .admit("b", jobs(1), start + Duration::from_secs(30))
            .is_ok());
        assert!(limiter
            .admit("a", jobs(1), start + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn a_batch_counts_each_job_and_is_admitted_whole_or_not_at_all() {
        let limiter = RateLimiter::new(100, 1_000_000, Duration::from_secs(60));
        let now = Instant::now();
        assert!(limiter.admit("a", jobs(60), now).is_ok());
        let refused = limiter.admit("a", jobs(60), now).unwrap_err();
        assert_eq!((refused.used, refused.asked), (60, 60));
        assert!(
            limiter.admit("a", jobs(40), now).is_ok(),
            "nothing was counted"
        );
        let alone = RateLimiter::new(100, 1_000_000, Duration::from_secs(60))
            .admit("a", jobs(101), now)
            .unwrap_err();
        assert_eq!(alone.retry_after, None);
        assert!(alone.advice.contains("split it"), "{alone}");
    }

    #[test]
    fn tasks_are_limited_apart_from_jobs() {
        let limiter = RateLimiter::new(100, 50, Duration::from_secs(60));
        let now = Instant::now();
        let big = Load { jobs: 1, tasks: 40 };
        assert!(limiter.admit("a", big, now).is_ok());
        let refused = limiter.admit("a", big, now).unwrap_err();
        assert_eq!(refused.what, "tasks");
        assert!(
            refused.to_string().contains("--tasks-per-minute"),
            "{refused}"
        );
    }
}
