//! The liveness view of every worker: active / unstable / inactive, consecutive missed
//! reports, mean report round trip over the last 10, uptime, success rate and tasks done, plus the
//! latest metrics and a short history for charts.

use std::collections::{BTreeMap, VecDeque};

use super::clock::Moment;
use crate::protocol::{HistoryPoint, LivenessState, WorkerReport, WorkerStatus, WorkerView};

/// Reports kept per worker for charts.
const HISTORY_LEN: usize = 60;
/// Round trips averaged for `mean_rtt_ms`: the last 10 reports, enough to smooth one slow report
/// without hiding a trend.
const RTT_WINDOW: usize = 10;
/// Consecutive missed reports at which a worker counts as inactive: 3 × the 10 s report interval
/// matches the 30 s no-report alert.
const INACTIVE_AFTER_MISSED: u64 = 3;

/// Bookkeeping for one worker.
#[derive(Debug)]
struct WorkerRecord {
    latest: WorkerReport,
    last_report_at: Moment,
    reports_received: u64,
    reports_missed: u64,
    /// Whether each of the last reports followed a gap (a missed report).
    recent_gaps: VecDeque<bool>,
    rtts_ms: VecDeque<f64>,
    history: VecDeque<HistoryPoint>,
}

/// Every worker the collector has heard of.
#[derive(Debug, Default)]
pub struct Liveness {
    workers: BTreeMap<String, WorkerRecord>,
}

/// Report intervals missed after `since`, counting an interval as missed once it is half over.
fn missed_intervals(report: &WorkerReport, since: Moment, now: Moment) -> u64 {
    let interval = report.report_interval_secs.max(0.05);
    let elapsed = now.since(since).as_secs_f64();
    ((elapsed / interval + 0.5).floor() as u64).saturating_sub(1)
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, cap: usize) {
    if queue.len() == cap {
        queue.pop_front();
    }
    queue.push_back(value);
}

impl Liveness {
    /// Records a report received at `now`.
    pub fn record(&mut self, report: WorkerReport, now: Moment) {
        let point = HistoryPoint {
            timestamp: report.timestamp,
            cpu_percent: report.cpu_percent,
            memory_percent: report.memory_percent,
        };
        match self.workers.get_mut(&report.worker_id) {
            Some(record) => {
                let missed = missed_intervals(&record.latest, record.last_report_at, now);
                record.reports_missed += missed;
                push_bounded(&mut record.recent_gaps, missed > 0, RTT_WINDOW);
                if let Some(rtt) = report.last_rtt_ms {
                    push_bounded(&mut record.rtts_ms, rtt, RTT_WINDOW);
                }
                push_bounded(&mut record.history, point, HISTORY_LEN);
                record.reports_received += 1;
                record.last_report_at = now;
                record.latest = report;
            }
            None => {
                let record = WorkerRecord {
                    rtts_ms: report.last_rtt_ms.into_iter().collect(),
                    latest: report,
                    last_report_at: now,
                    reports_received: 1,
                    reports_missed: 0,
                    recent_gaps: VecDeque::new(),
                    history: VecDeque::from([point]),
                };
                self.workers.insert(record.latest.worker_id.clone(), record);
            }
        }
    }

    /// The latest report of a worker and when it arrived.
    pub fn latest(&self, worker: &str) -> Option<(&WorkerReport, Moment)> {
        self.workers
            .get(worker)
            .map(|r| (&r.latest, r.last_report_at))
    }

    /// Ids of every known worker.
    pub fn worker_ids(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// The view of one worker at `now`; `paused` says whether it is told to stop leasing.
    pub fn view(&self, worker: &str, now: Moment, paused: bool) -> Option<WorkerView> {
        let record = self.workers.get(worker)?;
        let missed = missed_intervals(&record.latest, record.last_report_at, now);
        let expected = record.reports_received + record.reports_missed + missed;
        let state = match record.latest.status {
            WorkerStatus::Dead | WorkerStatus::Stopped | WorkerStatus::Waiting => {
                LivenessState::Inactive
            }
            WorkerStatus::Alive if missed >= INACTIVE_AFTER_MISSED => LivenessState::Inactive,
            WorkerStatus::Alive if missed > 0 || record.recent_gaps.contains(&true) => {
                LivenessState::Unstable
            }
            WorkerStatus::Alive => LivenessState::Active,
        };
        let silence = now.since(record.last_report_at).as_secs_f64();
        Some(WorkerView {
            worker_id: worker.to_string(),
            state,
            status: record.latest.status,
            consecutive_missed: missed,
            mean_rtt_ms: (!record.rtts_ms.is_empty())
                .then(|| record.rtts_ms.iter().sum::<f64>() / record.rtts_ms.len() as f64),
            uptime_secs: record.latest.worker_uptime_secs.map(|up| up + silence),
            success_rate: record.reports_received as f64 / expected.max(1) as f64,
            tasks_done: record.latest.tasks_processed,
            current_task: record.latest.current_task.clone(),
            last_report_secs_ago: silence,
            leasing_paused: paused,
            latest: record.latest.clone(),
            history: record.history.iter().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(status: WorkerStatus, rtt: Option<f64>) -> WorkerReport {
        WorkerReport {
            worker_id: "w1".into(),
            seq: 1,
            timestamp: 0.0,
            status,
            status_reason: None,
            cpu_percent: 10.0,
            memory_mb: 100.0,
            memory_percent: 20.0,
            disk_percent: 30.0,
            process_cpu_percent: None,
            process_rss_mb: None,
            pid: Some(42),
            tasks_processed: 7,
            current_task: None,
            worker_uptime_secs: Some(100.0),
            report_interval_secs: 10.0,
            last_rtt_ms: rtt,
        }
    }

    fn at(t0: Moment, secs: u64) -> Moment {
        t0.plus(Duration::from_secs(secs))
    }

    #[test]
    fn on_time_reports_are_active_and_silence_degrades_to_unstable_then_inactive() {
        let mut liveness = Liveness::default();
        let t0 = Moment::now();
        for (i, second) in [0, 10, 20].into_iter().enumerate() {
            liveness.record(
                report(WorkerStatus::Alive, Some(i as f64 + 1.0)),
                at(t0, second),
            );
        }
        let view = liveness
            .view("w1", at(t0, 24), false)
            .expect("known worker");
        assert_eq!(
            (view.state, view.consecutive_missed),
            (LivenessState::Active, 0)
        );
        assert_eq!(view.mean_rtt_ms, Some(2.0), "mean of 1, 2, 3");
        assert_eq!(view.tasks_done, 7);
        assert_eq!(view.uptime_secs, Some(104.0));
        assert_eq!(view.success_rate, 1.0);
        let view = liveness
            .view("w1", at(t0, 36), false)
            .expect("known worker");
        assert_eq!(
            (view.state, view.consecutive_missed),
            (LivenessState::Unstable, 1)
        );
        let view = liveness
            .view("w1", at(t0, 56), false)
            .expect("known worker");
        assert_eq!(
            (view.state, view.consecutive_missed),
            (LivenessState::Inactive, 3)
        );
        assert_eq!(view.success_rate, 3.0 / 6.0, "3 received of 6 expected");
    }

    #[test]
    fn a_report_after_a_gap_leaves_the_worker_unstable_for_a_while() {
        let mut liveness = Liveness::default();
        let t0 = Moment::now();
        liveness.record(report(WorkerStatus::Alive, None), at(t0, 0));
        liveness.record(report(WorkerStatus::Alive, None), at(t0, 40));
        let view = liveness
            .view("w1", at(t0, 41), false)
            .expect("known worker");
        assert_eq!(
            (view.state, view.consecutive_missed),
            (LivenessState::Unstable, 0)
        );
        assert_eq!(
            view.success_rate,
            2.0 / 5.0,
            "reports at 0 and 40, missed 10, 20, 30"
        );
        for second in (50..=140).step_by(10) {
            liveness.record(report(WorkerStatus::Alive, None), at(t0, second));
        }
        let view = liveness
            .view("w1", at(t0, 141), false)
            .expect("known worker");
        assert_eq!(
            view.state,
            LivenessState::Active,
            "the gap left the 10-report window"
        );
    }

    #[test]
    fn a_dead_worker_is_inactive_even_when_its_agent_reports_on_time() {
        let mut liveness = Liveness::default();
        let t0 = Moment::now();
        liveness.record(report(WorkerStatus::Dead, None), t0);
        let view = liveness.view("w1", t0, false).expect("known worker");
        assert_eq!(view.state, LivenessState::Inactive);
        assert!(liveness.view("nobody", t0, false).is_none());
    }
}
