//! `purge_queue`: cancels every accepted job that has not started, among those of the asked
//! priority and kind, and names them. A job has started once any of its tasks was handed to a
//! worker, whether the worker still holds it, finished it, gave it back or let its lease expire:
//! such a job runs on. Jobs still uploading are left alone too.
//!
//! The check and the removal of the tasks are one atomic queue step
//! (`QueueAdmin::cancel_if_unstarted`), so a worker leasing a task at the same moment either gets it
//! first and keeps the job running, or finds the job's tasks gone.

use super::{Conn, HandlerError};
use crate::backend::JobStatus;
use crate::master::MasterState;
use crate::protocol::{Message, PurgeFilter};

/// Answers `purge_queue`.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    filter: &PurgeFilter,
) -> Result<(), HandlerError> {
    let job_ids = purge(state, filter).await?;
    conn.write_message(&Message::Purged { job_ids }).await?;
    Ok(())
}

/// Cancels the matching jobs that have not started; returns their ids.
pub async fn purge(state: &MasterState, filter: &PurgeFilter) -> Result<Vec<String>, HandlerError> {
    let mut purged = Vec::new();
    for job in state.store.job_summaries(usize::MAX).await? {
        if job.status != JobStatus::Pending {
            continue;
        }
        if filter.kind.as_deref().is_some_and(|kind| kind != job.kind) {
            continue;
        }
        if filter.priority.is_some_and(|wanted| wanted != job.priority) {
            continue;
        }
        if !state.queue.cancel_if_unstarted(&job.id).await? {
            continue;
        }
        // The job has no task left, so nothing moves it until it is marked. Were the master to
        // stop right here, the job would stay pending with nothing queued, and the next purge,
        // finding nothing started, would mark it then.
        state
            .store
            .set_status(&job.id, JobStatus::Cancelled, Some("purged from the queue"))
            .await?;
        purged.push(job.id);
    }
    tracing::info!(component = "master", jobs = purged.len(), "queue purged");
    Ok(purged)
}
