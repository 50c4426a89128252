//! `purge_queue`: cancels every accepted job none of whose tasks has finished (status pending),
//! among those of the asked priority and kind, and names them. A job with a finished task is
//! running and is left alone; so are jobs still uploading.

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

/// Cancels the matching queued jobs; returns their ids.
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
        if job.progress.done_chunks > 0 {
            continue;
        }
        state
            .store
            .set_status(&job.id, JobStatus::Cancelled, Some("purged from the queue"))
            .await?;
        state.queue.cancel_job(&job.id).await?;
        purged.push(job.id);
    }
    tracing::info!(component = "master", jobs = purged.len(), "queue purged");
    Ok(purged)
}
