//! `query_status`: a job's state and progress, derived from stored results (seed 000 §4.2).

use super::{Conn, HandlerError};
use crate::backend::{BackendError, JobRecord, Store};
use crate::master::MasterState;
use crate::protocol::{JobView, Message, PartialResults, ProgressView};

/// Answers `query_status`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let job = find_job(state, job_id).await?;
    let view = job_view(state.store.as_ref(), job).await?;
    conn.write_message(&Message::JobStatus {
        job: view,
        active_workers: state.workers.active(),
    })
    .await?;
    Ok(())
}

/// Fetches a job or fails with `no_such_job`.
pub async fn find_job(state: &MasterState, job_id: &str) -> Result<JobRecord, HandlerError> {
    state
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| HandlerError::Backend(BackendError::NoSuchJob(job_id.to_string())))
}

/// A job as clients see it, with progress from stored results.
pub async fn job_view(store: &dyn Store, job: JobRecord) -> Result<JobView, BackendError> {
    let progress = store.progress(&job.id).await?;
    let total = job.total_chunks.max(progress.total_chunks);
    let percentage = if total == 0 {
        0.0
    } else {
        (progress.done_chunks as f64 * 100.0 / total as f64).min(100.0)
    };
    let summary = crate::jobs::kind(&job.kind)
        .map(|kind| kind.summary(&job.spec))
        .unwrap_or_default();
    Ok(JobView {
        job_id: job.id,
        kind: job.kind,
        summary,
        status: job.status,
        progress: ProgressView {
            total_chunks: total,
            processed_chunks: progress.done_chunks,
            percentage,
        },
        partial_results: PartialResults {
            matches_found: progress.matches,
        },
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
    })
}
