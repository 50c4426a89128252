//! Per worker and job kind: tasks completed, and the mean and 95th percentile of recent task
//! times, computed from the store's task times. Shared by `gridwatch workers` (over the
//! protocol) and the HTTP API, so they always agree.

use serde::{Deserialize, Serialize};

use super::{TaskTimes, WorkerId};

/// Task times of one worker for one kind, summarised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindPerformance {
    /// The job kind.
    pub kind: String,
    /// Tasks of this kind the worker completed.
    pub tasks_completed: u64,
    /// Recent task times the figures below are computed from.
    pub timed_tasks: usize,
    /// Mean seconds per task.
    pub mean_secs: Option<f64>,
    /// 95th percentile of seconds per task (nearest rank).
    pub p95_secs: Option<f64>,
}

/// One worker's task counts and times, per kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerPerformance {
    /// The worker.
    pub worker_id: WorkerId,
    /// Tasks completed, every kind.
    pub tasks_completed: u64,
    /// Per kind, by kind name.
    pub kinds: Vec<KindPerformance>,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `values`.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Every worker's performance from the store's task times, by worker id.
pub fn performance(times: &[TaskTimes]) -> Vec<WorkerPerformance> {
    let mut workers: Vec<WorkerPerformance> = Vec::new();
    for entry in times {
        let mean_secs = (!entry.recent_secs.is_empty())
            .then(|| entry.recent_secs.iter().sum::<f64>() / entry.recent_secs.len() as f64);
        let kind = KindPerformance {
            kind: entry.kind.clone(),
            tasks_completed: entry.completed,
            timed_tasks: entry.recent_secs.len(),
            mean_secs,
            p95_secs: percentile(&entry.recent_secs, 95.0),
        };
        match workers.iter_mut().find(|w| w.worker_id == entry.worker) {
            Some(worker) => {
                worker.tasks_completed += entry.completed;
                worker.kinds.push(kind);
            }
            None => workers.push(WorkerPerformance {
                worker_id: entry.worker.clone(),
                tasks_completed: entry.completed,
                kinds: vec![kind],
            }),
        }
    }
    workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    for worker in &mut workers {
        worker.kinds.sort_by(|a, b| a.kind.cmp(&b.kind));
    }
    workers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 95.0), Some(19.0));
        assert_eq!(percentile(&values, 100.0), Some(20.0));
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn performance_groups_kinds_under_their_worker() {
        let times = vec![
            TaskTimes {
                worker: "w2".into(),
                kind: "julia".into(),
                completed: 3,
                recent_secs: vec![1.0, 2.0, 6.0],
            },
            TaskTimes {
                worker: "w1".into(),
                kind: "search".into(),
                completed: 1,
                recent_secs: vec![],
            },
            TaskTimes {
                worker: "w2".into(),
                kind: "particles".into(),
                completed: 1,
                recent_secs: vec![0.5],
            },
        ];
        let workers = performance(&times);
        assert_eq!(workers.len(), 2);
        assert_eq!(workers[0].worker_id, "w1");
        assert_eq!(workers[0].kinds[0].mean_secs, None);
        assert_eq!(workers[1].tasks_completed, 4);
        let julia = &workers[1].kinds[0];
        assert_eq!(julia.kind, "julia");
        assert_eq!(julia.mean_secs, Some(3.0));
        assert_eq!(julia.p95_secs, Some(6.0));
    }
}
