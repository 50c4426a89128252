//! Alert events to a plain webhook: each event POSTed as the JSON object the alert log holds, in
//! order, each retried with backoff until the receiver takes it. Events wait in a bounded queue
//! meanwhile; when it is full the oldest is dropped (the alert log still has it).

use std::collections::VecDeque;
use std::future::Future;

use tokio::sync::mpsc::Receiver;

use super::http::Endpoint;
use super::{Backoff, Settings};
use crate::protocol::Alert;

/// Delivers alert events from `events` to the webhook at `endpoint` until `shutdown`.
pub async fn deliver(
    endpoint: Endpoint,
    settings: Settings,
    mut events: Receiver<Alert>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let mut waiting: VecDeque<Alert> = VecDeque::new();
    let mut backoff = Backoff::new(&endpoint);
    let mut dropped = 0u64;
    loop {
        if waiting.is_empty() {
            tokio::select! {
                _ = &mut shutdown => return,
                event = events.recv() => match event {
                    Some(alert) => waiting.push_back(alert),
                    None => return,
                },
            }
        }
        while let Ok(alert) = events.try_recv() {
            if waiting.len() >= settings.queue {
                waiting.pop_front();
                dropped += 1;
            }
            waiting.push_back(alert);
        }
        if dropped > 0 {
            tracing::warn!(url = %endpoint.url(), dropped, "webhook queue full: dropped the oldest alert events (the alert log has them)");
            dropped = 0;
        }
        let Some(next) = waiting.front() else {
            continue;
        };
        let body = serde_json::to_vec(next).unwrap_or_default();
        let result = tokio::select! {
            _ = &mut shutdown => return,
            result = endpoint.post_json(body, settings.timeout) => result,
        };
        match result {
            Ok(()) => {
                waiting.pop_front();
                backoff.succeeded(1);
            }
            Err(err) => {
                let pause = backoff.failed(&err);
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
