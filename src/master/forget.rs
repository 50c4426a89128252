//! Forgetting a worker: an operator drops a dead or inactive worker from the views (`gridwatch
//! workers --forget ID`, `POST /workers/ID/forget`). Its stored view is removed, and a collector
//! that still reports it as inactive is ignored until the worker comes back to life.

use std::collections::HashSet;
use std::sync::Mutex;

use thiserror::Error;

use super::MasterState;
use crate::backend::BackendError;
use crate::protocol::{LivenessState, WorkerStatus, WorkerView};

/// Workers an operator forgot, hidden while they stay dead.
#[derive(Default)]
pub struct Forgotten {
    ids: Mutex<HashSet<String>>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a view of a forgotten worker is to be dropped (it is still dead); a forgotten
    /// worker seen alive again is remembered once more.
    pub fn hides(&self, view: &WorkerView) -> bool {
        let mut ids = self.lock();
        if !ids.contains(&view.worker_id) {
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
    let views = crate::master::http::worker_views(state.store.as_ref()).await?;
    let Some(view) = views.into_iter().find(|view| view.worker_id == worker) else {
        return Err(ForgetError::Unknown(worker.to_string()));
    };
    if !is_dead(&view) || state.workers.is_connected(worker) {
        let state_word = match view.state {
            LivenessState::Active => "active",
            LivenessState::Unstable => "unstable",
            LivenessState::Inactive => "inactive but still connected to the master",
        };
        return Err(ForgetError::Alive {
            worker: worker.to_string(),
            state: format!("{state_word} (status {})", view.status.as_str()),
        });
    }
    state.forgotten.lock().insert(worker.to_string());
    state.store.forget_worker_metrics(worker).await?;
    state.workers.forget(worker);
    tracing::info!(component = "master", worker, "worker forgotten");
    Ok(())
}
