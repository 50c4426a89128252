//! `query_status`: a job's state and progress, derived from stored results.

use super::{Conn, HandlerError};
use crate::master::{jobs, MasterState};
use crate::protocol::Message;

/// Answers `query_status`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let job = jobs::status(state, job_id).await?;
    conn.write_message(&Message::JobStatus {
        job,
        active_workers: state.workers.active(),
    })
    .await?;
    Ok(())
}
