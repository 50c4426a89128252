//! `forget_worker`: drop a dead or inactive worker from the views; refused for a live one.

use super::{Conn, HandlerError};
use crate::master::forget::{forget, ForgetError};
use crate::master::MasterState;
use crate::protocol::{ErrorCode, Message};

/// Forgets `worker` and confirms, or refuses with the reason.
pub async fn apply(conn: &mut Conn, state: &MasterState, worker: &str) -> Result<(), HandlerError> {
    match forget(state, worker).await {
        Ok(()) => {
            let reply = Message::WorkerForgotten {
                worker_id: worker.to_string(),
            };
            conn.write_message(&reply).await?;
            Ok(())
        }
        Err(err @ ForgetError::Unknown(_)) => Err(HandlerError::refused(
            ErrorCode::NoSuchWorker,
            err.to_string(),
        )),
        Err(err @ ForgetError::Alive { .. }) => Err(HandlerError::refused(
            ErrorCode::WorkerAlive,
            err.to_string(),
        )),
        Err(ForgetError::Backend(err)) => Err(err.into()),
    }
}
