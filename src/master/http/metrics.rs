//! `GET /metrics`: the grid in the Prometheus text exposition format (0.0.4): one `# HELP` and
//! one `# TYPE` line per family, then its samples, label values escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::response::Response;

use super::{prometheus_text, ApiError, HttpState};
use crate::master::ops::{process_usage, Histogram, TASK_BUCKETS};
use crate::master::views::{self as snapshot, Snapshot};
use crate::protocol::{LivenessState, WorkerReport, WorkerView};

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

    /// The `_bucket`, `_sum` and `_count` samples of one histogram.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in histogram.bounds.iter().zip(&histogram.buckets) {
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *count as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, histogram.count as f64);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
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

/// The whole exposition for one snapshot. Counters end in `_total`, fractions are 0-1
/// `_ratio`s, durations seconds and sizes bytes, as Prometheus' naming rules ask.
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
    let help = "Matches in stored chunk results, over all search jobs (other kinds count \
                iterations or collisions: see gridwatch_kind_matches).";
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
    render_queue(&mut out, snapshot);
    render_durations(&mut out, snapshot);
    render_process(&mut out);
    render_workers(&mut out, snapshot);
    out.text
}

/// Queue depth, leases and the task counters this master saw pass through its queue.
fn render_queue(out: &mut Exposition, snapshot: &Snapshot) {
    let stats = &snapshot.stats;
    let ops = &snapshot.ops;
    let help = "Tasks of unfinished jobs waiting for a worker (no result, no lease), by priority.";
    out.by_label(
        "gridwatch_queue_tasks",
        help,
        "priority",
        &stats.queued_by_priority,
    );
    let name = "gridwatch_queue_oldest_task_age_seconds";
    out.family(
        name,
        "gauge",
        "Seconds the oldest task nobody holds has waited, by priority (0 when none waits).",
    );
    for (priority, age) in &stats.oldest_task_age_by_priority {
        out.sample(name, &[("priority", priority)], *age);
    }
    let help = "Leases handed out by this master and not yet acknowledged or returned.";
    out.single(
        "gridwatch_leases_in_flight",
        help,
        stats.leases_in_flight as f64,
    );
    let counters = [
        (
            "gridwatch_tasks_acked_total",
            "Tasks acknowledged after their result was stored.",
            &ops.acked,
        ),
        (
            "gridwatch_task_retries_total",
            "Failed tasks queued again for another attempt.",
            &ops.retries,
        ),
        (
            "gridwatch_tasks_requeued_total",
            "Leases moved back to the queue: a dead worker's, or expired ones.",
            &ops.requeued,
        ),
        (
            "gridwatch_tasks_dead_lettered_total",
            "Tasks whose attempts ran out (their job failed).",
            &ops.dead_lettered,
        ),
        (
            "gridwatch_uploaded_bytes_total",
            "Task input bytes enqueued (carried by the task or read from a stored genome, overlaps included).",
            &ops.bytes_uploaded,
        ),
        (
            "gridwatch_searched_bytes_total",
            "Input bytes of search tasks acknowledged.",
            &ops.bytes_searched,
        ),
        (
            "gridwatch_upload_bytes_total",
            "Bytes clients uploaded with their submits; a search of a genome the master already stores uploads none.",
            &ops.upload_bytes,
        ),
        (
            "gridwatch_task_input_sent_bytes_total",
            "Task input bytes this master sent to workers with their leases.",
            &ops.input_sent,
        ),
        (
            "gridwatch_task_input_read_in_place_bytes_total",
            "Task input bases workers on this host read from the stored genomes' files themselves (--genome-dir): their leases carried none.",
            &ops.input_read_in_place,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], *value as f64);
    }
    let name = "gridwatch_autoscale_events_total";
    out.family(
        name,
        "counter",
        "Workers an autoscaler (`up --autoscale`) started (up) or stopped (down).",
    );
    for (direction, count) in &ops.autoscale {
        out.sample(name, &[("direction", direction)], *count as f64);
    }
    let name = "gridwatch_jobs_finished_total";
    out.family(
        name,
        "counter",
        "Jobs that finished while this master ran, by outcome.",
    );
    for outcome in ["completed", "failed", "cancelled"] {
        let count = ops.finished.get(outcome).copied().unwrap_or(0);
        out.sample(name, &[("outcome", outcome)], count as f64);
    }
}

/// Task duration per kind (lease to acknowledgement), command tasks' run times and outcomes, and
/// job duration (creation to end).
fn render_durations(out: &mut Exposition, snapshot: &Snapshot) {
    let name = "gridwatch_task_duration_seconds";
    let help = "Time from lease to acknowledgement of tasks leased through this master, by kind.";
    out.family(name, "histogram", help);
    for kind in crate::jobs::KINDS.iter().map(|k| k.name()) {
        let empty = Histogram::new(&TASK_BUCKETS);
        let histogram = snapshot.ops.task_seconds.get(kind).unwrap_or(&empty);
        out.histogram(name, &[("kind", kind)], histogram);
    }
    let name = "gridwatch_command_task_duration_seconds";
    let help = "Wall time of the programs of the stored tasks of command jobs that ended while \
                this master ran (the last attempt of each task), on either backend.";
    out.family(name, "histogram", help);
    out.histogram(name, &[], &snapshot.ops.command_seconds);
    let name = "gridwatch_command_tasks_total";
    let help = "Stored tasks of command jobs that ended while this master ran, by how the last \
                attempt ended: ok (exit 0), exit_nonzero, signal, timeout, memory.";
    out.family(name, "counter", help);
    for (outcome, count) in &snapshot.ops.command_outcomes {
        out.sample(name, &[("outcome", outcome)], *count as f64);
    }
    let name = "gridwatch_job_duration_seconds";
    let help = "Time from creation to end of the jobs that finished while this master ran.";
    out.family(name, "histogram", help);
    out.histogram(name, &[], &snapshot.ops.job_seconds);
}

/// The master process's own CPU time and memory, named as every Prometheus client names them.
fn render_process(out: &mut Exposition) {
    let Some((cpu_seconds, rss_bytes)) = process_usage() else {
        return;
    };
    let name = "process_cpu_seconds_total";
    out.family(
        name,
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    out.sample(name, &[], cpu_seconds);
    let help = "Resident memory size in bytes.";
    out.single("process_resident_memory_bytes", help, rss_bytes as f64);
    if let Some(start) = process_start_time() {
        let help = "Start time of the process since unix epoch in seconds.";
        out.single("process_start_time_seconds", help, start);
    }
}

/// When this process started, Unix seconds.
fn process_start_time() -> Option<f64> {
    static START: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let uptime = std::time::Duration::from_secs_f64(own_uptime_secs()?);
    Some(*START.get_or_init(|| crate::time::unix_now() - uptime.as_secs_f64()))
}

/// Seconds since this process started: the host's uptime minus the process's start.
fn own_uptime_secs() -> Option<f64> {
    let started = crate::procfs::stat(None)?.started_after_boot_secs;
    Some((crate::procfs::uptime_secs()? - started).max(0.0))
}

/// Per-worker families, labelled by worker id. The worker process's own CPU and memory are
/// kept apart from its host's: several workers on one host share the host's figures.
fn render_workers(out: &mut Exposition, snapshot: &Snapshot) {
    type Field = fn(&WorkerView) -> Option<f64>;
    const MIB: f64 = 1024.0 * 1024.0;
    let families: [(&str, &str, &str, Field); 10] = [
        (
            "gridwatch_worker_up",
            "gauge",
            "1 if the worker is active, unstable or leasing without an agent, 0 if inactive.",
            |w| Some(f64::from(u8::from(w.state != LivenessState::Inactive))),
        ),
        (
            "gridwatch_worker_process_cpu_ratio",
            "gauge",
            "CPU use of the worker process, in cores (1 = one core busy).",
            |w| reported(w)?.process_cpu_percent.map(|p| p / 100.0),
        ),
        (
            "gridwatch_worker_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the worker process, bytes.",
            |w| reported(w)?.process_rss_mb.map(|mb| mb * MIB),
        ),
        (
            "gridwatch_host_cpu_ratio",
            "gauge",
            "CPU use of the worker's host, all cores, 0-1 (the same for workers sharing a host).",
            |w| reported(w).map(|r| r.cpu_percent / 100.0),
        ),
        (
            "gridwatch_host_memory_ratio",
            "gauge",
            "Memory in use on the worker's host, 0-1.",
            |w| reported(w).map(|r| r.memory_percent / 100.0),
        ),
        (
            "gridwatch_host_memory_used_bytes",
            "gauge",
            "Memory in use on the worker's host, bytes.",
            |w| reported(w).map(|r| r.memory_mb * MIB),
        ),
        (
            "gridwatch_host_disk_ratio",
            "gauge",
            "Use of the disk holding the agent's working directory, 0-1.",
            |w| reported(w).map(|r| r.disk_percent / 100.0),
        ),
        (
            "gridwatch_worker_tasks_total",
            "counter",
            "Tasks the worker completed since it started.",
            |w| reported(w).map(|_| w.tasks_done as f64),
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

/// The agent's latest report, `None` for a worker no agent watches (its zeros are not figures).
fn reported(worker: &WorkerView) -> Option<&WorkerReport> {
    (worker.state != LivenessState::NoAgent).then_some(&worker.latest)
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
