//! `up --autoscale MIN-MAX`: the number of workers follows the queue. A worker (with its agent)
//! is started when tasks have waited longer than `--scale-up-after` and fewer than MAX run; a
//! worker is stopped when the grid has had nothing waiting and a worker to spare for
//! `--scale-down-after`, never below MIN. It is stopped with SIGTERM, so it finishes (or returns)
//! the tasks it holds, and it says `scaled down` to its agent as it leaves: a departure, which
//! raises no alert. The decisions are pure (`Autoscaler::decide`, given the time); `Cluster`
//! carries them out (`scaling`).

use std::time::{Duration, Instant};

use crate::client::backlog::Backlog;

/// How often the backlog is read.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The bounds and delays of `--autoscale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Workers kept at least.
    pub min: usize,
    /// Workers run at most.
    pub max: usize,
    /// How long the oldest waiting task may wait before a worker is added (and the least time
    /// between two additions, so a new worker can start leasing first).
    pub up_after: Duration,
    /// How long the grid must have had nothing waiting and a worker to spare before one is
    /// stopped (and the least time between two removals).
    pub down_after: Duration,
}

/// Parses `MIN-MAX` (`1-3`; `2` alone means `2-2`).
pub fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let number = |part: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|_| format!("{text:?}: expected MIN-MAX worker counts, such as 1-3"))
    };
    let (min, max) = (number(min)?, number(max)?);
    if max == 0 || min > max || max > 256 {
        return Err(format!(
            "{text:?}: MIN-MAX needs 0 <= MIN <= MAX, 1 <= MAX <= 256"
        ));
    }
    Ok((min, max))
}

/// What the autoscaler decided, with its reason for the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Start one worker.
    Up(String),
    /// Stop one worker.
    Down(String),
    /// Leave the grid as it is.
    Hold,
}

/// The autoscaler's memory between two looks at the queue.
#[derive(Debug)]
pub struct Autoscaler {
    policy: Policy,
    last_check: Option<Instant>,
    last_up: Option<Instant>,
    last_down: Option<Instant>,
    spare_since: Option<Instant>,
}

impl Autoscaler {
    /// An autoscaler with `policy`, which has decided nothing yet.
    pub fn new(policy: Policy) -> Autoscaler {
        Autoscaler {
            policy,
            last_check: None,
            last_up: None,
            last_down: None,
            spare_since: None,
        }
    }

    /// Its bounds and delays.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Decides from the backlog seen at `now` with `running` workers.
    pub fn decide(&mut self, backlog: &Backlog, running: usize, now: Instant) -> Decision {
        let p = self.policy;
        let waiting = backlog.waiting();
        let age = backlog.oldest_age_seconds();
        let since = |at: Option<Instant>| at.map_or(Duration::MAX, |at| now - at);
        if running < p.min {
            self.last_up = Some(now);
            return Decision::Up(format!(
                "{running} worker(s) run, fewer than the minimum {}",
                p.min
            ));
        }
        // Spare: nothing waits, and fewer tasks are held than workers run.
        let spare = waiting == 0 && (backlog.leases_in_flight as usize) < running;
        if !spare {
            self.spare_since = None;
        } else if self.spare_since.is_none() {
            self.spare_since = Some(now);
        }
        if waiting > 0
            && age >= p.up_after.as_secs_f64()
            && running < p.max
            && since(self.last_up) >= p.up_after
        {
            self.last_up = Some(now);
            return Decision::Up(format!(
                "{waiting} task(s) waiting, the oldest for {age:.1} s (over {:.1} s), {running} of at most {} worker(s) run",
                p.up_after.as_secs_f64(),
                p.max
            ));
        }
        let spare_for = since(self.spare_since);
        if spare
            && running > p.min
            && spare_for >= p.down_after
            && since(self.last_down) >= p.down_after
        {
            self.last_down = Some(now);
            self.spare_since = Some(now);
            return Decision::Down(format!(
                "nothing waiting and {} task(s) held by {running} worker(s) for {:.1} s (over {:.1} s); at least {} kept",
                backlog.leases_in_flight,
                spare_for.as_secs_f64(),
                p.down_after.as_secs_f64(),
                p.min
            ));
        }
        Decision::Hold
    }

    /// Whether it is time for another look at the queue.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        if self.last_check.is_some_and(|at| now - at < CHECK_EVERY) {
            return false;
        }
        self.last_check = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch::backend::Priority;
    use gridwatch::protocol::QueueLevel;

    fn backlog(waiting: u64, age: f64, leases: u64) -> Backlog {
        Backlog {
            priorities: vec![QueueLevel {
                priority: Priority::Medium,
                tasks: waiting,
                oldest_task_age_seconds: age,
            }],
            leases_in_flight: leases,
            active_workers: 0,
        }
    }

    fn policy() -> Policy {
        Policy {
            min: 1,
            max: 3,
            up_after: Duration::from_secs(2),
            down_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn ranges_parse_and_nonsense_is_refused() {
        assert_eq!(parse_range("1-3"), Ok((1, 3)));
        assert_eq!(parse_range("2"), Ok((2, 2)));
        assert_eq!(parse_range("0-4"), Ok((0, 4)));
        for bad in ["3-1", "a-b", "0-0", "1-", "-2", "1-1000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_backlog_older_than_the_delay_adds_workers_one_delay_apart_up_to_max() {
        let mut scaler = Autoscaler::new(policy());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(
            scaler.decide(&backlog(30, 1.0, 1), 1, at(0.0)),
            Decision::Hold
        );
        assert!(matches!(
            scaler.decide(&backlog(30, 2.5, 1), 1, at(1.5)),
            Decision::Up(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(30, 3.0, 1), 2, at(2.0)),
            Decision::Hold,
            "too soon"
        );
        assert!(matches!(
            scaler.decide(&backlog(30, 4.0, 2), 2, at(3.5)),
            Decision::Up(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(30, 9.0, 3), 3, at(9.0)),
            Decision::Hold,
            "at max"
        );
    }

    #[test]
    fn spare_workers_go_one_delay_apart_down_to_min() {
        let mut scaler = Autoscaler::new(policy());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 3), 3, at(0.0)),
            Decision::Hold,
            "all busy"
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 3, at(1.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 3, at(5.9)),
            Decision::Hold
        );
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 1), 3, at(6.0)),
            Decision::Down(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 0), 2, at(8.0)),
            Decision::Hold
        );
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 0), 2, at(11.0)),
            Decision::Down(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 0), 1, at(30.0)),
            Decision::Hold,
            "at min"
        );
    }

    #[test]
    fn work_arriving_resets_the_spare_time() {
        let mut scaler = Autoscaler::new(policy());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 0), 2, at(0.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(4, 0.1, 2), 2, at(3.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 2, at(4.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 2, at(8.0)),
            Decision::Hold,
            "spare 4 s only"
        );
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 1), 2, at(9.0)),
            Decision::Down(_)
        ));
    }

    #[test]
    fn below_min_a_worker_is_started_at_once() {
        let mut scaler = Autoscaler::new(Policy { min: 2, ..policy() });
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 0), 1, Instant::now()),
            Decision::Up(_)
        ));
    }
}
