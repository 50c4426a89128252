//! The client's progress bar (indicatif): chunks done, MB/s and ETA on a terminal; silent when
//! output is not a terminal or `--json` is asked for.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::protocol::JobView;

/// Draws a job's progress while it runs.
pub struct JobProgress {
    bar: Option<ProgressBar>,
    bytes: Option<u64>,
    started: Instant,
}

impl JobProgress {
    /// A bar on stderr when `visible` and stderr is a terminal. `bytes` (the input size) turns
    /// chunk progress into MB/s.
    pub fn new(visible: bool, bytes: Option<u64>) -> Self {
        let bar = (visible && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chunks  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            bytes,
            started: Instant::now(),
        }
    }

    /// Shows a job's latest state.
    pub fn update(&mut self, view: &JobView, active_workers: u32) {
        let Some(bar) = &self.bar else { return };
        let total = view.progress.total_chunks.max(1) as u64;
        let done = view.progress.processed_chunks as u64;
        bar.set_length(total);
        bar.set_position(done);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let speed = match self.bytes {
            Some(bytes) => format!(
                "{:.1} MB/s",
                bytes as f64 * done as f64 / total as f64 / secs / 1e6
            ),
            None => String::new(),
        };
        bar.set_message(format!(
            "{speed}  {} matches  {active_workers} workers",
            view.partial_results.matches_found
        ));
    }

    /// Shows a message (upload phase and the like).
    pub fn message(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
