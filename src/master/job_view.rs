//! A job as clients see it: its record, with progress and partial results derived from the
//! stored chunk results (never from a counter a retried task could bump twice). Shared by the
//! protocol commands and the HTTP API.

use crate::backend::{BackendError, JobRecord, Store};
use crate::protocol::{JobView, PartialResults, ProgressView};

/// A job as clients see it, with progress from stored results.
pub async fn job_view(store: &dyn Store, job: JobRecord) -> Result<JobView, BackendError> {
    let progress = store.progress(&job.id).await?;
    let total = job.total_chunks.max(progress.total_chunks);
    let percentage = if total == 0 {
        0.0
    } else {
        (progress.done_chunks as f64 * 100.0 / total as f64).min(100.0)
    };
    let meta = crate::jobs::batch::JobMeta::of(&job.spec);
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
        priority: meta.map(|meta| meta.priority),
    })
}
