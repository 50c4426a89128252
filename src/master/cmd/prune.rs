//! `prune`: deletes finished jobs older than the asked age now, as the retention sweep does on
//! its own schedule, and says what went and how much space came back.

use super::{Conn, HandlerError};
use crate::master::{retention, MasterState};
use crate::protocol::{ErrorCode, Message};

/// Answers `prune`.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    older_than_secs: f64,
) -> Result<(), HandlerError> {
    if !older_than_secs.is_finite() || older_than_secs < 0.0 {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!("prune age {older_than_secs} must be zero or a positive number of seconds"),
        ));
    }
    let report = retention::prune_on_demand(state, older_than_secs).await?;
    conn.write_message(&Message::Pruned { report }).await?;
    Ok(())
}
