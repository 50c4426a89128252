//! `GET /stats/history`: the grid's progress sampled every few seconds since the master started
//! (the last hour at most), so the dashboard's charts show the past the moment they load instead
//! of starting empty. Samples live in memory only: a restarted master starts a new history.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::HttpState;
use crate::master::views as snapshot;

/// Time between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: one hour at [`SAMPLE_INTERVAL`].
const KEPT: usize = 720;

/// One sample of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// When, in Unix seconds (UTC).
    pub at: f64,
    /// Chunks with a stored result, over all jobs (the same figure as `/stats`).
    pub chunks_done: u64,
    /// Tasks of unfinished jobs waiting in the queue, over all priorities.
    pub queued: u64,
}

/// The newest [`KEPT`] samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond the cap.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every sample kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().copied().collect()
    }
}

/// Samples the grid every [`SAMPLE_INTERVAL`], for as long as the HTTP side runs. A failed read
/// (the backend down) leaves a gap rather than a made-up point.
pub async fn sample(state: HttpState) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match snapshot::gather(&state.master).await {
            Ok(snapshot) => state.history.push(Sample {
                at: crate::time::unix_now(),
                chunks_done: snapshot.stats.chunks_done,
                queued: snapshot.stats.queued_by_priority.values().sum(),
            }),
            Err(err) => {
                tracing::debug!(component = "http", error = %err, "history sample skipped")
            }
        }
    }
}

/// `GET /stats/history`: `{"interval_secs": 5, "samples": [{"at", "chunks_done", "queued"}…]}`,
/// oldest first.
pub async fn handler(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "interval_secs": SAMPLE_INTERVAL.as_secs(),
        "samples": state.history.samples(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_newest_hour_oldest_first() {
        let history = History::default();
        for n in 0..(KEPT as u64 + 5) {
            history.push(Sample {
                at: n as f64,
                chunks_done: n,
                queued: 0,
            });
        }
        let samples = history.samples();
        assert_eq!(samples.len(), KEPT);
        assert_eq!(samples[0].chunks_done, 5, "the five oldest were dropped");
        assert_eq!(samples[KEPT - 1].chunks_done, KEPT as u64 + 4);
    }
}
