//! Alerts to a Prometheus Alertmanager through its v2 API (`POST /api/v2/alerts`), the way
//! Prometheus itself sends them: every firing alert is re-sent each resend interval with an
//! `endsAt` a few intervals ahead (so alerts of a collector that vanished expire by themselves),
//! and a resolved one is sent once more with `endsAt` at its resolution. Routing, grouping,
//! silences, email, Slack and the rest are Alertmanager's job.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;

use super::http::Endpoint;
use super::{Backoff, Settings};
use crate::protocol::{Alert, AlertState};
use crate::time::{rfc3339, unix_now};

/// Alertmanager's alert API below its base URL.
pub const API_PATH: &str = "/api/v2/alerts";

/// A firing alert's `endsAt` lies this many resend intervals ahead, as Prometheus does: one
/// lost resend does not resolve it, a collector gone for good does.
const ENDS_AFTER_RESENDS: u32 = 4;

/// One alert as Alertmanager's v2 API takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// Identity: `alertname` (the rule), `worker`, `severity`.
    pub labels: BTreeMap<String, String>,
    /// For people: `summary` (the message) and the gridwatch alert id.
    pub annotations: BTreeMap<String, String>,
    /// When the condition started.
    pub starts_at: String,
    /// When the alert ends: ahead for a firing one, its resolution for a resolved one.
    pub ends_at: String,
}

/// What the receiver must hear next: the alerts firing now and resolutions not yet delivered.
#[derive(Debug, Default)]
struct Ledger {
    firing: BTreeMap<String, Alert>,
    resolved: VecDeque<Alert>,
}

impl Ledger {
    fn apply(&mut self, alert: Alert, capacity: usize) {
        match alert.state {
            AlertState::Firing => {
                if self.firing.len() >= capacity && !self.firing.contains_key(&alert.id) {
                    self.firing.pop_first();
                }
                self.firing.insert(alert.id.clone(), alert);
            }
            AlertState::Resolved => {
                self.firing.remove(&alert.id);
                if self.resolved.len() >= capacity {
                    self.resolved.pop_front();
                }
                self.resolved.push_back(alert);
            }
            AlertState::Pending => {}
        }
    }

    fn batch(&self, now_unix: f64, resend: Duration) -> Vec<PostableAlert> {
        let ahead = now_unix + (resend * ENDS_AFTER_RESENDS).as_secs_f64();
        let firing = self.firing.values().map(|a| postable(a, ahead));
        let resolved = self.resolved.iter().map(|a| postable(a, a.timestamp));
        firing.chain(resolved).collect()
    }
}

/// The v2 API form of one gridwatch alert event ending at `ends_at` (Unix seconds).
pub fn postable(alert: &Alert, ends_at: f64) -> PostableAlert {
    let labels = [
        ("alertname", alert.rule.clone()),
        ("worker", alert.worker_id.clone()),
        ("severity", alert.severity.as_str().to_ascii_lowercase()),
        ("source", "gridwatch".to_string()),
    ];
    let annotations = [
        ("summary", alert.message.clone()),
        ("gridwatch_alert_id", alert.id.clone()),
    ];
    let owned = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    PostableAlert {
        labels: owned(&labels),
        annotations: owned(&annotations),
        starts_at: rfc3339(alert.active_since),
        ends_at: rfc3339(ends_at.max(alert.active_since)),
    }
}

/// Delivers alert events from `events` to the Alertmanager at `endpoint` until `shutdown`.
pub async fn deliver(
    endpoint: Endpoint,
    settings: Settings,
    mut events: Receiver<Alert>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let mut ledger = Ledger::default();
    let mut backoff = Backoff::new(&endpoint);
    // When to post next: at once after news, then every resend interval while alerts fire.
    let mut due: Option<Instant> = None;
    loop {
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            event = events.recv() => match event {
                Some(alert) => {
                    ledger.apply(alert, settings.queue);
                    while let Ok(more) = events.try_recv() {
                        ledger.apply(more, settings.queue);
                    }
                    due = Some(due.map_or_else(Instant::now, |at| at.min(Instant::now())));
                }
                None => return,
            },
            _ = wait => {
                let batch = ledger.batch(unix_now(), settings.resend);
                if batch.is_empty() {
                    due = None;
                    continue;
                }
                let body = serde_json::to_vec(&batch).unwrap_or_default();
                match endpoint.post_json(body, settings.timeout).await {
                    Ok(()) => {
                        backoff.succeeded(batch.len());
                        ledger.resolved.clear();
                        due = (!ledger.firing.is_empty()).then(|| Instant::now() + settings.resend);
                    }
                    Err(err) => due = Some(Instant::now() + backoff.failed(&err)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Severity;

    fn alert(id: &str, state: AlertState, at: f64) -> Alert {
        Alert {
            id: id.into(),
            rule: "worker_dead".into(),
            severity: Severity::Critical,
            worker_id: "w1".into(),
            state,
            message: "worker w1 is DEAD".into(),
            value: None,
            active_since: 1_705_314_600.0,
            timestamp: at,
        }
    }

    #[test]
    fn firing_alerts_end_ahead_and_resolved_ones_at_their_resolution() {
        let mut ledger = Ledger::default();
        ledger.apply(alert("a1", AlertState::Firing, 1_705_314_600.0), 10);
        let batch = ledger.batch(1_705_314_610.0, Duration::from_secs(30));
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].labels["alertname"], "worker_dead");
        assert_eq!(batch[0].labels["worker"], "w1");
        assert_eq!(batch[0].labels["severity"], "critical");
        assert_eq!(batch[0].annotations["summary"], "worker w1 is DEAD");
        assert_eq!(batch[0].starts_at, "2024-01-15T10:30:00.000Z");
        assert_eq!(
            batch[0].ends_at, "2024-01-15T10:32:10.000Z",
            "4 × 30 s ahead"
        );

        ledger.apply(alert("a1", AlertState::Resolved, 1_705_314_620.0), 10);
        let batch = ledger.batch(1_705_314_625.0, Duration::from_secs(30));
        assert_eq!(batch.len(), 1, "no longer firing, resolved once");
        assert_eq!(batch[0].ends_at, "2024-01-15T10:30:20.000Z");
    }

    #[test]
    fn the_ledger_stays_within_its_capacity() {
        let mut ledger = Ledger::default();
        for i in 0..50 {
            ledger.apply(alert(&format!("f{i}"), AlertState::Firing, 0.0), 8);
            ledger.apply(alert(&format!("r{i}"), AlertState::Resolved, 0.0), 8);
        }
        assert_eq!(ledger.firing.len(), 8);
        assert_eq!(ledger.resolved.len(), 8);
    }
}
