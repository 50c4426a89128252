//! Forgetting a worker: an operator drops a dead or inactive worker from the views (`gridwatch
//! workers --forget ID`, `POST /workers/ID/forget`). Its stored view is removed, its firing
//! alerts are resolved, and a collector that still reports it as inactive (or fires its alerts
//! again, after a restart) is ignored until the worker comes back to life.

use std::collections::HashMap;
use std::sync::Mutex;

use thiserror::Error;

use super::MasterState;
use crate::backend::BackendError;
use crate::protocol::{Alert, AlertState, LivenessState, WorkerStatus, WorkerView};

/// Workers an operator forgot, with the Unix time they were forgotten, hidden while they stay
/// dead.
#[derive(Default)]
pub struct Forgotten {
    ids: Mutex<HashMap<String, f64>>,
}

/// Why a worker was not forgotten.
#[derive(Debug, Error)]
pub enum ForgetError {
    /// No worker with that id is known.
    #[error("no worker {0:?} is known (list them with `gridwatch workers`)")]
    Unknown(String),
    /// The worker is alive.
    #[error("worker {worker:?} is {state}: only a dead or inactive worker can be forgotten; stop it first")]
    Alive {
        /// The worker.
        worker: String,
        /// What it is doing, in words.
        state: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Forgotten {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an alert event is about a forgotten worker and fired after it was forgotten (a
    /// restarted collector judging it again): such an event is neither stored nor shown.
    pub fn silences(&self, alert: &Alert) -> bool {
        alert.state == AlertState::Firing
            && self
                .lock()
                .get(&alert.worker_id)
                .is_some_and(|&forgotten_at| alert.timestamp >= forgotten_at)
    }

    /// Whether `worker` is forgotten (and not seen alive since).
    pub fn contains(&self, worker: &str) -> bool {
        self.lock().contains_key(worker)
    }

    /// Whether a view of a forgotten worker is to be dropped (it is still dead); a forgotten
    /// worker seen alive again is remembered once more.
    pub fn hides(&self, view: &WorkerView) -> bool {
        let mut ids = self.lock();
        if !ids.contains_key(&view.worker_id) {
            return false;
        }
        if is_dead(view) {
            return true;
        }
        ids.remove(&view.worker_id);
        false
    }

    /// `views` without the forgotten workers that stay dead.
    pub fn filter(&self, views: Vec<WorkerView>) -> Vec<WorkerView> {
        views.into_iter().filter(|view| !self.hides(view)).collect()
    }
}

/// Dead (its agent says so) or inactive (no longer reporting).
fn is_dead(view: &WorkerView) -> bool {
    view.state == LivenessState::Inactive || view.status == WorkerStatus::Dead
}

/// Forgets `worker`, refusing a live one.
pub async fn forget(state: &MasterState, worker: &str) -> Result<(), ForgetError> {
    let views = crate::master::views::listed_workers(state).await?;
    let Some(view) = views.into_iter().find(|view| view.worker_id == worker) else {
        return Err(ForgetError::Unknown(worker.to_string()));
    };
    if !is_dead(&view) || state.workers.is_connected(worker) {
        let state_word = match view.state {
            LivenessState::Active => "active",
            LivenessState::Unstable => "unstable",
            LivenessState::Inactive => "inactive but still connected to the master",
            LivenessState::NoAgent => "leasing without an agent",
        };
        return Err(ForgetError::Alive {
            worker: worker.to_string(),
            state: format!("{state_word} (status {})", view.status.as_str()),
        });
    }
    let now = crate::time::unix_now();
    state.forgotten.lock().insert(worker.to_string(), now);
    state.store.forget_worker_metrics(worker).await?;
    state.workers.forget(worker);
    let resolved = resolve_alerts(state, worker, now).await?;
    tracing::info!(component = "master", worker, resolved, "worker forgotten");
    Ok(())
}

/// Records a resolved event for each alert of `worker` still firing, so the views, the
/// `gridwatch_alerts_firing` gauge and the dashboard stop counting it; returns how many.
async fn resolve_alerts(state: &MasterState, worker: &str, now: f64) -> Result<usize, ForgetError> {
    let store = state.store.as_ref();
    let events =
        crate::master::views::alert_events(store, crate::master::views::ALERT_HISTORY).await?;
    let firing: Vec<Alert> = crate::master::views::firing(&events)
        .into_iter()
        .filter(|alert| alert.worker_id == worker)
        .cloned()
        .collect();
    for alert in &firing {
        let resolved = Alert {
            state: AlertState::Resolved,
            message: format!("{} (resolved: the worker was forgotten)", alert.message),
            timestamp: now,
            ..alert.clone()
        };
        let value =
            serde_json::to_value(&resolved).map_err(|e| BackendError::Other(e.to_string()))?;
        store.push_alert(&value).await?;
    }
    Ok(firing.len())
}
