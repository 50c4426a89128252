//! `GET /stats/performance` and `GET /workers/{id}`: per worker, tasks completed and the mean
//! and 95th percentile of task times per job kind (from the store's task times), and for one
//! worker its liveness view beside them.

use crate::master::views;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::json;

use super::{ApiError, HttpState};
use crate::backend::performance::performance;

/// `GET /stats/performance`: every worker that completed a task, by id.
pub async fn all(State(state): State<HttpState>) -> Result<Json<serde_json::Value>, ApiError> {
    let times = state.master.store.task_times().await?;
    Ok(Json(json!({ "workers": performance(&times) })))
}

/// `GET /workers/{id}`: the worker's liveness view (null if no agent reports it) and its task
/// performance (null if it completed no task); 404 when neither is known.
pub async fn one(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.master.store.as_ref();
    let liveness = views::worker_views(store)
        .await?
        .into_iter()
        .find(|view| view.worker_id == id);
    let times = store.task_times().await?;
    let perf = performance(&times)
        .into_iter()
        .find(|worker| worker.worker_id == id);
    if liveness.is_none() && perf.is_none() {
        return Err(ApiError::NotFound(format!(
            "no worker with id {id:?}: no agent reports it and it completed no task"
        )));
    }
    Ok(Json(json!({
        "worker_id": id,
        "liveness": liveness,
        "performance": perf,
    })))
}
