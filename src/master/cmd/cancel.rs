//! `cancel`: removes a job's queued tasks and marks it cancelled, so late results are ignored.

use super::{Conn, HandlerError};
use crate::master::{jobs, MasterState};
use crate::protocol::Message;

/// Answers `cancel`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let removed = jobs::cancel(state, job_id).await?;
    conn.write_message(&Message::Cancelled {
        job_id: job_id.to_string(),
        removed_tasks: removed as u32,
    })
    .await?;
    Ok(())
}
