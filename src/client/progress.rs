//! The client's progress bar (indicatif): while a submit uploads, bytes sent with rate and ETA;
//! then chunks done, MB/s, the job's running total and ETA; a failure stays on screen. Silent
//! when output is not a terminal or `--json` is asked for.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use gridwatch::protocol::JobView;

/// Before anything is known: a spinner and what is happening.
const WAITING: &str = "{spinner} [{elapsed_precise}] {msg}";
/// While the input uploads: bytes, not chunks (the master counts chunks once it has them).
const UPLOADING: &str =
    "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} uploaded  {binary_bytes_per_sec}  ETA {eta}  {msg}";
/// While the job runs.
const RUNNING: &str = "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chunks  {msg}  ETA {eta}";

/// Which template the bar shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    Uploading,
    Running,
}

/// Draws a job's progress while it uploads and runs.
pub struct JobProgress {
    bar: Option<ProgressBar>,
    bytes: Option<u64>,
    started: Instant,
    phase: Phase,
}

impl JobProgress {
    /// A bar on stderr when `visible` and stderr is a terminal. `bytes` (the input size) turns
    /// chunk progress into MB/s.
    pub fn new(visible: bool, bytes: Option<u64>) -> Self {
        let bar = (visible && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(WAITING));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            bytes,
            started: Instant::now(),
            phase: Phase::Waiting,
        }
    }

    fn enter(&mut self, phase: Phase) -> Option<&ProgressBar> {
        let bar = self.bar.as_ref()?;
        if self.phase != phase {
            self.phase = phase;
            bar.set_message("");
            bar.set_style(style(match phase {
                Phase::Waiting => WAITING,
                Phase::Uploading => UPLOADING,
                Phase::Running => RUNNING,
            }));
            if phase == Phase::Uploading {
                bar.reset();
            }
        }
        Some(bar)
    }

    /// Shows an upload: `sent` of `total` bytes so far.
    pub fn uploading(&mut self, sent: u64, total: u64) {
        let Some(bar) = self.enter(Phase::Uploading) else {
            return;
        };
        bar.set_length(total);
        bar.set_position(sent);
    }

    /// Shows a job's latest state.
    pub fn update(&mut self, view: &JobView, active_workers: u32) {
        let (bytes, started) = (self.bytes, self.started);
        let Some(bar) = self.enter(Phase::Running) else {
            return;
        };
        let total = view.progress.total_chunks.max(1) as u64;
        let done = view.progress.processed_chunks as u64;
        bar.set_length(total);
        bar.set_position(done);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let speed = match bytes {
            Some(bytes) => format!(
                "{:.1} MB/s  ",
                bytes as f64 * done as f64 / total as f64 / secs / 1e6
            ),
            None => String::new(),
        };
        bar.set_message(format!(
            "{speed}{}  {}",
            counted(view),
            super::count_of(active_workers.into(), "worker")
        ));
    }

    /// Prints a line on stderr above the bar (the bar is drawn again below it).
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Shows a message (what is happening before the upload or the job's progress).
    pub fn message(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }

    /// Ends the bar of a submit that failed: an upload under way stops where it is and stays
    /// on screen marked as failed, showing how far it got (the error follows it); any other
    /// bar is removed.
    pub fn fail_upload(&mut self) {
        let Some(bar) = self.bar.take() else { return };
        if self.phase == Phase::Uploading {
            bar.abandon_with_message("UPLOAD FAILED");
        } else {
            bar.finish_and_clear();
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A count with what it counts, for a table cell: `219 matches`, `1 collision`.
pub fn counted(view: &JobView) -> String {
    let count = view.partial_results.matches_found;
    let figure = view.progress_figure.as_str();
    if count == 1 {
        let one = match figure {
            "matches" => "match",
            plural => plural.strip_suffix('s').unwrap_or(plural),
        };
        format!("1 {one}")
    } else {
        format!("{count} {figure}")
    }
}
