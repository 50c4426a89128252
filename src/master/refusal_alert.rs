//! Refused results raise an alert: a worker sending results for leases it does not hold is stale,
//! broken or forging, and an operator should hear of it without watching a counter. A refusal is
//! an event, not a condition that later clears, so its alert is recorded as fired and resolved at
//! once: it shows in the alert history without staying in the firing count. One alert per worker
//! and reason per minute keeps a flood of forgeries from flooding the history.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::{MonitorSink, RefusalReason};
use crate::protocol::{Alert, AlertState, Severity};
use crate::time::unix_now;

/// The alert rule's name.
pub const RULE: &str = "result_refused";

/// At most one alert per worker and reason in this window.
const QUIET: Duration = Duration::from_secs(60);

/// Keys remembered at most; past this the memory is cleared (a flood of invented worker names
/// must not grow it without bound).
const MAX_KEYS: usize = 1024;

/// When each (worker, reason) last raised an alert.
#[derive(Default)]
pub struct RefusalAlerts {
    last: Mutex<HashMap<(String, RefusalReason), Instant>>,
}

impl RefusalAlerts {
    /// Records the refusal of `worker`'s result for `job`/`chunk` in the store's alert history,
    /// unless the same worker and reason raised one within the last minute. Failures to store it
    /// are logged, never returned: the refusal itself already happened.
    pub async fn raise(
        &self,
        store: &dyn MonitorSink,
        worker: &str,
        reason: RefusalReason,
        job: &str,
        chunk: u32,
    ) {
        if !self.due(worker, reason, Instant::now()) {
            return;
        }
        let now = unix_now();
        let firing = Alert {
            id: format!("{RULE}:{worker}:{reason}:{now}"),
            rule: RULE.into(),
            severity: Severity::Warning,
            worker_id: worker.into(),
            state: AlertState::Firing,
            message: format!(
                "worker {worker} sent a result for chunk {chunk} of job {job} that was refused \
                 ({reason}); further refusals in the next minute are only counted"
            ),
            value: None,
            active_since: now,
            timestamp: now,
        };
        let resolved = Alert {
            state: AlertState::Resolved,
            ..firing.clone()
        };
        for event in [firing, resolved] {
            let stored = match serde_json::to_value(&event) {
                Ok(json) => store.push_alert(&json).await,
                Err(err) => Err(crate::backend::BackendError::Other(err.to_string())),
            };
            if let Err(err) = stored {
                tracing::warn!(component = "master", error = %err, "recording a refusal alert failed");
                return;
            }
        }
    }

    /// Whether `worker` and `reason` may raise an alert at `now` (and if so, marks it raised).
    fn due(&self, worker: &str, reason: RefusalReason, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let key = (worker.to_string(), reason);
        if let Some(at) = last.get(&key) {
            if now.duration_since(*at) < QUIET {
                return false;
            }
        }
        if last.len() >= MAX_KEYS {
            last.clear();
        }
        last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_worker_and_reason_per_minute() {
        let alerts = RefusalAlerts::default();
        let start = Instant::now();
        assert!(alerts.due("w1", RefusalReason::NotHolder, start));
        assert!(!alerts.due(
            "w1",
            RefusalReason::NotHolder,
            start + Duration::from_secs(59)
        ));
        assert!(alerts.due("w1", RefusalReason::OutOfRange, start));
        assert!(alerts.due("w2", RefusalReason::NotHolder, start));
        assert!(alerts.due(
            "w1",
            RefusalReason::NotHolder,
            start + Duration::from_secs(61)
        ));
    }

    #[test]
    fn invented_worker_names_do_not_grow_the_memory() {
        let alerts = RefusalAlerts::default();
        let start = Instant::now();
        for i in 0..5 * MAX_KEYS {
            alerts.due(&format!("forger-{i}"), RefusalReason::NoSuchTask, start);
        }
        let remembered = alerts.last.lock().map(|m| m.len()).unwrap_or(0);
        assert!(remembered <= MAX_KEYS, "{remembered} keys remembered");
    }
}
