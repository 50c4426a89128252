//! One file per request (mini-redis `cmd/`): each parses its message, applies it to the backend
//! and writes the reply. `dispatch` routes a message to its handler; adding a message means one
//! match arm here and one file.

mod batch;
mod cancel;
mod forget;
mod genomes;
pub(super) mod inputs;
mod jobs;
mod lease;
mod performance;
mod prune;
mod purge;
mod queue;
mod results;
mod status;
mod submit;
mod task_output;
mod watchman;

use std::net::SocketAddr;

use super::jobs::JobError;
use super::MasterState;
use crate::backend::BackendError;
use crate::protocol::{Connection, ErrorCode, Message, ProtocolError, Role, Stream};

/// Who is on a connection, from its `hello`.
pub struct Session {
    /// The peer's role.
    pub role: Role,
    /// Worker or agent id.
    pub id: Option<String>,
    /// The peer's address (the rate limiter's client key).
    pub peer: SocketAddr,
}

/// Why a request failed, and whether the connection survives it.
#[derive(Debug)]
pub enum HandlerError {
    /// The request was refused; the connection stays usable.
    Refused {
        /// Machine-readable reason.
        code: ErrorCode,
        /// For the human.
        message: String,
    },
    /// The connection is out of step (mid-upload failure, bad hello) and closes after the reply.
    Fatal {
        /// Machine-readable reason.
        code: ErrorCode,
        /// For the human.
        message: String,
    },
    /// A result was refused (the sender does not hold its lease, or it is out of range); the
    /// reply carries the reason as data and the connection stays usable.
    ResultRefused {
        /// Why.
        reason: crate::backend::RefusalReason,
        /// For the log.
        message: String,
    },
    /// A frame-level failure; the connection closes after the reply.
    Protocol(ProtocolError),
    /// The backend failed; the client may retry.
    Backend(BackendError),
}

impl HandlerError {
    /// A refusal that keeps the connection open.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        HandlerError::Refused {
            code,
            message: message.into(),
        }
    }

    /// A failure that closes the connection.
    pub fn fatal(code: ErrorCode, message: impl Into<String>) -> Self {
        HandlerError::Fatal {
            code,
            message: message.into(),
        }
    }

    /// Why a result was refused, when this error is such a refusal.
    pub fn refusal_reason(&self) -> Option<crate::backend::RefusalReason> {
        match self {
            HandlerError::ResultRefused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The `error` frame to send and whether the connection stays open.
    pub fn into_reply(self) -> (ErrorCode, String, bool) {
        match self {
            HandlerError::Refused { code, message } => (code, message, true),
            HandlerError::ResultRefused { message, .. } => {
                (ErrorCode::ResultRefused, message, true)
            }
            HandlerError::Fatal { code, message } => (code, message, false),
            HandlerError::Protocol(err) => (err.code(), err.to_string(), false),
            HandlerError::Backend(BackendError::NoSuchJob(id)) => (
                ErrorCode::NoSuchJob,
                format!("no job with id {id:?} (list jobs with `gridwatch jobs`)"),
                true,
            ),
            HandlerError::Backend(err) => (ErrorCode::Internal, err.to_string(), true),
        }
    }
}

impl From<BackendError> for HandlerError {
    fn from(err: BackendError) -> Self {
        HandlerError::Backend(err)
    }
}

impl From<JobError> for HandlerError {
    fn from(err: JobError) -> Self {
        let code = match &err {
            JobError::NoSuchJob(_) => ErrorCode::NoSuchJob,
            JobError::NotReady(_) => ErrorCode::JobNotReady,
            JobError::Invalid(_) => ErrorCode::BadMessage,
            JobError::Refused(refusal) => refusal.code,
            JobError::RateLimited(_) => ErrorCode::RateLimited,
            JobError::Backend(_) => ErrorCode::Internal,
        };
        match err {
            JobError::Backend(err) => HandlerError::Backend(err),
            other => HandlerError::refused(code, other.to_string()),
        }
    }
}

impl From<crate::jobs::Refusal> for HandlerError {
    fn from(refusal: crate::jobs::Refusal) -> Self {
        HandlerError::refused(refusal.code, refusal.message)
    }
}

impl From<ProtocolError> for HandlerError {
    fn from(err: ProtocolError) -> Self {
        HandlerError::Protocol(err)
    }
}

/// The connection type handlers write to.
pub type Conn = Connection<Stream>;

/// Routes one request to its handler. A client's query that needs the backend fails with a
/// clear error when the backend does not answer within the deadline, rather than hanging; every
/// outcome tells the backend's health watch whether the backend answered.
pub async fn dispatch(
    conn: &mut Conn,
    state: &MasterState,
    session: &mut Session,
    message: Message,
) -> Result<(), HandlerError> {
    let bounded = matches!(
        message,
        Message::QueryStatus { .. }
            | Message::ListJobs
            | Message::QueryQueue
            | Message::ListWorkers
            | Message::ListAlerts { .. }
            | Message::Cancel { .. }
            | Message::TaskOutput { .. }
            | Message::PurgeQueue { .. }
    );
    // Named only for client queries: serializing every lease and result would cost the hot path.
    let request = if bounded {
        message.type_name()
    } else {
        "a grid request".to_string()
    };
    let outcome = if bounded {
        let deadline = super::backend_health::BACKEND_DEADLINE;
        match tokio::time::timeout(deadline, route(conn, state, session, message)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let error = format!("no answer within {} s", deadline.as_secs());
                state.backend_health.failed(&request, &error);
                return Err(HandlerError::refused(
                    ErrorCode::Internal,
                    format!(
                        "the master's backend did not answer within {} s (is Redis reachable \
                         from the master? its log says since when); try again shortly",
                        deadline.as_secs()
                    ),
                ));
            }
        }
    } else {
        route(conn, state, session, message).await
    };
    match &outcome {
        Err(HandlerError::Backend(err @ BackendError::Unavailable(_))) => {
            state.backend_health.failed(&request, &err.to_string())
        }
        Err(HandlerError::Backend(_)) | Err(HandlerError::Protocol(_)) => {}
        Ok(())
        | Err(HandlerError::Refused { .. })
        | Err(HandlerError::ResultRefused { .. })
        | Err(HandlerError::Fatal { .. }) => state.backend_health.answered(),
    }
    outcome
}

async fn route(
    conn: &mut Conn,
    state: &MasterState,
    session: &mut Session,
    message: Message,
) -> Result<(), HandlerError> {
    match message {
        Message::SubmitJob { .. } => submit::apply(conn, state, session, message).await,
        Message::QueryStatus { job_id } => status::apply(conn, state, &job_id).await,
        Message::GetResults { job_id } => results::apply(conn, state, &job_id).await,
        Message::TaskOutput {
            job_id,
            task,
            stderr,
            from,
        } => task_output::apply(conn, state, &job_id, task, stderr, from).await,
        Message::Cancel { job_id } => cancel::apply(conn, state, &job_id).await,
        Message::ListJobs => jobs::apply(conn, state).await,
        Message::SubmitBatch { source, jobs } => {
            batch::apply(conn, state, session, source, jobs).await
        }
        Message::PurgeQueue { filter } => purge::apply(conn, state, &filter).await,
        Message::ForgetWorker { worker_id } => forget::apply(conn, state, &worker_id).await,
        Message::Prune { older_than_secs } => prune::apply(conn, state, older_than_secs).await,
        Message::ListPerformance => performance::apply(conn, state).await,
        Message::QueryQueue => queue::apply(conn, state).await,
        Message::AutoscaleEvent {
            direction,
            worker_id,
            reason,
        } => queue::autoscaled(conn, state, direction, &worker_id, &reason).await,
        Message::ListGenomes => genomes::list(conn, state).await,
        Message::PutInput { job_id, hash, size } => {
            inputs::put(conn, state, &job_id, &hash, size).await
        }
        Message::ReadInput { hash, offset, len } => {
            inputs::read(conn, state, session, &hash, offset, len).await
        }
        Message::RemoveGenomes { hashes } => genomes::remove(conn, state, hashes).await,
        Message::ExportGenome { hash } => genomes::export(conn, state, &hash).await,
        Message::Lease { .. }
        | Message::LeaseBatch { .. }
        | Message::CompleteBatch { .. }
        | Message::Extend { .. }
        | Message::PutResult { .. }
        | Message::Ack { .. }
        | Message::Nack { .. }
        | Message::ReleaseUnheld { .. } => lease::apply(conn, state, session, message).await,
        Message::WorkerDown { .. }
        | Message::RecordAlert { .. }
        | Message::RecordWorker { .. }
        | Message::ListWorkers
        | Message::ListAlerts { .. } => watchman::apply(conn, state, message).await,
        other => Err(HandlerError::fatal(
            ErrorCode::UnexpectedMessage,
            format!("{} is not a request the master serves", other.type_name()),
        )),
    }
}

/// Refuses an upload the data directory has no room for (with a little left over for the
/// database), before a byte of it is stored. A backend that keeps no files here skips the check.
pub(super) fn check_free_space(state: &MasterState, upload_bytes: u64) -> Result<(), HandlerError> {
    Ok(super::jobs::check_room(state, upload_bytes)?)
}
