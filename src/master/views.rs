//! What the master shows of the grid, read once and shared by every way in (the protocol
//! commands, the HTTP API and forgetting a worker): job and worker views, alert events, the
//! backlog, and one consistent read for `/stats` and `/metrics` (jobs by status, chunks and
//! matches summed from stored results, workers by liveness state, currently firing alerts and
//! refused results). Jobs are read as summaries: the cost never grows with job specs.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::backend::{
    BackendError, JobStatus, MasterStore, MonitorSink, MonitorStore, Priority, RefusalReason,
};
use crate::master::ops::OpsSnapshot;
use crate::master::summary_view;
use crate::master::MasterState;
use crate::protocol::{Alert, AlertState, LivenessState, ProgressFigure, Severity, WorkerView};
use crate::protocol::{JobView, QueueLevel};

/// The alert history's cap (both backends keep the newest 1000 events).
pub const ALERT_HISTORY: usize = 1000;

/// What `/stats` answers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GridStats {
    /// Jobs per status (every status present, zeros included).
    pub jobs: BTreeMap<&'static str, u64>,
    /// Jobs in all.
    pub jobs_total: u64,
    /// Chunks with a stored result, over all jobs.
    pub chunks_done: u64,
    /// Chunks in all jobs.
    pub chunks_total: u64,
    /// Matches in stored chunk results, over all jobs whose kind counts matches (search); the
    /// other kinds' counts are in `matches_by_kind`, named by `figure_by_kind`.
    pub matches: u64,
    /// Jobs per kind (every registered kind present, zeros included).
    pub jobs_by_kind: BTreeMap<&'static str, u64>,
    /// Stored tasks' progress counts per kind: matches (search), iterations (julia),
    /// collisions (particles).
    pub matches_by_kind: BTreeMap<&'static str, u64>,
    /// What each kind's count in `matches_by_kind` counts (`matches`, `iterations`,
    /// `collisions`), so a view labels each figure for what it is.
    pub figure_by_kind: BTreeMap<&'static str, &'static str>,
    /// Workers per liveness state, from the collector's view.
    pub workers: BTreeMap<&'static str, u64>,
    /// Workers that talked to the master (or, with Redis, to the queue) in the last 10 s.
    pub active_workers: u32,
    /// Alerts firing now, per severity.
    pub alerts_firing: BTreeMap<&'static str, u64>,
    /// Results refused (not the lease holder, no such task, out of range), per reason.
    pub results_refused: BTreeMap<&'static str, u64>,
    /// Tasks of unfinished jobs waiting in the queue (no result, no lease), per priority.
    pub queued_by_priority: BTreeMap<&'static str, u64>,
    /// Seconds the oldest task nobody holds has waited, per priority (0 with none waiting): the
    /// backlog an autoscaler acts on.
    pub oldest_task_age_by_priority: BTreeMap<&'static str, f64>,
    /// Leases handed out by this master and not yet acknowledged or returned.
    pub leases_in_flight: u64,
}

/// Stats plus the per-worker views `/metrics` labels by worker.
pub struct Snapshot {
    /// The totals.
    pub stats: GridStats,
    /// Every worker's liveness view, by id.
    pub workers: Vec<WorkerView>,
    /// The master's own counters and histograms.
    pub ops: OpsSnapshot,
}

/// Lower-case name of a severity.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// Every job as clients see it (progress from stored results), newest first; at most `limit`.
pub async fn job_views(
    store: &dyn MasterStore,
    limit: Option<usize>,
) -> Result<Vec<JobView>, BackendError> {
    let jobs = store.job_summaries(limit.unwrap_or(usize::MAX)).await?;
    Ok(jobs.into_iter().map(summary_view).collect())
}

/// Every worker's stored liveness view, by id; entries another version wrote are skipped.
pub async fn worker_views(store: &dyn MonitorSink) -> Result<Vec<WorkerView>, BackendError> {
    let mut views: Vec<WorkerView> = store
        .worker_metrics()
        .await?
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_value(value).ok())
        .collect();
    views.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    Ok(views)
}

/// How long a worker leases before a missing agent report makes it `no agent`: an agent reports
/// its worker's hello at once, so this is its report's way through the collector, with margin.
const AGENT_GRACE: Duration = Duration::from_secs(5);

/// Every worker the views list, by id: the collector's stored views (less the forgotten dead
/// ones) and, in the state `no agent`, each worker the master sees leasing that no agent
/// reports on, so a worker started without its agent still shows where its tasks go.
pub async fn listed_workers(state: &MasterState) -> Result<Vec<WorkerView>, BackendError> {
    let mut views = state
        .forgotten
        .filter(worker_views(state.store.as_ref()).await?);
    let reported: HashSet<String> = views.iter().map(|v| v.worker_id.clone()).collect();
    for (worker, ago) in state.workers.recent(AGENT_GRACE) {
        if !reported.contains(&worker) {
            views.push(WorkerView::without_agent(&worker, ago.as_secs_f64()));
        }
    }
    views.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    Ok(views)
}

/// The newest `limit` alert events, newest first.
pub async fn alert_events(
    store: &dyn MonitorStore,
    limit: usize,
) -> Result<Vec<Alert>, BackendError> {
    let values = store.alerts(limit).await?;
    Ok(values
        .into_iter()
        .filter_map(|value| serde_json::from_value(value).ok())
        .collect())
}

/// Alerts whose newest event is `firing`. `events` is newest first; an alert's resolved event
/// carries its firing event's id.
pub fn firing(events: &[Alert]) -> Vec<&Alert> {
    let mut seen = HashSet::new();
    events
        .iter()
        .filter(|alert| seen.insert(alert.id.as_str()))
        .filter(|alert| alert.state == AlertState::Firing)
        .collect()
}

/// The newest `limit` alert events as the views show them, newest first: without the events a
/// restarted collector fires for a worker an operator forgot.
pub async fn shown_alerts(state: &MasterState, limit: usize) -> Result<Vec<Alert>, BackendError> {
    let mut events = alert_events(state.store.as_ref(), limit).await?;
    events.retain(|alert| !state.forgotten.silences(alert));
    Ok(events)
}

/// The alerts firing now (the newest event of each is `firing`), newest first.
pub async fn firing_now(state: &MasterState) -> Result<Vec<Alert>, BackendError> {
    let events = shown_alerts(state, ALERT_HISTORY).await?;
    Ok(firing(&events).into_iter().cloned().collect())
}

/// Tasks of unfinished jobs waiting for a worker (no result, no lease), per priority.
fn queued_by_priority(jobs: &[JobView], ops: &OpsSnapshot) -> BTreeMap<&'static str, u64> {
    let mut queued: BTreeMap<&'static str, u64> = [Priority::High, Priority::Medium, Priority::Low]
        .iter()
        .map(|p| (p.as_str(), 0))
        .collect();
    for job in jobs {
        if matches!(job.status, JobStatus::Pending | JobStatus::Processing) {
            let remaining = job
                .progress
                .total_chunks
                .saturating_sub(job.progress.processed_chunks);
            let leased = ops.in_flight_by_job.get(&job.job_id).copied().unwrap_or(0);
            let priority = job.priority.unwrap_or(Priority::Medium).as_str();
            *queued.entry(priority).or_default() += u64::from(remaining).saturating_sub(leased);
        }
    }
    queued
}

/// The backlog per priority, high first, and the leases in flight: `status --queue`'s answer.
pub async fn backlog(state: &MasterState) -> Result<(Vec<QueueLevel>, u64), BackendError> {
    let jobs = job_views(state.store.as_ref(), None).await?;
    let ops = state.ops.snapshot();
    let queued = queued_by_priority(&jobs, &ops);
    let ages = oldest_task_ages(state).await?;
    let levels = [Priority::High, Priority::Medium, Priority::Low]
        .into_iter()
        .map(|priority| QueueLevel {
            priority,
            tasks: queued.get(priority.as_str()).copied().unwrap_or(0),
            oldest_task_age_seconds: ages.get(priority.as_str()).copied().unwrap_or(0.0),
        })
        .collect();
    Ok((levels, ops.in_flight_by_job.values().sum()))
}

/// Seconds the oldest waiting task of each priority has waited (0 for none).
async fn oldest_task_ages(
    state: &MasterState,
) -> Result<BTreeMap<&'static str, f64>, BackendError> {
    let mut ages: BTreeMap<&'static str, f64> = [Priority::High, Priority::Medium, Priority::Low]
        .iter()
        .map(|p| (p.as_str(), 0.0))
        .collect();
    let now = crate::time::unix_now();
    for (priority, queued_at) in state.queue.oldest_waiting().await? {
        ages.insert(priority.as_str(), (now - queued_at).max(0.0));
    }
    Ok(ages)
}

/// Reads everything `/stats` and `/metrics` report.
pub async fn gather(state: &MasterState) -> Result<Snapshot, BackendError> {
    let store = state.store.as_ref();
    let jobs = job_views(store, None).await?;
    let workers = listed_workers(state).await?;
    let firing_alerts = firing_now(state).await?;
    let mut stats = GridStats {
        jobs: JobStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
        jobs_total: jobs.len() as u64,
        active_workers: state.workers.active(),
        jobs_by_kind: crate::jobs::KINDS.iter().map(|k| (k.name(), 0)).collect(),
        matches_by_kind: crate::jobs::KINDS.iter().map(|k| (k.name(), 0)).collect(),
        figure_by_kind: crate::jobs::KINDS
            .iter()
            .map(|k| (k.name(), k.progress_figure().as_str()))
            .collect(),
        ..GridStats::default()
    };
    let ops = state.ops.snapshot();
    stats.leases_in_flight = ops.in_flight_by_job.values().sum();
    stats.queued_by_priority = queued_by_priority(&jobs, &ops);
    stats.oldest_task_age_by_priority = oldest_task_ages(state).await?;
    for job in &jobs {
        *stats.jobs.entry(job.status.as_str()).or_default() += 1;
        stats.chunks_done += u64::from(job.progress.processed_chunks);
        stats.chunks_total += u64::from(job.progress.total_chunks);
        if let Some(kind) = crate::jobs::kind(&job.kind) {
            if kind.progress_figure() == ProgressFigure::Matches {
                stats.matches = stats
                    .matches
                    .saturating_add(job.partial_results.matches_found);
            }
            *stats.jobs_by_kind.entry(kind.name()).or_default() += 1;
            let by_kind = stats.matches_by_kind.entry(kind.name()).or_default();
            *by_kind = by_kind.saturating_add(job.partial_results.matches_found);
        }
    }
    stats.results_refused = RefusalReason::ALL.iter().map(|r| (r.as_str(), 0)).collect();
    for (reason, count) in store.refused_results().await? {
        *stats.results_refused.entry(reason.as_str()).or_default() += count;
    }
    stats.workers = LivenessState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for worker in &workers {
        *stats.workers.entry(worker.state.as_str()).or_default() += 1;
    }
    stats.alerts_firing = [Severity::Warning, Severity::Critical]
        .iter()
        .map(|s| (severity_name(*s), 0))
        .collect();
    for alert in &firing_alerts {
        *stats
            .alerts_firing
            .entry(severity_name(alert.severity))
            .or_default() += 1;
    }
    Ok(Snapshot {
        stats,
        workers,
        ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, state: AlertState) -> Alert {
        Alert {
            id: id.into(),
            rule: "worker_dead".into(),
            severity: Severity::Critical,
            worker_id: "w1".into(),
            state,
            message: "worker w1 is DEAD".into(),
            value: None,
            active_since: 0.0,
            timestamp: 0.0,
        }
    }

    #[test]
    fn an_alert_fires_until_its_newest_event_resolves_it() {
        // Newest first: a fired then resolved, b fired, c fired then resolved then fired again.
        let events = [
            event("c", AlertState::Firing),
            event("a", AlertState::Resolved),
            event("c", AlertState::Resolved),
            event("b", AlertState::Firing),
            event("c", AlertState::Firing),
            event("a", AlertState::Firing),
        ];
        let ids: Vec<&str> = firing(&events).iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        assert!(firing(&[]).is_empty());
    }
}
