//! What the watchman puts on the wire: an agent's report on its worker, alert events, and the
//! liveness view of a worker. Defined here, below every role, because agents, the collector, the
//! master and the clients all send or read them.

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
    /// The agent has waited a whole heartbeat timeout and no worker has said hello: the worker
    /// it watches is not running (a host restarted with its agent alone, say).
    Missing,
}

impl WorkerStatus {
    /// Upper-case name as shown in logs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Waiting => "WAITING",
            WorkerStatus::Alive => "ALIVE",
            WorkerStatus::Dead => "DEAD",
            WorkerStatus::Stopped => "STOPPED",
            WorkerStatus::Missing => "MISSING",
        }
    }
}

/// A task a worker runs now, as it tells its agent in each heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningTask {
    /// The task (`job/chunk`).
    pub task: String,
    /// The pid of the task's child process, which leads its own process group (command tasks
    /// only; other kinds run inside the worker process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// A running task and what its process group uses, as the agent measured it for a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskUsage {
    /// The task (`job/chunk`).
    pub task: String,
    /// The child's pid (its process group's id), for a command task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// CPU used by the task's whole process group, percent of one core, since the previous
    /// report (since the task started, on its first report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Resident memory of the task's whole process group, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_mb: Option<f64>,
    /// Live processes in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
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
    /// Host CPU used by the grid's own worker processes on this host, percent of all cores:
    /// the part of `cpu_percent` that is the grid doing its work, not pressure on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_cpu_percent: Option<f64>,
    /// The worker's pid, from its hello.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Tasks the worker has completed since it started (from its heartbeats).
    pub tasks_processed: u64,
    /// The task the worker is running now, if any.
    #[serde(default)]
    pub current_task: Option<String>,
    /// Every task the worker runs now (one per busy slot), with its process group's CPU and
    /// memory when it runs as a child process. Absent from older agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskUsage>,
    /// Seconds since the worker said hello to this agent.
    #[serde(default)]
    pub worker_uptime_secs: Option<f64>,
    /// How often the agent reports when nothing changes, seconds.
    pub report_interval_secs: f64,
    /// Round trip of the previous report (send to ack), milliseconds.
    #[serde(default)]
    pub last_rtt_ms: Option<f64>,
    /// How often the agent sends heartbeats between reports, seconds (none from older agents,
    /// or when turned off). Known from the first report, so a busy worker whose reports flow
    /// without a pause is still judged by the heartbeat bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beat_interval_secs: Option<f64>,
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Needs attention soon (a resource running hot); the worker stops leasing meanwhile.
    Warning,
    /// The worker is dead or silent; its tasks are reclaimed.
    Critical,
}

impl Severity {
    /// Upper-case name as shown in logs and tables (`CRITICAL`, `WARNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's duration; nothing is sent.
    Pending,
    /// The condition has held long enough; sent once.
    Firing,
    /// The condition cleared after firing; sent once.
    Resolved,
}

/// One alert event, as written to the alert log and the store's alert history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Identifies one firing of one rule for one worker; its resolved event carries the same id.
    pub id: String,
    /// The rule's name (`worker_dead`, `worker_unreachable`, `worker_missing`, `no_report`,
    /// `cpu_high`, `memory_high`).
    pub rule: String,
    /// How urgent.
    pub severity: Severity,
    /// The worker concerned.
    pub worker_id: String,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// A sentence for humans.
    pub message: String,
    /// The observed value that tripped the rule (percent, seconds), when it has one.
    #[serde(default)]
    pub value: Option<f64>,
    /// Unix time (seconds) the condition started to hold.
    pub active_since: f64,
    /// Unix time (seconds) of this event.
    pub timestamp: f64,
}

impl Alert {
    /// Whether this alert reports the worker dead (or presumed dead), so its tasks must be
    /// reclaimed.
    pub fn means_worker_down(&self) -> bool {
        self.severity == Severity::Critical && self.state == AlertState::Firing
    }
}

/// A worker's liveness class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessState {
    /// Reports arrive on time and the worker is alive.
    Active,
    /// Alive but reports were missed lately.
    Unstable,
    /// Dead, stopped, without a worker, or silent for several report intervals.
    Inactive,
    /// Leasing from the master (or the queue) but watched by no agent: no report, no metrics,
    /// no alerts, yet it holds and runs tasks.
    #[serde(rename = "no agent")]
    NoAgent,
}

impl LivenessState {
    /// Lower-case name as shown in tables, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessState::Active => "active",
            LivenessState::Unstable => "unstable",
            LivenessState::Inactive => "inactive",
            LivenessState::NoAgent => "no agent",
        }
    }

    /// Every state, in the order views list them.
    pub const ALL: [LivenessState; 4] = [
        LivenessState::Active,
        LivenessState::Unstable,
        LivenessState::Inactive,
        LivenessState::NoAgent,
    ];
}

/// One point of a worker's metrics history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Unix time of the report.
    pub timestamp: f64,
    /// Host CPU percent.
    pub cpu_percent: f64,
    /// Host memory percent.
    pub memory_percent: f64,
}

/// What `gridwatch workers` shows for one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    /// The worker.
    pub worker_id: String,
    /// Liveness class.
    pub state: LivenessState,
    /// Status as its agent last reported it (stale while `unreachable`).
    pub status: WorkerStatus,
    /// The agent's heartbeats stopped: the host or its link is lost, whatever `status` last said.
    #[serde(default)]
    pub unreachable: bool,
    /// Report intervals passed since the last report, minus the one in progress.
    pub consecutive_missed: u64,
    /// Mean round trip of the last 10 reports, milliseconds.
    pub mean_rtt_ms: Option<f64>,
    /// Seconds the worker has been up (as its agent saw it).
    pub uptime_secs: Option<f64>,
    /// Reports received / reports expected since the collector first heard of the worker.
    pub success_rate: f64,
    /// Tasks the worker has completed.
    pub tasks_done: u64,
    /// The worker's current task, if any.
    pub current_task: Option<String>,
    /// Seconds since the last report.
    pub last_report_secs_ago: f64,
    /// Whether the worker is told to stop leasing (a firing resource warning).
    pub leasing_paused: bool,
    /// The firing warnings that pause it (`memory_high`, …), so a paused worker says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// The latest report.
    pub latest: WorkerReport,
    /// Recent CPU and memory, oldest first.
    pub history: Vec<HistoryPoint>,
}

/// The reason a worker gives for leaving when an autoscaler stopped it: a departure, not a
/// failure, and the views say so.
pub const SCALED_DOWN: &str = "scaled down";

impl WorkerView {
    /// The status as the views print it: `SCALED DOWN` for a worker an autoscaler stopped,
    /// otherwise the agent's status.
    pub fn status_label(&self) -> &'static str {
        let scaled_down = self.latest.status_reason.as_deref() == Some(SCALED_DOWN);
        match self.status {
            WorkerStatus::Stopped if scaled_down => "SCALED DOWN",
            status => status.as_str(),
        }
    }

    /// The view of a worker the master sees leasing but no agent reports on: alive as far as
    /// the master knows, with none of the figures only an agent measures.
    pub fn without_agent(worker_id: &str, last_seen_secs_ago: f64) -> Self {
        Self {
            worker_id: worker_id.to_string(),
            state: LivenessState::NoAgent,
            status: WorkerStatus::Alive,
            unreachable: false,
            consecutive_missed: 0,
            mean_rtt_ms: None,
            uptime_secs: None,
            success_rate: 0.0,
            tasks_done: 0,
            current_task: None,
            last_report_secs_ago: last_seen_secs_ago,
            leasing_paused: false,
            pause_reason: None,
            latest: WorkerReport {
                worker_id: worker_id.to_string(),
                seq: 0,
                timestamp: 0.0,
                status: WorkerStatus::Alive,
                status_reason: None,
                cpu_percent: 0.0,
                memory_mb: 0.0,
                memory_percent: 0.0,
                disk_percent: 0.0,
                process_cpu_percent: None,
                process_rss_mb: None,
                grid_cpu_percent: None,
                pid: None,
                tasks_processed: 0,
                current_task: None,
                tasks: Vec::new(),
                worker_uptime_secs: None,
                report_interval_secs: 0.0,
                last_rtt_ms: None,
                beat_interval_secs: None,
            },
            history: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Message;

    #[test]
    fn reports_and_heartbeats_without_running_tasks_still_parse_both_ways() {
        // A heartbeat and a report as agents and workers sent them before tasks were listed.
        let old_beat = r#"{"type":"heartbeat","v":1,"timestamp":1.0,"pid":7,"tasks_completed":2,"current_task":"j/3"}"#;
        match serde_json::from_str::<Message>(old_beat).expect("old heartbeat") {
            Message::Heartbeat {
                current_task,
                running,
                ..
            } => {
                assert_eq!(current_task.as_deref(), Some("j/3"));
                assert!(running.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let mut view = WorkerView::without_agent("w1", 0.0);
        let mut old_report = serde_json::to_value(&view.latest).expect("report");
        assert!(old_report.get("tasks").is_none(), "no tasks, no field");
        old_report
            .as_object_mut()
            .expect("object")
            .remove("current_task");
        let parsed: WorkerReport = serde_json::from_value(old_report).expect("old report");
        assert!(parsed.tasks.is_empty());
        // And a report listing a task carries it whole.
        view.latest.tasks.push(TaskUsage {
            task: "j/4".into(),
            pid: Some(42),
            cpu_percent: Some(99.5),
            rss_mb: Some(200.0),
            processes: Some(2),
        });
        let text = serde_json::to_string(&view.latest).expect("report");
        let back: WorkerReport = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back.tasks, view.latest.tasks);
    }
}
