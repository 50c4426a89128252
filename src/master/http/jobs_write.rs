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

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{json_error, ApiError, HttpState};
use crate::backend::JobStatus;
use crate::jobs::{self, batch};
use crate::master::jobs as service;

/// A lone task object is a batch of one. Only the top-level keys are read to tell, and the
/// object is wrapped as text, so a large body is never held as a JSON tree.
fn as_batch_text(body: Bytes) -> Bytes {
    type TopLevel = std::collections::HashMap<String, serde::de::IgnoredAny>;
    match serde_json::from_slice::<TopLevel>(&body) {
        Ok(keys) if !keys.contains_key("tasks") => {
            let mut wrapped = Vec::with_capacity(body.len() + 12);
            wrapped.extend_from_slice(b"{\"tasks\":[");
            wrapped.extend_from_slice(&body);
            wrapped.extend_from_slice(b"]}");
            Bytes::from(wrapped)
        }
        _ => body,
    }
}

/// A body over the master's batch size limit.
fn too_large(size: u64, limit: u64) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body of {size} bytes or more is over the batch limit of {limit} bytes: split the batch, or raise the master's --max-batch-file"),
    )
}

/// Reads the body, refusing one over `--max-batch-file` before reading it when it announces its
/// length, and as soon as it passes the limit otherwise.
async fn read_body(request: Request, limit: u64) -> Result<Bytes, Response> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if let Some(size) = announced.filter(|size| *size > limit) {
        return Err(too_large(size, limit));
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(request.into_body(), cap)
        .await
        .map_err(|err| {
            let too_big = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_big {
                too_large(limit.saturating_add(1), limit)
            } else {
                json_error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                )
            }
        })
}

/// `POST /jobs`: creates the jobs of a batch (or one task); 201 with what became of each. The
/// jobs and their tasks count against the client address's rate limits.
pub async fn submit(State(state): State<HttpState>, request: Request) -> Response {
    // Without the peer's address (a server not started with it) every HTTP client shares one
    // budget, which errs on the side of refusing.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "http".to_string(), |info| info.0.ip().to_string());
    let config = &state.master.config;
    let body = match read_body(request, config.max_batch_file).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let parsed = match batch::parse_limited(&as_batch_text(body), config.max_batch_tasks) {
        Ok(parsed) => parsed,
        Err(err) => return json_error(StatusCode::BAD_REQUEST, format!("request body: {err}")),
    };
    let created = match service::jobs_without_upload(
        parsed,
        "submit them with `gridwatch submit` or `gridwatch load`",
    ) {
        Ok(jobs) => service::create_batch(&state.master, "http", jobs, Some(&client)).await,
        Err(err) => Err(err),
    };
    match created {
        Ok(jobs) => (
            StatusCode::CREATED,
            Json(json!({ "jobs": jobs, "active_workers": state.master.active_workers().await })),
        )
            .into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// `DELETE /jobs/{id}`: cancels the job.
pub async fn remove(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match service::cancel(&state.master, &id).await {
        Ok(removed) => Json(json!({
            "job_id": id,
            "status": JobStatus::Cancelled,
            "removed_tasks": removed,
        }))
        .into_response(),
        Err(err) => ApiError::from(err).into_response(),
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
    let record = service::find(&state.master, &id).await?;
    let kind = jobs::kind(&record.kind)
        .ok_or_else(|| ApiError::Corrupt(format!("job {id} has unknown kind {}", record.kind)))?;
    let formats = kind.formats();
    let format = match query.format.as_deref() {
        None => formats
            .first()
            .copied()
            .ok_or_else(|| ApiError::NotFound(format!("a {} job has no results", record.kind)))?,
        Some(asked) => kind.format_named(asked).ok_or_else(|| {
            ApiError::BadQuery(format!(
                "format {asked:?}: a {} job's results come as {}",
                record.kind,
                formats.join(", ")
            ))
        })?,
    };
    let record = service::results_readable(&state.master, record, "results").await?;
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
