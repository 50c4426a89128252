//! `query_status`: a job's state and progress, derived from stored results (seed 000 §4.2).

use super::{Conn, HandlerError};
use crate::backend::{BackendError, JobRecord, JobSummary, Progress, Store};
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
    let mut progress = store.progress(&job.id).await?;
    progress.total_chunks = progress.total_chunks.max(job.total_chunks);
    let summary = if job.summary.is_empty() {
        // Jobs stored before summaries were.
        crate::jobs::kind(&job.kind)
            .map(|kind| crate::backend::short_summary(&kind.summary(&job.spec)))
            .unwrap_or_default()
    } else {
        job.summary
    };
    Ok(summary_view(JobSummary {
        id: job.id,
        kind: job.kind,
        summary,
        status: job.status,
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
        progress,
    }))
}

/// A listed job as clients see it.
pub fn summary_view(job: JobSummary) -> JobView {
    let Progress {
        total_chunks: total,
        done_chunks,
        matches,
    } = job.progress;
    let percentage = if total == 0 {
        0.0
    } else {
        (done_chunks as f64 * 100.0 / total as f64).min(100.0)
    };
    JobView {
        job_id: job.id,
        kind: job.kind,
        summary: job.summary,
        status: job.status,
        progress: ProgressView {
            total_chunks: total,
            processed_chunks: done_chunks,
            percentage,
        },
        partial_results: PartialResults {
            matches_found: matches,
        },
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
    }
}
