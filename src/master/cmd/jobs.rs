//! `list_jobs`: every job, newest first, with progress; never their specs, so the reply's size
//! does not grow with the jobs' inputs.

use super::{Conn, HandlerError};
use crate::master::{summary_view, MasterState};
use crate::protocol::Message;

/// Answers `list_jobs`.
pub async fn apply(conn: &mut Conn, state: &MasterState) -> Result<(), HandlerError> {
    let jobs = state
        .store
        .job_summaries(usize::MAX)
        .await?
        .into_iter()
        .map(summary_view)
        .collect();
    conn.write_message(&Message::Jobs {
        jobs,
        active_workers: state.workers.active(),
    })
    .await?;
    Ok(())
}
