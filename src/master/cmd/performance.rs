//! `list_performance`: per worker and job kind, tasks completed and the mean and 95th
//! percentile of recent task times, from the store's task times.

use super::{Conn, HandlerError};
use crate::backend::performance::performance;
use crate::master::MasterState;
use crate::protocol::Message;

/// Answers `list_performance`.
pub async fn apply(conn: &mut Conn, state: &MasterState) -> Result<(), HandlerError> {
    let times = state.store.task_times().await?;
    conn.write_message(&Message::Performance {
        workers: performance(&times),
    })
    .await?;
    Ok(())
}
