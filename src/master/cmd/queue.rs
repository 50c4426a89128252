//! `query_queue`: the backlog per priority (waiting tasks and the oldest one's age), the signal
//! `status --queue` prints and an autoscaler acts on.

use super::{Conn, HandlerError};
use crate::master::views::backlog;
use crate::master::MasterState;
use crate::protocol::{Message, ScaleDirection};

/// Counts and logs an autoscaler's decision; answers `recorded`.
pub async fn autoscaled(
    conn: &mut Conn,
    state: &MasterState,
    direction: ScaleDirection,
    worker: &str,
    reason: &str,
) -> Result<(), HandlerError> {
    state.ops.autoscaled(direction);
    let reason: String = reason.chars().take(200).collect();
    let worker: String = worker.chars().take(100).collect();
    tracing::info!(component = "master", direction = direction.as_str(), worker = %worker, reason = %reason, "autoscale");
    conn.write_message(&Message::Recorded).await?;
    Ok(())
}

/// Answers `query_queue`.
pub async fn apply(conn: &mut Conn, state: &MasterState) -> Result<(), HandlerError> {
    let (priorities, leases_in_flight) = backlog(state).await?;
    conn.write_message(&Message::QueueBacklog {
        priorities,
        leases_in_flight,
        active_workers: state.workers.active(),
    })
    .await?;
    Ok(())
}
