//! `cancel`: removes a job's queued tasks and marks it cancelled, so late results are ignored.

use super::status::find_job;
use super::{Conn, HandlerError};
use crate::backend::JobStatus;
use crate::master::MasterState;
use crate::protocol::{ErrorCode, Message};

/// Answers `cancel`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let removed = cancel(state, job_id).await?;
    conn.write_message(&Message::Cancelled {
        job_id: job_id.to_string(),
        removed_tasks: removed as u32,
    })
    .await?;
    Ok(())
}

/// Cancels a job (the protocol's `cancel` and HTTP `DELETE /jobs/{id}`); returns how many
/// queued tasks were removed.
pub async fn cancel(state: &MasterState, job_id: &str) -> Result<usize, HandlerError> {
    let job = find_job(state, job_id).await?;
    if job.status.is_finished() && job.status != JobStatus::Cancelled {
        return Err(HandlerError::refused(
            ErrorCode::JobNotReady,
            format!("job {job_id} already {:?}; nothing to cancel", job.status).to_lowercase(),
        ));
    }
    // Status first: from here on, results of this job are refused, then queued tasks go.
    state
        .store
        .set_status(job_id, JobStatus::Cancelled, None)
        .await?;
    let removed = state.queue.cancel_job(job_id).await?;
    tracing::info!(component = "master", job = %job_id, removed, "job cancelled");
    Ok(removed)
}
