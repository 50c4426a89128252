//! A completed job's result as its kind renders it: the small JSON summary `/jobs/{id}` shows
//! beside the job, and the image at `/jobs/{id}/image.png`. Kinds name these formats themselves
//! ([`Kind::summary_format`], [`Kind::image_format`]); rendering runs on a blocking thread, since
//! combining a large image's bands takes a while.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, HttpState};
use crate::backend::{JobRecord, JobStatus, Store};
use crate::jobs::{self, JobContext, Kind};
use crate::master::job_view;

/// `GET /jobs/{id}/image.png`: the job's image, for kinds that draw one.
pub async fn image(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.master.store.as_ref();
    let record = store
        .job(&id)
        .await?
        .ok_or_else(|| ApiError::NoSuchJob(id.clone()))?;
    let kind = jobs::kind(&record.kind);
    let Some((kind, format)) = kind.and_then(|k| Some((k, k.image_format()?))) else {
        return Err(ApiError::NotFound(format!(
            "job {id} is a {} job, which has no image",
            record.kind
        )));
    };
    if record.status != JobStatus::Completed {
        return Err(ApiError::NotReady(format!(
            "job {id} is {}; its image is ready when it completes",
            record.status.as_str()
        )));
    }
    let bytes = render(store, kind, record, format).await?;
    // A completed job's results never change.
    let headers = [
        (header::CONTENT_TYPE, "image/png"),
        (header::CACHE_CONTROL, "max-age=86400"),
    ];
    Ok((headers, bytes).into_response())
}

/// The summary of a completed job's result, for kinds that have one; `None` otherwise.
pub async fn summary(
    store: &dyn Store,
    record: &JobRecord,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(kind) = jobs::kind(&record.kind) else {
        return Ok(None);
    };
    let Some(format) = kind.summary_format() else {
        return Ok(None);
    };
    if record.status != JobStatus::Completed {
        return Ok(None);
    }
    let bytes = render(store, kind, record.clone(), format).await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::Corrupt(format!("job {}: {e}", record.id)))
}

/// Renders a completed job's stored results in `format`.
pub(super) async fn render(
    store: &dyn Store,
    kind: &'static dyn Kind,
    record: JobRecord,
    format: &'static str,
) -> Result<Vec<u8>, ApiError> {
    let results = store.chunk_results(&record.id).await?;
    let spec = record.spec.clone();
    let id = record.id.clone();
    let context = JobContext::of_view(&job_view(store, record).await?);
    let rendered = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        kind.render(&context, &spec, &results, format, &mut out)
            .map(|()| out)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::Corrupt(format!("job {id}: rendering failed: {e}")))?;
    rendered.map_err(|e| ApiError::Corrupt(format!("job {id}: {e}")))
}
