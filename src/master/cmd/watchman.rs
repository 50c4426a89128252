//! The watchman's requests: `worker_down` from the collector (reclaim that worker's leases at
//! once), `record_alert` / `record_worker` (the master owns the embedded store), and the
//! `list_workers` / `list_alerts` queries of `gridwatch workers` and `gridwatch alerts`.

use super::{Conn, HandlerError};
use crate::backend::{MonitorStore, QueueAdmin};
use crate::master::MasterState;
use crate::protocol::{Alert, ErrorCode, Message, WorkerView};

/// Answers one watchman request.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    message: Message,
) -> Result<(), HandlerError> {
    // A forgotten worker that stays dead is not stored again, nor are its alerts fired anew.
    let silenced = match &message {
        Message::RecordWorker { worker, .. } => state.forgotten.hides(worker),
        Message::RecordAlert { alert } => state.forgotten.silences(alert),
        _ => false,
    };
    if silenced {
        conn.write_message(&Message::Recorded).await?;
        return Ok(());
    }
    let reply = answer(&message, state.queue.as_ref(), state.store.as_ref())
        .await
        .ok_or_else(|| {
            HandlerError::refused(ErrorCode::UnexpectedMessage, "not a watchman request")
        })?;
    let reply = match reply {
        // The stored views, plus the workers leasing without an agent.
        Message::Workers { .. } => match crate::master::views::listed_workers(state).await {
            Ok(workers) => Message::Workers { workers },
            Err(err) => internal(format!("reading worker metrics failed: {err}")),
        },
        Message::Alerts { mut alerts } => {
            alerts.retain(|alert| !state.forgotten.silences(alert));
            Message::Alerts { alerts }
        }
        other => other,
    };
    conn.write_message(&reply).await?;
    Ok(())
}

/// Answers a watchman message; `None` if `message` is not one (the caller handles it).
pub async fn answer(
    message: &Message,
    queue: &dyn QueueAdmin,
    store: &dyn MonitorStore,
) -> Option<Message> {
    let reply = match message {
        Message::WorkerDown {
            worker_id,
            reason,
            last_task_id,
            requeued_by_collector,
            ..
        } => {
            let last_task = last_task_id.as_deref().unwrap_or("");
            tracing::warn!(component = "master", worker = %worker_id, reason, last_task,
                "worker_down from the collector");
            match queue.reclaim_worker(worker_id).await {
                Ok(reclaimed) => {
                    let by_collector = requeued_by_collector.unwrap_or(0);
                    if reclaimed == 0 && by_collector > 0 {
                        tracing::info!(worker = %worker_id, requeued_by_collector = by_collector,
                            "the collector re-queued the dead worker's tasks already");
                    } else if reclaimed == 0 {
                        tracing::info!(worker = %worker_id, "the dead worker holds no tasks: nothing to re-queue");
                    } else {
                        tracing::info!(worker = %worker_id, reclaimed, "re-queued the dead worker's tasks");
                    }
                    Message::WorkerDownAck {
                        worker_id: worker_id.clone(),
                        reclaimed: reclaimed as u64,
                    }
                }
                Err(err) => internal(format!("reclaiming {worker_id}'s tasks failed: {err}")),
            }
        }
        Message::RecordAlert { alert } => match store.push_alert(&to_json(alert)).await {
            Ok(()) => Message::Recorded,
            Err(err) => internal(format!("storing alert {} failed: {err}", alert.id)),
        },
        Message::RecordWorker { worker, ttl_secs } => {
            let ttl = std::time::Duration::try_from_secs_f64(*ttl_secs).unwrap_or_default();
            match store
                .put_worker_metrics(&worker.worker_id, &to_json(worker), ttl)
                .await
            {
                Ok(()) => Message::Recorded,
                Err(err) => internal(format!("storing worker {} failed: {err}", worker.worker_id)),
            }
        }
        Message::ListWorkers => match store.worker_metrics().await {
            Ok(entries) => Message::Workers {
                workers: decode_all::<WorkerView>(entries.into_iter().map(|(_, v)| v)),
            },
            Err(err) => internal(format!("reading worker metrics failed: {err}")),
        },
        Message::ListAlerts { limit } => match store.alerts(*limit as usize).await {
            Ok(alerts) => Message::Alerts {
                alerts: decode_all::<Alert>(alerts),
            },
            Err(err) => internal(format!("reading the alert history failed: {err}")),
        },
        _ => return None,
    };
    Some(reply)
}

fn internal(message: String) -> Message {
    tracing::error!("{message}");
    Message::Error {
        code: ErrorCode::Internal,
        message,
        reason: None,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Decodes stored JSON, skipping entries written by another version rather than failing all.
fn decode_all<T: serde::de::DeserializeOwned>(
    values: impl IntoIterator<Item = serde_json::Value>,
) -> Vec<T> {
    values
        .into_iter()
        .filter_map(|value| serde_json::from_value(value).ok())
        .collect()
}
