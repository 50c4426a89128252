//! The HTTP API's writes: `POST /jobs` (a batch file's text — seed-style JSON with `tasks`, a
//! single task object, or CSV — one job per task, for the kinds that upload nothing) and
//! `DELETE /jobs/{id}` (cancel); and `GET /jobs/{id}/results?format=F`, a completed job's results
//! in one of its kind's formats.
//!
//! Writes pass the write gate first (same origin, and the cluster token as
//! `Authorization: Bearer TOKEN` when the master has one). A master without a token accepts
//! writes from anyone who can reach it, exactly as its protocol port does: it refuses to start
//! without a token on a non-loopback address unless `--insecure`, so that is this machine's
//! users only.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{json_error, ApiError, HttpState};
use crate::backend::JobStatus;
use crate::jobs::{self, batch};
use crate::master::cmd::{
    batch::{create_batch, jobs_without_upload},
    cancel::cancel,
    HandlerError,
};
use crate::protocol::ErrorCode;

/// A refusal from the shared request handlers, as an HTTP status and message.
fn handler_error(err: HandlerError) -> Response {
    let (code, message, _) = err.into_reply();
    let status = match code {
        ErrorCode::NoSuchJob => StatusCode::NOT_FOUND,
        ErrorCode::JobNotReady => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Internal | ErrorCode::Busy => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    json_error(status, message)
}

/// A lone task object is a batch of one.
fn as_batch_text(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(task)) if !task.contains_key("tasks") => {
            json!({ "tasks": [task] }).to_string().into_bytes()
        }
        _ => body.to_vec(),
    }
}

/// `POST /jobs`: creates the jobs of a batch (or one task); 201 with what became of each.
pub async fn submit(State(state): State<HttpState>, body: Bytes) -> Response {
    let parsed = match batch::parse(&as_batch_text(&body)) {
        Ok(parsed) => parsed,
        Err(err) => return json_error(StatusCode::BAD_REQUEST, format!("request body: {err}")),
    };
    let jobs = match jobs_without_upload(
        parsed,
        "submit them with `gridwatch submit` or `gridwatch load`",
    ) {
        Ok(jobs) => jobs,
        Err(reason) => return json_error(StatusCode::BAD_REQUEST, reason),
    };
    match create_batch(&state.master, "http", jobs).await {
        Ok(jobs) => (
            StatusCode::CREATED,
            Json(json!({ "jobs": jobs, "active_workers": state.master.workers.active() })),
        )
            .into_response(),
        Err(err) => handler_error(err),
    }
}

/// `DELETE /jobs/{id}`: cancels the job.
pub async fn remove(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match cancel(&state.master, &id).await {
        Ok(removed) => Json(json!({
            "job_id": id,
            "status": JobStatus::Cancelled,
            "removed_tasks": removed,
        }))
        .into_response(),
        Err(err) => handler_error(err),
    }
}

/// `?format=F`.
#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    format: Option<String>,
}

/// `GET /jobs/{id}/results?format=F`: a completed job's results in one of its kind's formats
/// (its default without `format`).
pub async fn results(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    Query(query): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let store = state.master.store.as_ref();
    let record = store
        .job(&id)
        .await?
        .ok_or_else(|| ApiError::NoSuchJob(id.clone()))?;
    let kind = jobs::kind(&record.kind)
        .ok_or_else(|| ApiError::Corrupt(format!("job {id} has unknown kind {}", record.kind)))?;
    let formats = kind.formats();
    let format = match query.format.as_deref() {
        None => formats
            .first()
            .copied()
            .ok_or_else(|| ApiError::NotFound(format!("a {} job has no results", record.kind)))?,
        Some(asked) => formats
            .iter()
            .copied()
            .find(|f| *f == asked)
            .ok_or_else(|| {
                ApiError::BadQuery(format!(
                    "format {asked:?}: a {} job's results come as {}",
                    record.kind,
                    formats.join(", ")
                ))
            })?,
    };
    if record.status != JobStatus::Completed {
        return Err(ApiError::NotReady(format!(
            "job {id} is {}; its results are ready when it completes",
            record.status.as_str()
        )));
    }
    let content_type = if kind.image_format() == Some(format) {
        "image/png"
    } else if format == "json" {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let body = super::results::respond(&state, kind, record, format).await?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
