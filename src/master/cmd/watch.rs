//! The watchman's requests: `worker_down` from the collector (reclaim that worker's leases at
//! once), `record_alert` / `record_worker` (the master owns the embedded store), and the
//! `list_workers` / `list_alerts` queries of `gridwatch workers` and `gridwatch alerts`.

use super::{Conn, HandlerError};
use crate::collector::at_master;
use crate::master::MasterState;
use crate::protocol::{ErrorCode, Message};

/// Answers one watchman request.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    message: Message,
) -> Result<(), HandlerError> {
    let reply = at_master::answer(&message, state.queue.as_ref(), state.store.as_ref())
        .await
        .ok_or_else(|| {
            HandlerError::refused(ErrorCode::UnexpectedMessage, "not a watchman request")
        })?;
    conn.write_message(&reply).await?;
    Ok(())
}
