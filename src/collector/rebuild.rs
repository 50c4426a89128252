//! A restarted collector takes back what its predecessor knew: the worker views it stored (in
//! Redis, or in the master's store with the embedded backend). Read once at start and retried
//! until the store answers, so a host that died while no collector watched is still judged lost,
//! with the host-loss window counted from the moment this collector started listening.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::clock::Moment;
use super::server::SharedWatchtower;
use crate::backend::MonitorSink;
use crate::protocol::WorkerView;

/// Most workers taken back: far more than a grid runs, few enough that a store holding garbage
/// cannot make the collector keep it all.
pub const MAX_REMEMBERED: usize = 4096;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Reads the stored worker views and hands them to `tower` as heard at `started`; retries with
/// backoff while the store does not answer, until `shutdown` completes.
pub async fn rebuild(
    store: Arc<dyn MonitorSink>,
    tower: SharedWatchtower,
    started: Moment,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let mut retry = RETRY_MIN;
    let mut warned = false;
    loop {
        let read = tokio::select! {
            read = store.worker_metrics() => read,
            _ = &mut shutdown => return,
        };
        match read {
            Ok(stored) => {
                let views = decode(stored);
                let known = views.len();
                let remembered = tower.lock().remember(views, started, Moment::now());
                tracing::info!(
                    known,
                    remembered,
                    "took back the workers the grid knew; each one whose agent is not heard \
                     from within the host-loss window is lost"
                );
                return;
            }
            Err(err) => {
                if !warned {
                    tracing::warn!(error = %err,
                        "cannot read the stored worker views yet; will retry");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = &mut shutdown => return,
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// The views in the wire shape, at most [`MAX_REMEMBERED`] of them; others are skipped.
fn decode(stored: Vec<(String, serde_json::Value)>) -> Vec<WorkerView> {
    let total = stored.len();
    let views: Vec<WorkerView> = stored
        .into_iter()
        .filter_map(|(worker, value)| match serde_json::from_value(value) {
            Ok(view) => Some(view),
            Err(err) => {
                tracing::debug!(worker = %worker, error = %err, "a stored worker view is not in the wire shape");
                None
            }
        })
        .take(MAX_REMEMBERED)
        .collect();
    if total > MAX_REMEMBERED {
        tracing::warn!(
            total,
            kept = MAX_REMEMBERED,
            "more stored worker views than the collector takes back"
        );
    }
    views
}
