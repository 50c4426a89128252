//! One log line per job end (completed, failed, cancelled) with its outcome, duration, tasks and
//! retries, and the job-duration histogram. A job finishes inside the backend (its last result
//! stored, its last attempt failed, a cancel), possibly without passing through this master (Redis
//! workers), so the master notices ends by reading job summaries rather than at one call site.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use super::MasterState;
use crate::backend::{JobStatus, JobSummary};

/// How often job states are read.
const POLL: Duration = Duration::from_millis(500);
/// Newest jobs looked at each time; a job ends long before this many newer jobs arrive.
const WINDOW: usize = 500;

/// Logs job ends until `shutdown` completes. Jobs already finished at the start are not logged.
pub async fn run(state: std::sync::Arc<MasterState>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut finished: Option<HashSet<String>> = None;
    loop {
        match state.store.job_summaries(WINDOW).await {
            Ok(jobs) => {
                let seen = finished.get_or_insert_with(|| {
                    jobs.iter()
                        .filter(|job| job.status.is_finished())
                        .map(|job| job.id.clone())
                        .collect()
                });
                for job in jobs.iter().filter(|job| job.status.is_finished()) {
                    if seen.insert(job.id.clone()) {
                        log_end(&state, job);
                    }
                }
                // Only ids still in the window need remembering.
                let current: HashSet<&str> = jobs.iter().map(|job| job.id.as_str()).collect();
                seen.retain(|id| current.contains(id.as_str()));
            }
            Err(err) => {
                tracing::debug!(component = "master", error = %err, "reading jobs for the job log failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut shutdown => return,
        }
    }
}

fn outcome(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        _ => "cancelled",
    }
}

fn log_end(state: &MasterState, job: &JobSummary) {
    let outcome = outcome(job.status);
    let duration_seconds = job
        .finished_at
        .map(|end| (end - job.created_at).max(0.0))
        .unwrap_or(0.0);
    let retries = state.ops.job_finished(&job.id, outcome, duration_seconds);
    let error = job.error.as_deref().unwrap_or("");
    tracing::info!(
        component = "master",
        job = %job.id,
        kind = %job.kind,
        outcome,
        duration_seconds,
        tasks = job.progress.total_chunks,
        tasks_done = job.progress.done_chunks,
        retries,
        error,
        "job finished"
    );
}
