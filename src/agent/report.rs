//! What an agent tells the collector about its worker: one `WorkerReport` per interval or status
//! change (seed 000 §4.3, extended with disk use, the worker process's own CPU and RSS, and the
//! round trip of the previous report).

use serde::{Deserialize, Serialize};

/// The worker's status as its agent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerStatus {
    /// The agent is up but no worker has said hello yet.
    Waiting,
    /// Heartbeats arrive on time.
    Alive,
    /// The worker process is gone, or its heartbeats stopped for longer than the timeout.
    Dead,
    /// The worker said goodbye before exiting (a clean shutdown, not a failure).
    Stopped,
}

impl WorkerStatus {
    /// Upper-case name as shown in logs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Waiting => "WAITING",
            WorkerStatus::Alive => "ALIVE",
            WorkerStatus::Dead => "DEAD",
            WorkerStatus::Stopped => "STOPPED",
        }
    }
}

/// One metrics report from an agent (the `data` of a `metrics` message).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker this agent watches.
    pub worker_id: String,
    /// Per-agent sequence number, from 1; the collector's ack names it.
    pub seq: u64,
    /// Unix time (seconds) the report was made.
    pub timestamp: f64,
    /// The worker's status.
    pub status: WorkerStatus,
    /// Why the status is what it is (e.g. "process 4242 exited"), for the alert message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Host CPU use, percent of all cores.
    pub cpu_percent: f64,
    /// Host memory in use, MiB.
    pub memory_mb: f64,
    /// Host memory in use, percent of total.
    pub memory_percent: f64,
    /// Use of the disk holding the agent's working directory, percent.
    pub disk_percent: f64,
    /// The worker process's CPU use (percent of one core), if its pid is known.
    #[serde(default)]
    pub process_cpu_percent: Option<f64>,
    /// The worker process's resident memory, MiB, if its pid is known.
    #[serde(default)]
    pub process_rss_mb: Option<f64>,
    /// The worker's pid, from its hello.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Tasks the worker has completed since it started (from its heartbeats).
    pub tasks_processed: u64,
    /// The task the worker is running now, if any.
    #[serde(default)]
    pub current_task: Option<String>,
    /// Seconds since the worker said hello to this agent.
    #[serde(default)]
    pub worker_uptime_secs: Option<f64>,
    /// How often the agent reports when nothing changes, seconds.
    pub report_interval_secs: f64,
    /// Round trip of the previous report (send to ack), milliseconds.
    #[serde(default)]
    pub last_rtt_ms: Option<f64>,
}
