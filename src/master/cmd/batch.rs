//! `submit_batch`: the jobs of one batch file, created by the master's job service (which
//! checks them all before creating any). Every message counts each of its jobs and their tasks
//! against the client's rate limits; a large file comes in several messages, each counted.

use super::{Conn, HandlerError, Session};
use crate::master::{jobs, MasterState};
use crate::protocol::{BatchJob, ErrorCode, Message};

/// Answers `submit_batch`.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    session: &mut Session,
    source: String,
    batch: Vec<BatchJob>,
) -> Result<(), HandlerError> {
    let max = state.config.max_batch_tasks;
    if batch.len() > max {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!(
                "{source}: {} jobs in one message, more than the master's --max-batch-tasks of {max}; split the file",
                batch.len()
            ),
        ));
    }
    let client = session.peer.ip().to_string();
    let created = jobs::create_batch(state, &source, batch, Some(&client)).await?;
    conn.write_message(&Message::BatchAccepted {
        jobs: created,
        active_workers: state.active_workers().await,
    })
    .await?;
    Ok(())
}
