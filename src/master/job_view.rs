//! A job as clients see it: its record, with progress and partial results derived from the
//! stored chunk results (never from a counter a retried task could bump twice). Shared by the
//! protocol commands and the HTTP API. Listings build it from a stored summary, never the spec.

use crate::backend::{short_summary, BackendError, JobRecord, JobSummary, Progress, Store};
use crate::protocol::{JobView, PartialResults, ProgressView};

/// A job as clients see it, with progress from stored results.
pub async fn job_view(store: &dyn Store, job: JobRecord) -> Result<JobView, BackendError> {
    let mut progress = store.progress(&job.id).await?;
    progress.total_chunks = progress.total_chunks.max(job.total_chunks);
    let summary = if job.summary.is_empty() {
        // Jobs stored before summaries were.
        crate::jobs::kind(&job.kind)
            .map(|kind| short_summary(&kind.summary(&job.spec)))
            .unwrap_or_default()
    } else {
        job.summary
    };
    Ok(summary_view(JobSummary {
        id: job.id,
        kind: job.kind,
        summary,
        priority: job.priority,
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
        priority: Some(job.priority),
        input: None,
    }
}
