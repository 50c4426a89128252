//! `task_output`: one stream of a command task's output from an offset on, whether the task has
//! finished (its stored result) or still runs (the tail its worker sends), for `logs` and
//! `logs --follow`.

use super::{Conn, HandlerError};
use crate::master::task_output::{self, Stream};
use crate::master::MasterState;
use crate::protocol::Message;

/// Answers `task_output`.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    job_id: &str,
    task: u64,
    stderr: bool,
    from: u64,
) -> Result<(), HandlerError> {
    let stream = if stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let output = task_output::view(state, job_id, task, stream, from).await?;
    conn.write_message(&Message::TaskOutputText { output })
        .await?;
    Ok(())
}
