//! Alert rules with `for:` durations, evaluated per worker: DEAD → critical, host lost (its
//! agent's heartbeats missed 3 times in a row) → critical, silent for 30 s (an agent without
//! heartbeats) → critical, CPU > 95 % for 5 min → warning, memory > 90 % → warning.
//!
//! A host counts as lost after a fixed number of missed heartbeats rather than by phi-accrual:
//! agents beat at a fixed, known interval, so a miss count gives a detection bound one can state
//! and configure (misses × interval, 3 s by default, under 5 s with the tick), while phi-accrual
//! adapts its bound to observed jitter, which on a loaded machine stretches detection exactly
//! when it matters and needs a warm-up window before it judges at all.
//!
//! Each (worker, rule) pair is a small state machine: inactive → pending → firing → inactive.
//! Only the firing and resolved transitions produce alerts, so a condition that persists is
//! reported once, not on every report. Time comes from the caller (`Moment`), never the clock.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clock::Moment;
use crate::protocol::{Alert, AlertState, Severity, WorkerReport, WorkerStatus};

/// Alert thresholds; the defaults are the documented ones (`gridwatch collector --help`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Host CPU percent above which `cpu_high` is pending.
    pub cpu_percent: f64,
    /// How long CPU must stay high before `cpu_high` fires.
    #[serde(with = "secs")]
    pub cpu_for: Duration,
    /// Host memory percent above which `memory_high` fires.
    pub memory_percent: f64,
    /// How long memory must stay high before `memory_high` fires.
    #[serde(with = "secs")]
    pub memory_for: Duration,
    /// Silence after which `no_report` fires.
    #[serde(with = "secs")]
    pub no_report_after: Duration,
    /// Heartbeats missed in a row after which `worker_unreachable` fires.
    pub heartbeat_misses: u32,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            cpu_percent: 95.0,
            cpu_for: Duration::from_secs(300),
            memory_percent: 90.0,
            memory_for: Duration::ZERO,
            no_report_after: Duration::from_secs(30),
            heartbeat_misses: super::liveness::DEFAULT_HEARTBEAT_MISSES,
        }
    }
}

/// Durations as (fractional) seconds in TOML and JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// The rules the collector knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    /// The agent reports the worker DEAD.
    WorkerDead,
    /// The agent's heartbeats stopped: the host is down or cut off.
    Unreachable,
    /// The agent runs but its worker never came (the agent reports it MISSING).
    WorkerMissing,
    /// No report from the worker's agent for `no_report_after` (agents without heartbeats).
    NoReport,
    /// Host CPU above the threshold for `cpu_for`.
    CpuHigh,
    /// Host memory above the threshold for `memory_for`.
    MemoryHigh,
}

impl RuleKind {
    /// Every rule, in evaluation order.
    pub const ALL: [RuleKind; 6] = [
        RuleKind::WorkerDead,
        RuleKind::Unreachable,
        RuleKind::WorkerMissing,
        RuleKind::NoReport,
        RuleKind::CpuHigh,
        RuleKind::MemoryHigh,
    ];

    /// The rule's name in alerts.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::WorkerDead => "worker_dead",
            RuleKind::Unreachable => "worker_unreachable",
            RuleKind::WorkerMissing => "worker_missing",
            RuleKind::NoReport => "no_report",
            RuleKind::CpuHigh => "cpu_high",
            RuleKind::MemoryHigh => "memory_high",
        }
    }

    /// The severity of the rule's alerts.
    pub fn severity(self) -> Severity {
        match self {
            // A missing worker is capacity the grid counts on and does not have; critical also
            // re-queues whatever its id still holds.
            RuleKind::WorkerDead
            | RuleKind::Unreachable
            | RuleKind::WorkerMissing
            | RuleKind::NoReport => Severity::Critical,
            RuleKind::CpuHigh | RuleKind::MemoryHigh => Severity::Warning,
        }
    }
}

/// The latest report of a worker and when the collector received it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The newest report.
    pub report: &'a WorkerReport,
    /// When it arrived (collector time).
    pub received_at: Moment,
    /// When the agent was last heard from, by report or heartbeat.
    pub heard_at: Moment,
    /// The agent's heartbeat interval, if it sends heartbeats.
    pub beat_interval: Option<Duration>,
}

/// Whether a rule's condition holds, with the value and sentence for the alert.
struct Verdict {
    holds: bool,
    value: Option<f64>,
    message: String,
}

/// Where one (worker, rule) pair is.
#[derive(Clone, Debug)]
enum RuleState {
    Pending {
        since: Moment,
    },
    Firing {
        since: Moment,
        id: String,
        message: String,
        value: Option<f64>,
    },
}

/// A pending or firing alert, for display.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// The rule's name.
    pub rule: String,
    /// The worker concerned.
    pub worker_id: String,
    /// How urgent.
    pub severity: Severity,
    /// `pending` or `firing`.
    pub state: AlertState,
    /// Unix time the condition started to hold.
    pub active_since: f64,
}

/// Evaluates every rule for every worker and remembers each pair's lifecycle state.
#[derive(Debug, Default)]
pub struct RuleEngine {
    thresholds: Thresholds,
    states: HashMap<(String, RuleKind), RuleState>,
}

impl RuleEngine {
    /// An engine with the given thresholds and no history.
    pub fn new(thresholds: Thresholds) -> RuleEngine {
        RuleEngine {
            thresholds,
            states: HashMap::new(),
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Evaluates all rules for one worker at `now`; returns the alerts that fired or resolved.
    pub fn evaluate(&mut self, observation: Observation<'_>, now: Moment) -> Vec<Alert> {
        let mut events = Vec::new();
        for kind in RuleKind::ALL {
            let verdict = self.verdict(kind, observation, now);
            let key = (observation.report.worker_id.clone(), kind);
            if let Some(alert) = self.step(key, kind, verdict, now) {
                events.push(alert);
            }
        }
        events
    }

    /// Takes over an alert a previous collector left firing, under its id, so that the
    /// worker's next report either keeps it firing (no duplicate) or resolves it. False if the
    /// rule is unknown here (another version's).
    pub fn adopt(&mut self, alert: &Alert, now: Moment) -> bool {
        let Some(kind) = RuleKind::ALL.into_iter().find(|k| k.name() == alert.rule) else {
            return false;
        };
        let age =
            Duration::try_from_secs_f64(now.unix_secs - alert.active_since).unwrap_or_default();
        let since = Moment {
            instant: now.instant.checked_sub(age).unwrap_or(now.instant),
            unix_secs: alert.active_since,
        };
        self.states.insert(
            (alert.worker_id.clone(), kind),
            RuleState::Firing {
                since,
                id: alert.id.clone(),
                message: alert.message.clone(),
                value: alert.value,
            },
        );
        true
    }

    /// Whether the worker has a firing warning (a resource running hot): it should not lease.
    pub fn should_pause_leasing(&self, worker: &str) -> bool {
        self.states.iter().any(|((w, kind), state)| {
            w == worker
                && kind.severity() == Severity::Warning
                && matches!(state, RuleState::Firing { .. })
        })
    }

    /// Every pending or firing alert, most severe first.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut active: Vec<ActiveAlert> = self
            .states
            .iter()
            .map(|((worker, kind), state)| {
                let (state, since) = match state {
                    RuleState::Pending { since } => (AlertState::Pending, since),
                    RuleState::Firing { since, .. } => (AlertState::Firing, since),
                };
                ActiveAlert {
                    rule: kind.name().to_string(),
                    worker_id: worker.clone(),
                    severity: kind.severity(),
                    state,
                    active_since: since.unix_secs,
                }
            })
            .collect();
        active.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.worker_id.cmp(&b.worker_id))
        });
        active
    }

    fn verdict(&self, kind: RuleKind, observation: Observation<'_>, now: Moment) -> Verdict {
        let report = observation.report;
        let worker = &report.worker_id;
        let silence = now.since(observation.received_at);
        let stale = silence >= self.thresholds.no_report_after;
        match kind {
            RuleKind::WorkerDead => Verdict {
                holds: report.status == WorkerStatus::Dead,
                value: None,
                message: match &report.status_reason {
                    Some(reason) => format!("worker {worker} is DEAD: {reason}"),
                    None => format!("worker {worker} is DEAD"),
                },
            },
            RuleKind::Unreachable => {
                let quiet = now.since(observation.heard_at);
                let lost = observation.beat_interval.is_some_and(|interval| {
                    quiet >= interval * self.thresholds.heartbeat_misses.max(1)
                });
                Verdict {
                    holds: lost && report.status != WorkerStatus::Stopped,
                    value: Some((quiet.as_secs_f64() * 10.0).floor() / 10.0),
                    message: format!(
                        "worker {worker} unreachable: no heartbeat from its agent for {:.1} s \
                         (host down or cut off)",
                        quiet.as_secs_f64()
                    ),
                }
            }
            RuleKind::WorkerMissing => Verdict {
                holds: report.status == WorkerStatus::Missing,
                value: None,
                message: match &report.status_reason {
                    Some(reason) => format!("worker {worker} is missing: {reason}"),
                    None => format!("worker {worker} is missing: its agent has no worker"),
                },
            },
            RuleKind::NoReport => Verdict {
                // A worker that said goodbye is expected to go quiet; an agent that sends
                // heartbeats is judged by them (`worker_unreachable`), sooner.
                holds: stale
                    && report.status != WorkerStatus::Stopped
                    && observation.beat_interval.is_none(),
                value: Some(silence.as_secs_f64().floor()),
                message: format!(
                    "no report from worker {worker} for {} s",
                    silence.as_secs_f64().floor()
                ),
            },
            // Resource rules judge fresh data only; a silent worker is the other rule's business.
            // CPU pressure is what is left after the grid's own workers: a host busy with the
            // grid's tasks is the grid working, and pausing for it would stall every long job.
            RuleKind::CpuHigh => {
                let grid = report.grid_cpu_percent.unwrap_or(0.0);
                let others = (report.cpu_percent - grid).max(0.0);
                Verdict {
                    holds: !stale && others > self.thresholds.cpu_percent,
                    value: Some(others),
                    message: format!(
                        "worker {worker}: host CPU {:.1}% without the grid's workers ({:.1}% with \
                         them) above {}% for {} s",
                        others,
                        report.cpu_percent,
                        self.thresholds.cpu_percent,
                        self.thresholds.cpu_for.as_secs()
                    ),
                }
            }
            RuleKind::MemoryHigh => Verdict {
                holds: !stale && report.memory_percent > self.thresholds.memory_percent,
                value: Some(report.memory_percent),
                message: format!(
                    "worker {worker}: host memory {:.1}% above {}%",
                    report.memory_percent, self.thresholds.memory_percent
                ),
            },
        }
    }

    fn hold_for(&self, kind: RuleKind) -> Duration {
        match kind {
            RuleKind::WorkerDead
            | RuleKind::Unreachable
            | RuleKind::WorkerMissing
            | RuleKind::NoReport => Duration::ZERO,
            RuleKind::CpuHigh => self.thresholds.cpu_for,
            RuleKind::MemoryHigh => self.thresholds.memory_for,
        }
    }

    /// Advances one (worker, rule) state machine; returns the alert of a firing or resolution.
    fn step(
        &mut self,
        key: (String, RuleKind),
        kind: RuleKind,
        verdict: Verdict,
        now: Moment,
    ) -> Option<Alert> {
        let current = self.states.remove(&key);
        let (next, event) = match (current, verdict.holds) {
            (None, false) => (None, None),
            (Some(RuleState::Pending { .. }), false) => (None, None),
            (
                Some(RuleState::Firing {
                    since,
                    id,
                    message,
                    value,
                }),
                false,
            ) => {
                let alert = self.alert(&key, kind, AlertState::Resolved, id, since, now);
                let message = format!("resolved: {message}");
                (
                    None,
                    Some(Alert {
                        message,
                        value,
                        ..alert
                    }),
                )
            }
            (Some(firing @ RuleState::Firing { .. }), true) => (Some(firing), None),
            (None, true) => self.maybe_fire(&key, kind, now, now, verdict),
            (Some(RuleState::Pending { since }), true) => {
                self.maybe_fire(&key, kind, since, now, verdict)
            }
        };
        if let Some(state) = next {
            self.states.insert(key, state);
        }
        event
    }

    fn maybe_fire(
        &self,
        key: &(String, RuleKind),
        kind: RuleKind,
        since: Moment,
        now: Moment,
        verdict: Verdict,
    ) -> (Option<RuleState>, Option<Alert>) {
        if now.since(since) < self.hold_for(kind) {
            return (Some(RuleState::Pending { since }), None);
        }
        let id = format!(
            "{}-{}-{}",
            kind.name(),
            key.0,
            (now.unix_secs * 1000.0) as u64
        );
        let alert = self.alert(key, kind, AlertState::Firing, id.clone(), since, now);
        let alert = Alert {
            message: verdict.message.clone(),
            value: verdict.value,
            ..alert
        };
        let state = RuleState::Firing {
            since,
            id,
            message: verdict.message,
            value: verdict.value,
        };
        (Some(state), Some(alert))
    }

    fn alert(
        &self,
        key: &(String, RuleKind),
        kind: RuleKind,
        state: AlertState,
        id: String,
        since: Moment,
        now: Moment,
    ) -> Alert {
        Alert {
            id,
            rule: kind.name().to_string(),
            severity: kind.severity(),
            worker_id: key.0.clone(),
            state,
            message: String::new(),
            value: None,
            active_since: since.unix_secs,
            timestamp: now.unix_secs,
        }
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
