//! `list_jobs`: every job, newest first, with progress.

use super::{Conn, HandlerError};
use crate::master::{job_view, MasterState};
use crate::protocol::Message;

/// Answers `list_jobs`.
pub async fn apply(conn: &mut Conn, state: &MasterState) -> Result<(), HandlerError> {
    let mut jobs = Vec::new();
    for job in state.store.jobs().await? {
        jobs.push(job_view(state.store.as_ref(), job).await?);
    }
    conn.write_message(&Message::Jobs {
        jobs,
        active_workers: state.workers.active(),
    })
    .await?;
    Ok(())
}
