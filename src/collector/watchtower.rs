//! The collector's state and decisions, without sockets: each report updates the worker's
//! liveness and runs the rules; each alert event goes to the alert log and downstream (the store's
//! alert history, and `worker_down` to the master for a dead worker). A periodic tick runs the
//! rules for silent workers too and refreshes every worker's view downstream.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::alert::AlertLog;
use super::clock::Moment;
use super::delivery::Delivery;
use super::flapping::{FlapDamper, FlapSettings};
use super::liveness::Liveness;
use super::rules::{Observation, RuleEngine, Thresholds};
use crate::protocol::{Alert, AlertState, Severity, WorkerReport, WorkerView};

/// Something for the master or the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    /// A worker is dead or presumed dead: reclaim its tasks now.
    WorkerDown {
        /// The worker.
        worker_id: String,
        /// Unix time of the alert.
        timestamp: f64,
        /// The task it was running, as last reported.
        last_task_id: Option<String>,
        /// The alert's message.
        reason: String,
    },
    /// An alert event for the store's alert history.
    Alert(Alert),
    /// A worker's current view for the store (`worker:{id}:metrics`).
    Worker(Box<WorkerView>),
}

/// The verdict sent back to an agent with its report's ack.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseVerdict {
    /// Stop leasing new tasks.
    pub pause: bool,
    /// Which warning is firing.
    pub reason: Option<String>,
}

/// Everything the collector knows and decides.
#[derive(Debug)]
pub struct Watchtower {
    rules: RuleEngine,
    liveness: Liveness,
    log: AlertLog,
    downstream: UnboundedSender<Outgoing>,
    recent: std::collections::VecDeque<Alert>,
    damper: FlapDamper,
    delivery: Delivery,
}

/// Alert events kept in memory for `alerts` queries answered by the collector itself.
const RECENT_ALERTS: usize = 200;

impl Watchtower {
    /// A watchtower with the given thresholds, writing alerts to `log` and sending downstream,
    /// damping workers that flap as `flapping` says.
    pub fn new(
        thresholds: Thresholds,
        flapping: FlapSettings,
        log: AlertLog,
        downstream: UnboundedSender<Outgoing>,
    ) -> Watchtower {
        Watchtower {
            liveness: Liveness::new(thresholds.heartbeat_misses),
            rules: RuleEngine::new(thresholds),
            log,
            downstream,
            recent: std::collections::VecDeque::new(),
            damper: FlapDamper::new(flapping),
            delivery: Delivery::default(),
        }
    }

    /// Also hands every alert event to `delivery` (Alertmanager, webhooks), without waiting.
    pub fn deliver_to(&mut self, delivery: Delivery) {
        self.delivery = delivery;
    }

    /// Takes over alerts a previous collector left firing (from the alert log). Each stays
    /// firing, without a second `worker_down`, until its worker's next report or heartbeat shows
    /// whether its condition still holds; if not, it is resolved under its own id. Returns how
    /// many were taken over.
    pub fn reconcile(&mut self, firing: &[Alert], now: Moment) -> usize {
        firing
            .iter()
            .filter(|alert| self.rules.adopt(alert, now))
            .count()
    }

    /// Takes back the workers a previous collector knew (the views it stored), as if each had
    /// been heard at `started`: one whose agent is not heard within the host-loss window from
    /// then is lost like any other (alert, `worker_down`, its tasks re-queued), whatever order
    /// things failed in while no collector watched. Workers already heard from are left as they
    /// are. Each one taken back is republished at once, so no view goes on showing it active.
    /// Returns how many were taken back.
    pub fn remember(&mut self, views: Vec<WorkerView>, started: Moment, now: Moment) -> usize {
        let mut remembered = 0;
        for view in views {
            let worker = view.worker_id.clone();
            if self.liveness.remember(view, started) {
                remembered += 1;
                self.evaluate(&worker, now);
                self.publish(&worker, now);
            }
        }
        remembered
    }

    /// Takes a report received at `now`; returns the lease verdict for its agent.
    pub fn on_report(&mut self, report: WorkerReport, now: Moment) -> LeaseVerdict {
        let worker = report.worker_id.clone();
        self.liveness.record(report, now);
        self.evaluate(&worker, now);
        self.publish(&worker, now);
        self.verdict(&worker)
    }

    /// Takes a heartbeat from the agent of `worker` (beating every `interval`) received at
    /// `now`; returns the lease verdict. A beat that ends a loss republishes the view at once.
    pub fn on_beat(&mut self, worker: &str, interval: Duration, now: Moment) -> LeaseVerdict {
        if self.liveness.record_beat(worker, interval, now) && self.evaluate(worker, now) {
            self.publish(worker, now);
        }
        self.verdict(worker)
    }

    /// Runs the rules for every worker (catches silence) and, with `refresh`, republishes every
    /// worker's view so its store entry does not expire while the collector watches it. A worker
    /// whose alerts changed is republished at once, so `workers` shows a lost host as such.
    pub fn tick(&mut self, now: Moment, refresh: bool) {
        for alert in self.damper.settle(now) {
            let last_task = self.last_task(&alert.worker_id);
            self.emit(alert, last_task);
        }
        for worker in self.liveness.worker_ids() {
            let changed = self.evaluate(&worker, now);
            if refresh || changed {
                self.publish(&worker, now);
            }
        }
    }

    /// The lease verdict for a worker.
    pub fn verdict(&self, worker: &str) -> LeaseVerdict {
        let pause = self.rules.should_pause_leasing(worker);
        let reason = pause.then(|| {
            self.rules
                .active()
                .into_iter()
                .filter(|a| a.worker_id == worker && a.severity == Severity::Warning)
                .filter(|a| a.state == AlertState::Firing)
                .map(|a| a.rule)
                .collect::<Vec<_>>()
                .join(", ")
        });
        LeaseVerdict { pause, reason }
    }

    /// Every worker's view at `now`.
    pub fn views(&self, now: Moment) -> Vec<WorkerView> {
        self.liveness
            .worker_ids()
            .iter()
            .filter_map(|w| self.view(w, now))
            .collect()
    }

    /// The most recent alert events, newest first.
    pub fn recent_alerts(&self, limit: usize) -> Vec<Alert> {
        self.recent.iter().rev().take(limit).cloned().collect()
    }

    /// Runs the rules for one worker; whether any alert fired or resolved.
    fn evaluate(&mut self, worker: &str, now: Moment) -> bool {
        let events = match self.liveness.latest(worker) {
            Some(heard) => self.rules.evaluate(
                Observation {
                    report: heard.report,
                    received_at: heard.report_at,
                    heard_at: heard.heard_at,
                    beat_interval: heard.beat_interval,
                },
                now,
            ),
            None => return false,
        };
        let last_task = self.last_task(worker);
        let changed = !events.is_empty();
        for event in events {
            for alert in self.damper.pass(event, now) {
                self.emit(alert, last_task.clone());
            }
        }
        changed
    }

    /// The task `worker` last reported running.
    fn last_task(&self, worker: &str) -> Option<String> {
        self.liveness
            .latest(worker)
            .and_then(|heard| heard.report.current_task.clone())
    }

    fn emit(&mut self, alert: Alert, last_task_id: Option<String>) {
        match (alert.severity, alert.state) {
            (Severity::Critical, AlertState::Firing) => tracing::error!(
                alert = %alert.id, worker = %alert.worker_id, "CRITICAL: {}", alert.message),
            (Severity::Warning, AlertState::Firing) => tracing::warn!(
                alert = %alert.id, worker = %alert.worker_id, "WARNING: {}", alert.message),
            _ => tracing::info!(alert = %alert.id, worker = %alert.worker_id, "{}", alert.message),
        }
        if let Err(err) = self.log.append(&alert) {
            tracing::error!(path = %self.log.path().display(), error = %err, "cannot write the alert log");
        }
        if alert.means_worker_down() {
            let _ = self.downstream.send(Outgoing::WorkerDown {
                worker_id: alert.worker_id.clone(),
                timestamp: alert.timestamp,
                last_task_id,
                reason: alert.message.clone(),
            });
        }
        if self.recent.len() == RECENT_ALERTS {
            self.recent.pop_front();
        }
        self.recent.push_back(alert.clone());
        self.delivery.offer(&alert);
        let _ = self.downstream.send(Outgoing::Alert(alert));
    }

    fn publish(&self, worker: &str, now: Moment) {
        if let Some(view) = self.view(worker, now) {
            let _ = self.downstream.send(Outgoing::Worker(Box::new(view)));
        }
    }

    /// A worker's liveness view with its lease verdict and the reason for a pause.
    fn view(&self, worker: &str, now: Moment) -> Option<WorkerView> {
        let verdict = self.verdict(worker);
        let mut view = self.liveness.view(worker, now, verdict.pause)?;
        view.pause_reason = verdict.reason;
        Some(view)
    }
}

/// How long a worker's stored view lives without a refresh: the 60 s TTL keeps a dead worker's
/// view visible for a minute, then it disappears from `gridwatch workers`.
pub const WORKER_VIEW_TTL: Duration = Duration::from_secs(60);
