//! A job as clients see it: its record, with progress and partial results derived from the
//! stored chunk results (never from a counter a retried task could bump twice). Shared by the
//! protocol commands and the HTTP API. Listings build it from a stored summary, never the spec.

use crate::backend::{
    short_summary, BackendError, JobRecord, JobStatus, JobSummary, Progress, ResultStore,
};
use crate::protocol::{JobView, PartialResults, ProgressView};

/// A job as clients see it, with progress from stored results.
pub async fn job_view(store: &dyn ResultStore, job: JobRecord) -> Result<JobView, BackendError> {
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
        redeliveries: None,
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
        partial_results: PartialResults {
            matches_found: matches,
        },
        progress_figure: crate::jobs::progress_figure(&job.kind),
        job_id: job.id,
        kind: job.kind,
        summary: job.summary,
        status: job.status,
        progress: ProgressView {
            total_chunks: total,
            processed_chunks: done_chunks,
            percentage,
        },
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
        priority: Some(job.priority),
        input: None,
    }
}

/// Why a job has no results to give, in words that say what to do: a cancelled or failed job
/// never will (it says so), a running one will when it completes. `what` names what was asked
/// for (`results`, `image`).
pub fn no_results_yet(id: &str, status: JobStatus, error: Option<&str>, what: &str) -> String {
    let are = if what.ends_with('s') { "are" } else { "is" };
    match status {
        JobStatus::Cancelled => format!(
            "job {id} was cancelled before it completed: it has no {what}, and never will \
             (submit it again to run it)"
        ),
        JobStatus::Failed => format!(
            "job {id} failed: {}; it has no {what} (`gridwatch status {id}` tells more)",
            error.unwrap_or("no reason recorded")
        ),
        JobStatus::Uploading => format!(
            "job {id} is still receiving its input; its {what} {are} ready when it completes \
             (`gridwatch status {id} --wait`)"
        ),
        _ => format!(
            "job {id} is {}; its {what} {are} ready when it completes (`gridwatch status {id} --wait`)",
            status.as_str()
        ),
    }
}
