//! Per-task records as clients see them: which task, its kind and parameters, the seconds its
//! worker spent, the worker, when it finished, its priority and its result's figures. Shared by
//! `gridwatch results --json` and the HTTP API, so they always agree.

use serde::{Deserialize, Serialize};

use crate::backend::{Priority, TaskRun, WorkerId};

/// One task's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `JOB/CHUNK`.
    pub task_id: String,
    /// The chunk index within the job.
    pub chunk: u32,
    /// The job kind the task ran with (`search`, `julia`, `particles`).
    pub kind: String,
    /// The task's parameters, as its kind describes a task.
    pub parameters: serde_json::Value,
    /// Seconds the worker spent running the task; null when its worker did not measure.
    pub execution_time: Option<f64>,
    /// The worker whose result was stored.
    pub worker_id: WorkerId,
    /// Unix time (seconds) the result was stored.
    pub completed_at: Option<f64>,
    /// The job's queue priority.
    pub priority: Priority,
    /// The result's small figures (matches, sums, counts).
    pub metrics: serde_json::Value,
}

impl TaskRecord {
    /// The record of chunk `chunk` of `job`, stored by `worker` with `run`.
    pub fn new(job: &str, chunk: u32, worker: &str, priority: Priority, run: &TaskRun) -> Self {
        Self {
            task_id: format!("{job}/{chunk}"),
            chunk,
            kind: run.kind.clone(),
            parameters: run.parameters.clone(),
            execution_time: run.elapsed_secs,
            worker_id: worker.to_string(),
            completed_at: run.completed_at,
            priority,
            metrics: run.metrics.clone(),
        }
    }
}
