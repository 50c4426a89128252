//! Settling results in batches: slots hand each finished task to one flusher, which stores the
//! results and acks the leases with one `complete_batch` call for everything pending. A lone
//! result is never held back: the flusher sends whatever has arrived as soon as its previous call
//! returns, so a batch forms only while a call is in flight. Results travel with their leases,
//! and a lease is acked only together with (after) its stored result, so a crash at any point
//! loses no task: an unsettled lease comes back when its visibility timeout passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::prefetch::Buffer;
use super::{WorkerConfig, WorkerStats, MAX_BACKOFF, MIN_BACKOFF};
use crate::backend::{BackendError, Completion, Leases, ResultSink, MAX_BATCH};

/// Attempts made while stopping before a batch the backend will not take is left to expire.
const ATTEMPTS_WHILE_STOPPING: u32 = 5;

/// Settles finished tasks from `finished` until every sender is gone and all are settled.
pub(super) async fn flush(
    config: WorkerConfig,
    queue: Arc<dyn Leases>,
    store: Arc<dyn ResultSink>,
    buffer: Arc<Buffer>,
    stats: Arc<WorkerStats>,
    mut finished: mpsc::UnboundedReceiver<Completion>,
    stop: watch::Receiver<bool>,
) {
    while let Some(first) = finished.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match finished.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let tokens: Vec<String> = batch.iter().map(|item| item.lease.token.clone()).collect();
        settle(
            &config,
            queue.as_ref(),
            store.as_ref(),
            &stats,
            batch,
            &stop,
        )
        .await;
        buffer.settled(tokens.iter().map(String::as_str));
    }
}

/// Stores and acks one batch, sending again the items the backend could not be reached for.
async fn settle(
    config: &WorkerConfig,
    queue: &dyn Leases,
    store: &dyn ResultSink,
    stats: &WorkerStats,
    mut items: Vec<Completion>,
    stop: &watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut attempts_while_stopping = 0;
    loop {
        let outcomes = match queue.complete_batch(store, &items).await {
            Ok(outcomes) => outcomes,
            Err(BackendError::Unavailable(reason)) => items
                .iter()
                .map(|_| Err(BackendError::Unavailable(reason.clone())))
                .collect(),
            Err(err) => {
                tracing::warn!(component = "worker", worker = %config.id, tasks = items.len(), error = %err, "results not stored");
                count_failed(stats, items.len());
                return;
            }
        };
        let mut again = Vec::new();
        let mut unavailable = None;
        for (item, outcome) in items.into_iter().zip(outcomes) {
            let lease = &item.lease;
            match outcome {
                Ok(first) => {
                    tracing::debug!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, matches = item.result.matches, first, "task done");
                    stats.tasks_completed.fetch_add(1, Ordering::Relaxed);
                    if let Some(heartbeat) = &config.heartbeat {
                        heartbeat.tasks_completed_add(1);
                    }
                }
                Err(BackendError::Unavailable(reason)) => {
                    unavailable = Some(reason);
                    again.push(item);
                }
                Err(err) => {
                    // A refusal means the lease was lost (reclaimed, the master restarted): the
                    // task's current holder stores the result.
                    tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, error = %err, "result refused");
                    count_failed(stats, 1);
                }
            }
        }
        let Some(reason) = unavailable else { return };
        if *stop.borrow() {
            attempts_while_stopping += 1;
            if attempts_while_stopping > ATTEMPTS_WHILE_STOPPING {
                tracing::warn!(component = "worker", worker = %config.id, tasks = again.len(), error = %reason, "stopping with results unsent; their tasks will be delivered again");
                count_failed(stats, again.len());
                return;
            }
        }
        tracing::warn!(component = "worker", error = %reason, retry_in_ms = backoff.as_millis() as u64, "backend unavailable");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        items = again;
    }
}

fn count_failed(stats: &WorkerStats, tasks: usize) {
    stats
        .tasks_failed
        .fetch_add(tasks as u64, Ordering::Relaxed);
}
