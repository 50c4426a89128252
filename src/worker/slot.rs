//! One task slot: take a leased task from the prefetch buffer → run it with its job's kind (on a
//! blocking thread, extending the lease meanwhile) → hand the result to the flusher, which stores
//! it and acks (see `flush`). Transport failures back off and retry the same step, so a master
//! restart costs time, not work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::prefetch::Buffer;
use super::{WorkerConfig, WorkerStats, MAX_BACKOFF, MIN_BACKOFF};
use crate::backend::{
    BackendError, BackendResult, ChunkResult, Completion, Lease, Leases, TaskRun,
};
use crate::jobs::{self, PreparedTask};

/// The last job's prepared state (for a search: its compiled patterns), reused while consecutive
/// tasks belong to it.
type PreparedCache = Option<(String, Arc<dyn PreparedTask>)>;

/// Runs the tasks the feeder buffers until the buffer is closed and empty (the worker stops
/// after finishing what it has leased). Each task runs once it holds as many of `free_slots` as
/// it takes. A finished task goes to the flusher with its lease; a failed one is nacked here.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_slot(
    index: usize,
    config: WorkerConfig,
    queue: Arc<dyn Leases>,
    buffer: Arc<Buffer>,
    free_slots: Arc<SlotPool>,
    finished: mpsc::UnboundedSender<Completion>,
    stats: Arc<WorkerStats>,
    stop: watch::Receiver<bool>,
) {
    let mut cache: PreparedCache = None;
    while let Some(mut lease) = buffer.take().await {
        let Some(_slots) = take_slots(&config, queue.as_ref(), &lease, &free_slots).await else {
            tracing::warn!(component = "worker", slot = index, job = %lease.id.job, chunk = lease.id.chunk, "lease lost while waiting for free slots");
            buffer.settled([lease.token.as_str()]);
            continue;
        };
        // Told to the agent while it runs (with its child's pid once a command task has one).
        let running = config.heartbeat.as_ref().map(|heartbeat| {
            heartbeat.task_started(format!("{}/{}", lease.id.job, lease.id.chunk))
        });
        let started = std::time::Instant::now();
        let outcome = if lease.kind == jobs::command::COMMAND_KIND {
            super::command::run_leased(&config, queue.as_ref(), &lease, running.as_ref()).await
        } else {
            // The input goes to the kernel alone: the lease travels on to be acknowledged, and
            // the input's buffer is reused for a later task's input once the kernel is done.
            let input = std::mem::take(&mut lease.data);
            run_task(&config, queue.as_ref(), &lease, input, &mut cache).await
        };
        buffer.ran_for(started.elapsed());
        drop(running);
        match outcome {
            Ok(None) => {
                // Another holder runs the task now, or its job is gone: nothing to store.
                buffer.settled([lease.token.as_str()]);
            }
            Ok(Some(result)) => {
                if let Err(unsent) = finished.send(Completion { lease, result }) {
                    // The flusher is gone only if the worker is being torn down: the lease
                    // expires and the task is delivered again.
                    tracing::warn!(component = "worker", slot = index, job = %unsent.0.lease.id.job, chunk = unsent.0.lease.id.chunk, "result dropped at shutdown");
                    buffer.settled([unsent.0.lease.token.as_str()]);
                }
            }
            Err(error) => {
                tracing::warn!(component = "worker", slot = index, job = %lease.id.job, chunk = lease.id.chunk, %error, "task failed");
                let _ = retry(&stop, || queue.nack(&lease, &error)).await;
                stats.tasks_failed.fetch_add(1, Ordering::Relaxed);
                buffer.settled([lease.token.as_str()]);
            }
        }
    }
}

/// A worker's slots: one permit each, shared by its slot tasks.
pub(super) struct SlotPool {
    free: Arc<Semaphore>,
    total: u32,
}

impl SlotPool {
    /// `slots` free slots.
    pub fn new(slots: u32) -> Self {
        let total = slots.max(1);
        SlotPool {
            free: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }
}

/// Waits until the task holds as many of the worker's slots as it takes (never more than the
/// worker has), keeping its lease extended meanwhile; `None` if the lease was lost.
async fn take_slots(
    config: &WorkerConfig,
    queue: &dyn Leases,
    lease: &Lease,
    free_slots: &SlotPool,
) -> Option<OwnedSemaphorePermit> {
    let wanted = jobs::require(&lease.kind).map_or(1, |kind| kind.slots(&lease.spec));
    // A backend never leases a task wider than the worker; were one to, it runs on every slot
    // rather than waiting forever for slots that do not exist.
    let wanted = wanted.clamp(1, free_slots.total);
    let acquire = free_slots.free.clone().acquire_many_owned(wanted);
    tokio::pin!(acquire);
    let mut ticker = tokio::time::interval(config.extend_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            permits = &mut acquire => return permits.ok(),
            _ = ticker.tick() => {
                if let Ok(false) = queue.extend(lease).await {
                    return None;
                }
            }
        }
    }
}

/// Runs the task with its job's kind on `input` on a blocking thread, checking (and so
/// extending) the lease every `lease_check` while it runs. A lease found lost (reclaimed,
/// expired, or its job cancelled) stops the kernel at its next check of the stop flag:
/// `Ok(None)`.
async fn run_task(
    config: &WorkerConfig,
    queue: &dyn Leases,
    lease: &Lease,
    input: Bytes,
    cache: &mut PreparedCache,
) -> Result<Option<ChunkResult>, String> {
    let kind = jobs::require(&lease.kind).map_err(|e| e.to_string())?;
    let prepared = match cache {
        Some((job, prepared)) if *job == lease.id.job => prepared.clone(),
        _ => {
            let prepared = kind.prepare(&lease.spec).map_err(|e| e.to_string())?;
            *cache = Some((lease.id.job.clone(), prepared.clone()));
            prepared
        }
    };
    let spec = lease.spec.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let kernel_stop = stop.clone();
    // Timed on the blocking thread itself, so waiting for a free thread does not count.
    let kernel = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let outcome = prepared.run_until(&spec, &input, &kernel_stop);
        let elapsed = started.elapsed();
        crate::buffers::give_back(input);
        (outcome, elapsed)
    });
    tokio::pin!(kernel);
    let mut ticker = tokio::time::interval(config.lease_check);
    ticker.tick().await;
    let outcome = loop {
        tokio::select! {
            done = &mut kernel => break done.map_err(|e| format!("{} task panicked: {e}", lease.kind))?,
            _ = ticker.tick(), if !stop.load(Ordering::Relaxed) => {
                if let Ok(false) = queue.extend(lease).await {
                    tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, "lease lost or job cancelled: stopping the task");
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    };
    let (outcome, elapsed) = outcome;
    let Some(outcome) = outcome.map_err(|e| e.to_string())? else {
        tracing::info!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, ran_ms = elapsed.as_millis() as u64, "task stopped; its result is dropped");
        return Ok(None);
    };
    if stop.load(Ordering::Relaxed) {
        // Finished just as the lease was found lost: the backend would refuse the result.
        return Ok(None);
    }
    let run = TaskRun {
        elapsed_secs: Some(elapsed.as_secs_f64()),
        metrics: outcome.metrics(),
        ..TaskRun::default()
    };
    Ok(Some(outcome.into_chunk_result(
        lease.id.chunk,
        config.id.clone(),
        run,
    )))
}

/// Repeats `op` while the backend is unavailable, backing off; gives up on other errors, or
/// when stopping and the backend stays away (the lease then expires and is redelivered).
async fn retry<T, F, Fut>(stop: &watch::Receiver<bool>, mut op: F) -> BackendResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BackendResult<T>>,
{
    let mut backoff = MIN_BACKOFF;
    let mut attempts_while_stopping = 0;
    loop {
        match op().await {
            Err(BackendError::Unavailable(reason)) => {
                if *stop.borrow() {
                    attempts_while_stopping += 1;
                    if attempts_while_stopping > 5 {
                        return Err(BackendError::Unavailable(reason));
                    }
                }
                tracing::warn!(component = "worker", error = %reason, retry_in_ms = backoff.as_millis() as u64, "backend unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}
