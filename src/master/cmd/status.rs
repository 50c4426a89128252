//! `query_status`: a job's state and progress, derived from stored results.

use super::{Conn, HandlerError};
use crate::backend::{BackendError, JobRecord};
use crate::master::job_view;
use crate::master::MasterState;
use crate::protocol::{InputArrival, Message};

/// Answers `query_status`.
pub async fn apply(conn: &mut Conn, state: &MasterState, job_id: &str) -> Result<(), HandlerError> {
    let job = find_job(state, job_id).await?;
    // How the input arrived, which listings (built without specs) leave out.
    let input = InputArrival {
        uploaded_bytes: job.spec.get("uploaded_bytes").and_then(|v| v.as_u64()),
        genome_reused: job.spec.get("genome_reused").and_then(|v| v.as_bool()),
    };
    let mut view = job_view(state.store.as_ref(), job.clone()).await?;
    if input != InputArrival::default() {
        view.input = Some(Box::new(input));
    }
    if view.kind == crate::jobs::command::COMMAND_KIND && !view.status.is_finished() {
        let cpus = job.spec.get("cpus").and_then(|v| v.as_u64()).unwrap_or(1);
        view.error = view.error.or(no_command_worker(state, cpus).await);
    }
    conn.write_message(&Message::JobStatus {
        job: view,
        active_workers: state.workers.active(),
    })
    .await?;
    Ok(())
}

/// Fetches a job or fails with `no_such_job`.
pub async fn find_job(state: &MasterState, job_id: &str) -> Result<JobRecord, HandlerError> {
    state
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| HandlerError::Backend(BackendError::NoSuchJob(job_id.to_string())))
}

/// Why a command job whose tasks take `cpus` slots waits, when the master can tell: no live
/// worker runs command tasks, or none has that many slots. Workers that lease through the master
/// tell it; with Redis, workers lease without the master, and the backend keeps the record.
async fn no_command_worker(state: &MasterState, cpus: u64) -> Option<String> {
    let widest = match state.queue.command_slots_live(RECENT_LEASE).await {
        Ok(Some(widest)) => widest,
        Ok(None) => state.workers.widest_command_worker(),
        Err(_) => return None,
    };
    if widest == 0 {
        return Some(
            "waiting: no live worker runs command tasks; start one with --allow-commands \
             (or --allow-command PROGRAM)"
                .to_string(),
        );
    }
    (u64::from(widest) < cpus).then(|| {
        format!(
            "waiting: each task takes {cpus} slots (--cpus) but no live worker that runs command \
             tasks has more than {widest}; start one with --threads {cpus} or more"
        )
    })
}

/// How recently a worker must have leased to count as live, for a backend that sees leases.
const RECENT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);
