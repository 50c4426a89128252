//! One log line per job end (completed, failed, cancelled) with its outcome, duration, tasks and
//! retries, and the job-duration histogram. A job finishes inside the backend (its last result
//! stored, its last attempt failed, a cancel), possibly without passing through this master (Redis
//! workers), so the master notices ends by reading job summaries rather than at one call site.
//! Where the store keeps marks of logged ends (Redis), each end is logged once across master
//! restarts, also one that happened while no master ran; elsewhere jobs already finished when
//! the master starts are not logged. A command job's end also counts how its stored tasks ended
//! and their run times, read from their task records: on Redis the workers store results
//! without the master, so the store is the one place that sees every task on both backends.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use super::MasterState;
use crate::backend::{BackendError, JobStatus, JobSummary};
use crate::jobs::command::{RecordedEnding, COMMAND_KIND};

/// How often job states are read.
const POLL: Duration = Duration::from_millis(500);
/// Newest jobs looked at each time; a job ends long before this many newer jobs arrive.
const WINDOW: usize = 500;

/// Logs job ends until `shutdown` completes.
pub async fn run(state: std::sync::Arc<MasterState>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut logged: Option<HashSet<String>> = None;
    loop {
        if let Err(err) = log_new_ends(&state, &mut logged).await {
            tracing::debug!(component = "master", error = %err, "reading jobs for the job log failed")
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut shutdown => return,
        }
    }
}

/// One look at the newest jobs: logs each end not logged yet. `logged` holds the finished jobs
/// already dealt with (`None` before the first look).
async fn log_new_ends(
    state: &MasterState,
    logged: &mut Option<HashSet<String>>,
) -> Result<(), BackendError> {
    let jobs = state.store.job_summaries(WINDOW).await?;
    let first_look = logged.is_none();
    let seen = logged.get_or_insert_with(HashSet::new);
    let ended: Vec<&JobSummary> = jobs
        .iter()
        .filter(|job| job.status.is_finished() && !seen.contains(&job.id))
        .collect();
    if !ended.is_empty() {
        let ids: Vec<String> = ended.iter().map(|job| job.id.clone()).collect();
        let fresh = match state.store.mark_ends_logged(&ids).await? {
            Some(fresh) => fresh,
            // No marks: what had ended before this master started was logged by the last one.
            None => vec![!first_look; ended.len()],
        };
        for (job, fresh) in ended.into_iter().zip(fresh) {
            if fresh {
                log_end(state, job);
                if job.kind == COMMAND_KIND {
                    count_command_tasks(state, &job.id).await;
                }
            }
            seen.insert(job.id.clone());
        }
    }
    // Only ids still in the window need remembering.
    let current: HashSet<&str> = jobs.iter().map(|job| job.id.as_str()).collect();
    seen.retain(|id| current.contains(id.as_str()));
    Ok(())
}

/// Counts how the stored tasks of command job `job` ended, from their task records.
async fn count_command_tasks(state: &MasterState, job: &str) {
    let headers = match state.store.result_headers(job).await {
        Ok(headers) => headers,
        Err(err) => {
            tracing::warn!(component = "master", job, error = %err, "reading a command job's task records for the metrics failed");
            return;
        }
    };
    let endings: Vec<(&'static str, Option<f64>)> = headers
        .iter()
        .filter_map(|header| {
            let ending = RecordedEnding::from_figures(&header.run.metrics)?;
            Some((ending.outcome_class(), header.run.elapsed_secs))
        })
        .collect();
    state.ops.command_tasks_ended(&endings);
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
    // The master counts the deliveries it handed out; the backend, where it counts them, also
    // those workers took from it directly.
    let retries = state
        .ops
        .job_finished(&job.id, outcome, duration_seconds)
        .max(job.redeliveries.unwrap_or(0));
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
