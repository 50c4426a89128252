//! The worker-facing requests of the embedded backend: `lease`, `extend`, `put_result`, `ack`,
//! `nack`, and their batched forms `lease_batch` and `complete_batch`. Each maps to one
//! `Leases`/`ResultStore` call for the worker named in the connection's hello, which is what
//! `backend::remote` calls on the other side. The backend fences every result by
//! the lease it names; a refusal is logged as a warning and counted (see `/metrics`).

use std::time::Duration;

use super::{Conn, HandlerError, Session};
use crate::backend::{
    BackendError, ChunkResult, Completion, Lease, NackOutcome, TaskId, WorkerOffer, MAX_BATCH,
};
use crate::master::MasterState;
use crate::protocol::{
    CompletedTask, CompletionReply, ErrorCode, Message, NackReply, ProtocolError, Role, TaskHeader,
};

/// Longest a lease request may wait for a task, whatever the worker asks (keeps the worker's
/// liveness fresh in the registry).
const MAX_LEASE_WAIT: Duration = Duration::from_secs(5);

/// Most leases a worker may name as in hand: far more than any worker's slots and prefetch.
const MAX_HELD: usize = 100_000;

/// Answers one worker request.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    session: &Session,
    message: Message,
) -> Result<(), HandlerError> {
    let worker = match (&session.role, &session.id) {
        (Role::Worker, Some(id)) => id.clone(),
        _ => {
            return Err(HandlerError::fatal(
                ErrorCode::UnexpectedMessage,
                "only workers (hello with role worker and an id) lease tasks",
            ))
        }
    };
    state.workers.touch(&worker);
    // Both lease requests say what the worker offers; the backend leases by it.
    if let Message::Lease {
        commands,
        slots,
        genome_files,
        genome_partials,
        ..
    }
    | Message::LeaseBatch {
        commands,
        slots,
        genome_files,
        genome_partials,
        ..
    } = &message
    {
        let files = genome_files.clone();
        note_offer(state, &worker, *commands, *slots, files, *genome_partials).await?;
    }
    let reply = match message {
        Message::Lease { wait_ms, .. } => return lease(conn, state, &worker, wait_ms).await,
        Message::LeaseBatch { wait_ms, max, .. } => {
            return lease_batch(conn, state, &worker, wait_ms, max).await
        }
        Message::CompleteBatch { tasks } => Message::BatchCompleted {
            outcomes: complete_batch(state, session, &worker, tasks).await?,
        },
        Message::Extend {
            job_id,
            chunk,
            token,
            output,
        } => {
            let lease = handle(job_id, chunk, token, &worker);
            let held = match output {
                Some(piece) => {
                    piece
                        .check()
                        .map_err(|e| HandlerError::fatal(ErrorCode::BadMessage, e))?;
                    state.queue.extend_with_output(&lease, &piece).await?
                }
                None => state.queue.extend(&lease).await?,
            };
            Message::Extended { held }
        }
        Message::PutResult {
            job_id,
            token,
            result,
            parts,
        } => {
            let lease = handle(job_id, result.chunk, token, &worker);
            let first = put_result(conn, state, session, &lease, &result, parts).await?;
            Message::ResultStored { first }
        }
        Message::Ack {
            job_id,
            chunk,
            token,
        } => {
            state
                .queue
                .ack(&handle(job_id, chunk, token, &worker))
                .await?;
            Message::Acked
        }
        Message::Nack {
            job_id,
            chunk,
            token,
            error,
        } => {
            let lease = handle(job_id, chunk, token, &worker);
            let outcome = state.queue.nack(&lease, &error).await?;
            let outcome_name = match outcome {
                NackOutcome::Retrying { .. } => "retrying",
                NackOutcome::DeadLettered => "dead_lettered",
                NackOutcome::Stale => "stale",
            };
            tracing::warn!(component = "master", job = %lease.id.job, chunk, %worker, %error, outcome = outcome_name, "task failed");
            Message::Nacked {
                outcome: match outcome {
                    NackOutcome::Retrying { next_attempt } => NackReply::Retrying { next_attempt },
                    NackOutcome::DeadLettered => NackReply::DeadLettered,
                    NackOutcome::Stale => NackReply::Stale,
                },
            }
        }
        Message::ReleaseUnheld { held } => {
            if held.len() > MAX_HELD {
                return Err(HandlerError::fatal(
                    ErrorCode::BadMessage,
                    format!(
                        "{} leases in hand is more than the {MAX_HELD} allowed",
                        held.len()
                    ),
                ));
            }
            let released = state.queue.release_unheld(&worker, &held).await?;
            if released > 0 {
                tracing::info!(component = "master", %worker, tasks = released, "tasks whose lease reply the worker never received returned to the queue");
            }
            Message::ReleasedUnheld {
                released: released as u64,
            }
        }
        other => {
            return Err(HandlerError::fatal(
                ErrorCode::UnexpectedMessage,
                format!("{} is not a worker request", other.type_name()),
            ))
        }
    };
    conn.write_message(&reply).await?;
    Ok(())
}

/// Most data frames one result may announce: with parts of at most
/// [`crate::backend::RESULT_PART_BYTES`], 4 GiB of result text.
const MAX_RESULT_PARTS: u32 = 1024;

/// Stores a result and the `parts` data frames of its payload that follow, part by part, so the
/// master never holds more than one part. A refused part or result leaves nothing visible; the
/// frames still to come are read and dropped so the connection stays in step.
async fn put_result(
    conn: &mut Conn,
    state: &MasterState,
    session: &Session,
    lease: &Lease,
    result: &ChunkResult,
    parts: u32,
) -> Result<bool, HandlerError> {
    if parts > MAX_RESULT_PARTS {
        return Err(HandlerError::fatal(
            ErrorCode::BadMessage,
            format!(
                "a result of {parts} parts is larger than the {MAX_RESULT_PARTS} parts allowed"
            ),
        ));
    }
    let mut outcome = Ok(());
    for part in 0..parts {
        let bytes = conn.read_data().await?;
        if outcome.is_ok() {
            outcome = state.store.put_result_part(lease, part, bytes).await;
        }
    }
    let stored = match outcome {
        Ok(()) => state.store.commit_chunk_result(lease, result, parts).await,
        Err(err) => Err(err),
    };
    match stored {
        Err(err @ BackendError::Refused { reason, .. }) => {
            report_refusal(state, session, lease, reason, &err).await;
            Err(HandlerError::ResultRefused {
                reason,
                message: err.to_string(),
            })
        }
        other => Ok(other?),
    }
}

/// Logs a refused result and raises (or counts toward) its refusal alert.
async fn report_refusal(
    state: &MasterState,
    session: &Session,
    lease: &Lease,
    reason: crate::backend::RefusalReason,
    err: &BackendError,
) {
    tracing::warn!(component = "master", worker = %lease.worker, peer = %session.peer, error = %err, "result refused");
    state
        .refusal_alerts
        .raise(
            state.store.as_ref(),
            &lease.worker,
            reason,
            &lease.id.job,
            lease.id.chunk,
        )
        .await;
}

/// Settles a batch of finished tasks in one backend call; each refusal is logged, counted and
/// alerted on as a single refused result is, and answered in that task's outcome only.
async fn complete_batch(
    state: &MasterState,
    session: &Session,
    worker: &str,
    tasks: Vec<CompletedTask>,
) -> Result<Vec<CompletionReply>, HandlerError> {
    if tasks.len() > MAX_BATCH {
        return Err(HandlerError::fatal(
            ErrorCode::BadMessage,
            format!(
                "a batch of {} tasks is larger than the {MAX_BATCH} allowed",
                tasks.len()
            ),
        ));
    }
    let items: Vec<Completion> = tasks
        .into_iter()
        .map(|task| Completion {
            lease: handle(task.job_id, task.result.chunk, task.token, worker),
            result: task.result,
        })
        .collect();
    let outcomes = state
        .queue
        .complete_batch(state.store.as_ref(), &items)
        .await?;
    let mut replies = Vec::with_capacity(items.len());
    for (item, outcome) in items.iter().zip(outcomes) {
        let lease = &item.lease;
        replies.push(match outcome {
            Ok(first) => CompletionReply::Stored { first },
            Err(err @ BackendError::Refused { reason, .. }) => {
                report_refusal(state, session, lease, reason, &err).await;
                CompletionReply::Refused {
                    reason: Some(reason),
                    message: err.to_string(),
                }
            }
            Err(err) => CompletionReply::Failed {
                message: err.to_string(),
            },
        });
    }
    Ok(replies)
}

/// A lease handle rebuilt from the fields a worker sends back (data is not needed to settle it).
fn handle(job: String, chunk: u32, token: String, worker: &str) -> Lease {
    Lease {
        id: TaskId { job, chunk },
        kind: String::new(),
        spec: serde_json::Value::Null,
        data: bytes::Bytes::new(),
        worker: worker.to_string(),
        attempt: 0,
        token,
    }
}

/// Records what the worker offers, as its lease request says: the backend leases by it, and
/// `status` tells whether any live worker can take a waiting command job.
async fn note_offer(
    state: &MasterState,
    worker: &str,
    commands: bool,
    slots: Option<u32>,
    genome_files: Option<String>,
    genome_partials: bool,
) -> Result<(), HandlerError> {
    let genome_files = match genome_files {
        Some(id) => Some(crate::protocol::parse_store_id(&id).ok_or_else(|| {
            HandlerError::fatal(
                ErrorCode::BadMessage,
                "genome_files is not a store id (32 hex digits)",
            )
        })?),
        None => None,
    };
    let offer = WorkerOffer {
        commands,
        slots: slots.unwrap_or(1).max(1),
        genome_partials: genome_partials && genome_files.is_some(),
        genome_files,
    };
    state.queue.set_offer(worker, offer).await?;
    if commands {
        state.workers.note_runs_commands(worker, offer.slots);
    }
    Ok(())
}

/// Waits for a task and sends it with its data frame. If the worker is gone before it receives
/// the task, the task goes back to the queue at once instead of waiting for lease expiry.
async fn lease(
    conn: &mut Conn,
    state: &MasterState,
    worker: &str,
    wait_ms: u64,
) -> Result<(), HandlerError> {
    let wait = Duration::from_millis(wait_ms).min(MAX_LEASE_WAIT);
    // The wait runs as its own task, watched beside the socket: a worker killed while it waits
    // closes the socket, and a task leased to it then would sit invisible until the visibility
    // timeout (the write into a dead socket can still succeed). Whatever the abandoned wait
    // brings goes straight back to the queue.
    let queue = state.queue.clone();
    let owner = worker.to_string();
    let mut waiting = tokio::spawn(async move { queue.lease(&owner, wait).await });
    let leased = tokio::select! {
        biased;
        joined = &mut waiting => joined
            .map_err(|err| BackendError::Other(format!("lease wait failed: {err}")))??,
        () = peer_closed(conn) => {
            let queue = state.queue.clone();
            tokio::spawn(async move {
                if let Ok(Ok(Some(lease))) = waiting.await {
                    let _ = queue
                        .nack(&lease, "worker disconnected while waiting for a task")
                        .await;
                    tracing::info!(component = "master", job = %lease.id.job, chunk = lease.id.chunk, worker = %lease.worker, "task returned to the queue: its worker disconnected before receiving it");
                }
            });
            return Err(ProtocolError::Closed.into());
        }
    };
    let Some(lease) = leased else {
        conn.write_message(&Message::NoTask).await?;
        return Ok(());
    };
    let header = Message::Task {
        job_id: lease.id.job.clone(),
        chunk: lease.id.chunk,
        kind: lease.kind.clone(),
        spec: lease.spec.clone(),
        attempt: lease.attempt,
        token: lease.token.clone(),
        data_len: lease.data.len() as u64,
    };
    let sent = async {
        conn.send_message(&header).await?;
        conn.send_frame(&lease.data).await?;
        conn.flush().await
    }
    .await;
    if sent.is_ok() {
        count_input(state, std::slice::from_ref(&lease));
    }
    if let Err(err) = sent {
        let _ = state
            .queue
            .nack(&lease, "worker disconnected before receiving the task")
            .await;
        tracing::info!(component = "master", job = %lease.id.job, chunk = lease.id.chunk, worker = %lease.worker, "task returned to the queue: its worker disconnected before receiving it");
        return Err(err.into());
    }
    Ok(())
}

/// Waits for up to `max` tasks and sends them, then their data frames. As with a single lease,
/// a worker gone before it receives them gets them returned to the queue at once.
async fn lease_batch(
    conn: &mut Conn,
    state: &MasterState,
    worker: &str,
    wait_ms: u64,
    max: u32,
) -> Result<(), HandlerError> {
    let wait = Duration::from_millis(wait_ms).min(MAX_LEASE_WAIT);
    let max = (max as usize).min(MAX_BATCH);
    let queue = state.queue.clone();
    let owner = worker.to_string();
    let mut waiting = tokio::spawn(async move { queue.lease_batch(&owner, max, wait).await });
    let leases = tokio::select! {
        biased;
        joined = &mut waiting => joined
            .map_err(|err| BackendError::Other(format!("lease wait failed: {err}")))??,
        () = peer_closed(conn) => {
            let queue = state.queue.clone();
            tokio::spawn(async move {
                if let Ok(Ok(leases)) = waiting.await {
                    for lease in leases {
                        let _ = queue
                            .nack(&lease, "worker disconnected while waiting for a task")
                            .await;
                    }
                }
            });
            return Err(ProtocolError::Closed.into());
        }
    };
    let header = Message::Tasks {
        tasks: leases
            .iter()
            .map(|lease| TaskHeader {
                job_id: lease.id.job.clone(),
                chunk: lease.id.chunk,
                kind: lease.kind.clone(),
                spec: lease.spec.clone(),
                attempt: lease.attempt,
                token: lease.token.clone(),
                data_len: lease.data.len() as u64,
            })
            .collect(),
    };
    let sent = async {
        conn.send_message(&header).await?;
        for lease in &leases {
            conn.send_frame(&lease.data).await?;
        }
        conn.flush().await
    }
    .await;
    if let Err(err) = sent {
        for lease in &leases {
            let _ = state
                .queue
                .nack(lease, "worker disconnected before receiving the task")
                .await;
        }
        return Err(err.into());
    }
    count_input(state, &leases);
    // A range decoded for this worker is sent: its buffer can take the next one.
    for lease in leases {
        crate::buffers::give_back(lease.data);
    }
    Ok(())
}

/// Counts the input of leases handed to a worker: the bytes sent with them, or the bases of
/// a stored genome the worker reads itself (a genome range sent without its bases).
fn count_input(state: &MasterState, leases: &[Lease]) {
    use std::sync::atomic::Ordering::Relaxed;
    for lease in leases {
        match crate::backend::genome::GenomeRef::from_spec(&lease.spec) {
            Some(range) if lease.data.is_empty() => {
                state.ops.input_read_in_place.fetch_add(range.len, Relaxed)
            }
            _ => state
                .ops
                .input_sent
                .fetch_add(lease.data.len() as u64, Relaxed),
        };
    }
}

/// Completes when the peer has closed its side (or the socket failed); stays pending while it is
/// open, also when it has sent bytes (those are read after the reply, as usual). Over TLS the
/// TCP socket is probed: a peer that drops its connection closes it; one that first sends a TLS
/// close alert is seen as open until the lease wait ends, as if it had sent a request.
async fn peer_closed(conn: &Conn) {
    let mut probe = [0u8; 1];
    match conn.get_ref().tcp().peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
