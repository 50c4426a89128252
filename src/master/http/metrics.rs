//! `GET /metrics`: the grid in the Prometheus text exposition format (0.0.4): one `# HELP` and
//! one `# TYPE` line per family, then its samples, label values escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::response::Response;

use super::snapshot::{self, Snapshot};
use super::{prometheus_text, ApiError, HttpState};
use crate::protocol::{LivenessState, WorkerView};

/// `GET /metrics`.
pub async fn handler(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let snapshot = snapshot::gather(&state.master).await?;
    Ok(prometheus_text(render(&snapshot, state.backend)))
}

/// Builds the exposition text; a family is announced once, before its samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// A gauge with one unlabelled sample.
    fn single(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A gauge with one sample per entry of `counts`, labelled `label`.
    fn by_label(&mut self, name: &str, help: &str, label: &str, counts: &BTreeMap<&str, u64>) {
        self.family(name, "gauge", help);
        for (value, count) in counts {
            self.sample(name, &[(label, value)], *count as f64);
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus spells infinities `+Inf` / `-Inf` and not-a-number `NaN`.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// The whole exposition for one snapshot.
fn render(snapshot: &Snapshot, backend: &str) -> String {
    let stats = &snapshot.stats;
    let mut out = Exposition::default();
    let help = "Build and backend of this master (always 1).";
    out.family("gridwatch_info", "gauge", help);
    let labels = [("version", env!("CARGO_PKG_VERSION")), ("backend", backend)];
    out.sample("gridwatch_info", &labels, 1.0);
    out.by_label("gridwatch_jobs", "Jobs by status.", "status", &stats.jobs);
    let help = "Chunks with a stored result, over all jobs.";
    out.single("gridwatch_chunks_done", help, stats.chunks_done as f64);
    let help = "Chunks in all jobs.";
    out.single("gridwatch_chunks", help, stats.chunks_total as f64);
    let help = "Matches in stored chunk results, over all jobs.";
    out.single("gridwatch_matches", help, stats.matches as f64);
    let help = "Jobs by kind.";
    out.by_label("gridwatch_kind_jobs", help, "kind", &stats.jobs_by_kind);
    let help = "Progress counts of stored task results by job kind: matches (search), \
                iterations (julia), collisions (particles).";
    let by_kind = &stats.matches_by_kind;
    out.by_label("gridwatch_kind_matches", help, "kind", by_kind);
    let help = "Workers by liveness state (the collector's view).";
    out.by_label("gridwatch_workers", help, "state", &stats.workers);
    let help = "Workers heard from by the master or the queue in the last 10 s.";
    let connected = f64::from(stats.active_workers);
    out.single("gridwatch_workers_connected", help, connected);
    let help = "Alerts firing now, by severity.";
    out.by_label(
        "gridwatch_alerts_firing",
        help,
        "severity",
        &stats.alerts_firing,
    );
    let name = "gridwatch_results_refused_total";
    let help =
        "Chunk results refused: not from the lease holder, for no such task, or out of range.";
    out.family(name, "counter", help);
    for (reason, count) in &stats.results_refused {
        out.sample(name, &[("reason", reason)], *count as f64);
    }
    render_workers(&mut out, snapshot);
    out.text
}

/// Per-worker families, labelled by worker id.
fn render_workers(out: &mut Exposition, snapshot: &Snapshot) {
    type Field = fn(&WorkerView) -> Option<f64>;
    let families: [(&str, &str, &str, Field); 6] = [
        (
            "gridwatch_worker_up",
            "gauge",
            "1 if the worker is active or unstable, 0 if inactive.",
            |w| {
                Some(if w.state == LivenessState::Inactive {
                    0.0
                } else {
                    1.0
                })
            },
        ),
        (
            "gridwatch_worker_cpu_percent",
            "gauge",
            "Host CPU use of the worker's machine, percent.",
            |w| Some(w.latest.cpu_percent),
        ),
        (
            "gridwatch_worker_memory_percent",
            "gauge",
            "Host memory use of the worker's machine, percent.",
            |w| Some(w.latest.memory_percent),
        ),
        (
            "gridwatch_worker_tasks_total",
            "counter",
            "Tasks the worker completed since it started.",
            |w| Some(w.tasks_done as f64),
        ),
        (
            "gridwatch_worker_report_rtt_seconds",
            "gauge",
            "Mean round trip of the agent's last 10 reports.",
            |w| w.mean_rtt_ms.map(|ms| ms / 1000.0),
        ),
        (
            "gridwatch_worker_leasing_paused",
            "gauge",
            "1 while a firing resource warning stops the worker leasing.",
            |w| Some(f64::from(u8::from(w.leasing_paused))),
        ),
    ];
    for (name, kind, help, field) in families {
        out.family(name, kind, help);
        for worker in &snapshot.workers {
            if let Some(value) = field(worker) {
                out.sample(name, &[("worker", &worker.worker_id)], value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_values_spelled_as_prometheus_does() {
        let mut out = Exposition::default();
        out.family("m", "gauge", "a \\ help\nline");
        out.sample("m", &[("worker", "w\"1\\\n")], 2.5);
        out.sample("m", &[], f64::INFINITY);
        out.sample("m", &[("a", "x"), ("b", "y")], f64::NAN);
        let expected = "# HELP m a \\\\ help\\nline\n# TYPE m gauge\n\
                        m{worker=\"w\\\"1\\\\\\n\"} 2.5\nm +Inf\nm{a=\"x\",b=\"y\"} NaN\n";
        assert_eq!(out.text, expected);
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }
}
