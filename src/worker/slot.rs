//! One task slot: lease → run the task with its job's kind (on a blocking thread, extending the
//! lease meanwhile) → store the result → ack. Transport failures back off and retry the same
//! step, so a master restart costs time, not work.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{WorkerConfig, WorkerStats};
use crate::backend::{BackendError, BackendResult, ChunkResult, Lease, Queue, Store, TaskRun};
use crate::jobs::{self, PreparedTask};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The last job's prepared state (for a search: its compiled patterns), reused while consecutive
/// tasks belong to it.
type PreparedCache = Option<(String, Arc<dyn PreparedTask>)>;

/// Runs until `stop` turns true (finishing the task in hand).
pub async fn run_slot(
    index: usize,
    config: WorkerConfig,
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut cache: PreparedCache = None;
    while !*stop.borrow() {
        if let Some(heartbeat) = config.heartbeat.as_ref().filter(|h| h.leasing_paused()) {
            // Load-aware scheduling: a host whose resources already alarm takes no new work until they recover.
            tracing::info!(component = "worker", worker = %config.id, slot = index, "leasing paused by the collector");
            tokio::select! {
                _ = stop.changed() => break,
                _ = heartbeat.wait_until_leasing_allowed() => continue,
            }
        }
        let leased = tokio::select! {
            _ = stop.changed() => break,
            leased = queue.lease(&config.id, config.lease_wait) => leased,
        };
        match leased {
            Ok(Some(lease)) => {
                backoff = MIN_BACKOFF;
                if let Some(heartbeat) = &config.heartbeat {
                    heartbeat.task_started(format!("{}/{}", lease.id.job, lease.id.chunk));
                }
                let outcome = process(
                    &config,
                    queue.as_ref(),
                    store.as_ref(),
                    &lease,
                    &mut cache,
                    &stop,
                )
                .await;
                if let Some(heartbeat) = &config.heartbeat {
                    heartbeat.task_finished(outcome.is_ok());
                }
                match outcome {
                    Ok(()) => stats.tasks_completed.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.tasks_failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            Ok(None) => backoff = MIN_BACKOFF,
            Err(err) => {
                tracing::warn!(component = "worker", worker = %config.id, slot = index, error = %err, retry_in_ms = backoff.as_millis() as u64, "lease failed");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Runs one leased task to its ack (or nack on a task error).
async fn process(
    config: &WorkerConfig,
    queue: &dyn Queue,
    store: &dyn Store,
    lease: &Lease,
    cache: &mut PreparedCache,
    stop: &watch::Receiver<bool>,
) -> Result<(), String> {
    let result = match run_task(config, queue, lease, cache).await {
        Ok(result) => result,
        Err(error) => {
            tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, %error, "task failed");
            let _ = retry(stop, || queue.nack(lease, &error)).await;
            return Err(error);
        }
    };
    let first = match retry(stop, || store.put_chunk_result(lease, &result)).await {
        Ok(first) => first,
        Err(err @ BackendError::Refused { .. }) => {
            // The lease was lost (reclaimed, the master restarted): the task's current holder
            // stores the result; an ack would be refused too.
            tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, error = %err, "result refused");
            return Err(err.to_string());
        }
        Err(err) => return Err(err.to_string()),
    };
    retry(stop, || queue.ack(lease))
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, matches = result.matches, first, "task done");
    Ok(())
}

/// Runs the task with its job's kind on a blocking thread, extending the lease while it runs.
async fn run_task(
    config: &WorkerConfig,
    queue: &dyn Queue,
    lease: &Lease,
    cache: &mut PreparedCache,
) -> Result<ChunkResult, String> {
    let kind = jobs::require(&lease.kind).map_err(|e| e.to_string())?;
    let prepared = match cache {
        Some((job, prepared)) if *job == lease.id.job => prepared.clone(),
        _ => {
            let prepared = kind.prepare(&lease.spec).map_err(|e| e.to_string())?;
            *cache = Some((lease.id.job.clone(), prepared.clone()));
            prepared
        }
    };
    let (data, spec) = (lease.data.clone(), lease.spec.clone());
    // Timed on the blocking thread itself, so waiting for a free thread does not count.
    let kernel = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let outcome = prepared.run(&spec, &data);
        (outcome, started.elapsed())
    });
    tokio::pin!(kernel);
    let mut ticker = tokio::time::interval(config.extend_interval);
    ticker.tick().await;
    let outcome = loop {
        tokio::select! {
            done = &mut kernel => break done.map_err(|e| format!("{} task panicked: {e}", lease.kind))?,
            _ = ticker.tick() => {
                if let Ok(false) = queue.extend(lease).await {
                    tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, "lease lost while running the task");
                }
            }
        }
    };
    let (outcome, elapsed) = outcome;
    let outcome = outcome.map_err(|e| e.to_string())?;
    let run = TaskRun {
        elapsed_secs: Some(elapsed.as_secs_f64()),
        metrics: outcome.metrics(),
        ..TaskRun::default()
    };
    Ok(ChunkResult {
        chunk: lease.id.chunk,
        matches: outcome.matches,
        payload: outcome.payload,
        worker: config.id.clone(),
        run: Box::new(run),
    })
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
