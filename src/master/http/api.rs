//! The JSON read API: `/health`, `/jobs`, `/jobs/{id}`, `/workers`, `/alerts`, `/stats`.
//! Shapes follow the CLI's `--json` output, so a script can use either.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, HttpState};
use crate::jobs::records::TaskRecord;
use crate::master::views::{self as snapshot, GridStats};

/// Alerts `/alerts` returns when no `limit` is given.
const DEFAULT_ALERTS: usize = 50;
/// Jobs `/jobs` returns when no `limit` is given.
const DEFAULT_JOBS: usize = 100;
/// Largest `limit` honoured (the alert history holds 1000 events).
const MAX_LIMIT: usize = 1000;

/// `?limit=N`.
#[derive(Debug, Deserialize)]
pub struct Limit {
    /// At most this many items, newest first.
    pub limit: Option<usize>,
}

impl Limit {
    /// The limit asked for (capped), or `default`; a malformed query is a JSON 400.
    fn or(query: Result<Query<Limit>, QueryRejection>, default: usize) -> Result<usize, ApiError> {
        let Query(limit) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
        Ok(limit.limit.unwrap_or(default).min(MAX_LIMIT))
    }
}

/// `GET /health`: ok when the backend answers; 503 with the error when it does not.
pub async fn health(State(state): State<HttpState>) -> Response {
    let uptime_secs = state.started.elapsed().as_secs_f64();
    let probe = state.master.store.alerts(1).await;
    let (status, health, error) = match probe {
        Ok(_) => (StatusCode::OK, "ok", None),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(err.to_string()),
        ),
    };
    let body = json!({
        "status": health,
        "version": env!("CARGO_PKG_VERSION"),
        "backend": state.backend,
        "uptime_secs": uptime_secs,
        "error": error,
    });
    (status, Json(body)).into_response()
}

/// `GET /jobs?limit=N`: jobs newest first with progress, as `gridwatch jobs --json`.
pub async fn jobs(
    State(state): State<HttpState>,
    query: Result<Query<Limit>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = Limit::or(query, DEFAULT_JOBS)?;
    let store = state.master.store.as_ref();
    let jobs = snapshot::job_views(store, Some(limit)).await?;
    Ok(Json(json!({
        "jobs": jobs,
        "active_workers": state.master.workers.active(),
    })))
}

/// Tasks `/jobs/{id}` lists when no `limit` is given.
const DEFAULT_TASKS: u32 = 100;
/// Largest page of tasks `/jobs/{id}` lists.
const MAX_TASKS: u32 = 1000;

/// `?offset=N&limit=M`: a page of a job's tasks, by task index.
#[derive(Debug, Deserialize)]
pub struct TaskPage {
    /// The first task index of the page.
    pub offset: Option<u32>,
    /// Tasks in the page (capped at [`MAX_TASKS`]).
    pub limit: Option<u32>,
}

/// `GET /jobs/{id}?offset=N&limit=M`: one job with its progress and spec (patterns, records)
/// and, once completed, its kind's summary of the result (`result`; null for kinds without
/// one), and the record of each finished task among tasks `offset..offset+limit` (`tasks`; the
/// first 100 by default, 1000 at most, so a job of a million tasks is read a page at a time);
/// 404 if unknown.
pub async fn job(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    query: Result<Query<TaskPage>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(page) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(DEFAULT_TASKS).min(MAX_TASKS);
    let store = state.master.store.as_ref();
    let record = crate::master::jobs::find(&state.master, &id).await?;
    let spec = record.spec.clone();
    let formats = crate::jobs::kind(&record.kind).map_or(&[][..], |kind| kind.formats());
    let result = super::results::summary(&state, &record).await?;
    let tasks: Vec<TaskRecord> = store
        .result_headers_in(&id, offset..offset.saturating_add(limit))
        .await?
        .iter()
        .map(|h| TaskRecord::new(&id, h.chunk, &h.worker, record.priority, &h.run))
        .collect();
    let running = running_tasks(&state, &record, &tasks).await?;
    let view = crate::master::job_view(store, record).await?;
    Ok(Json(json!({
        "job": view,
        "spec": spec,
        "formats": formats,
        "result": result,
        "tasks": tasks,
        "running": running,
        "tasks_page": { "offset": offset, "limit": limit },
        "active_workers": state.master.workers.active(),
    })))
}

/// A command job's running tasks whose workers send their output (none for other kinds), by
/// chunk: each one's task number, worker, start and output sizes so far. A task whose record is
/// among `finished` is left out: it ended since its tail was read.
async fn running_tasks(
    state: &HttpState,
    record: &crate::backend::JobRecord,
    finished: &[TaskRecord],
) -> Result<Vec<serde_json::Value>, ApiError> {
    use crate::jobs::command::{CommandJobSpec, COMMAND_KIND};
    if record.kind != COMMAND_KIND || record.status.is_finished() {
        return Ok(Vec::new());
    }
    let Ok(spec) = serde_json::from_value::<CommandJobSpec>(record.spec.clone()) else {
        return Ok(Vec::new());
    };
    let live = state.master.queue.live_tasks(&record.id).await?;
    let done: std::collections::HashSet<u32> = finished.iter().map(|t| t.chunk).collect();
    Ok(live
        .into_iter()
        .filter(|task| !done.contains(&task.chunk))
        .map(|task| {
            json!({
                "chunk": task.chunk,
                "task": crate::master::task_output::task_number(&spec.tasks, task.chunk),
                "worker_id": task.worker,
                "started_at": task.started_at,
                "stdout_bytes": task.stdout.end(),
                "stderr_bytes": task.stderr.end(),
            })
        })
        .collect())
}

/// `GET /workers`: the collector's liveness view of every worker, and each worker leasing
/// without an agent, by id.
pub async fn workers(State(state): State<HttpState>) -> Result<Json<serde_json::Value>, ApiError> {
    let workers = snapshot::listed_workers(&state.master).await?;
    Ok(Json(json!({ "workers": workers })))
}

/// `GET /alerts?limit=N`: the alerts firing now (`firing`, one per alert) and the newest alert
/// events (`alerts`), newest first.
pub async fn alerts(
    State(state): State<HttpState>,
    query: Result<Query<Limit>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = Limit::or(query, DEFAULT_ALERTS)?;
    let alerts = snapshot::shown_alerts(&state.master, limit).await?;
    let firing = snapshot::firing_now(&state.master).await?;
    Ok(Json(json!({ "firing": firing, "alerts": alerts })))
}

/// `GET /stats`: jobs by status, chunks done / total, matches, workers, firing alerts.
pub async fn stats(State(state): State<HttpState>) -> Result<Json<GridStats>, ApiError> {
    Ok(Json(snapshot::gather(&state.master).await?.stats))
}
