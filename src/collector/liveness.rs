//! The liveness view of every worker: active / unstable / inactive, consecutive missed
//! reports, mean report round trip over the last 10, uptime, success rate and tasks done, plus the
//! latest metrics and a short history for charts.
//!
//! An agent that sends heartbeats between reports is judged by them: it is unreachable (host or
//! link lost, whatever its last report said) once `heartbeat_misses` beats in a row are missed.
//!
//! A restarted collector remembers the workers its predecessor knew (their stored views) as if
//! each had been heard the moment it started: one whose agent stays silent is then lost after
//! the same window as any other, and none is shown active before its agent is heard again.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

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
/// Heartbeats missed in a row after which a host counts as lost, unless configured otherwise.
pub const DEFAULT_HEARTBEAT_MISSES: u32 = 3;
/// Heartbeat intervals a worker stays unstable after its heartbeats resumed from a gap: long
/// enough to see a flapping link, short enough that a host that came back is active within
/// seconds.
const UNSTABLE_BEATS_AFTER_GAP: u32 = 5;

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
    /// When the agent was last heard from: a report or a heartbeat.
    heard_at: Moment,
    /// The agent's heartbeat interval, once it has sent one (older agents never do).
    beat_interval: Option<Duration>,
    /// When heartbeats last resumed after a gap of two intervals or more.
    last_gap_at: Option<Moment>,
    /// Remembered from the store by a restarted collector and not heard from since.
    remembered: bool,
}

impl WorkerRecord {
    /// Notes that the agent was heard at `now`, remembering a gap in its heartbeats.
    fn heard(&mut self, now: Moment) {
        if let Some(interval) = self.beat_interval {
            if now.since(self.heard_at) >= interval * 2 {
                self.last_gap_at = Some(now);
            }
        }
        self.heard_at = now;
        self.remembered = false;
    }
}

/// Every worker the collector has heard of.
#[derive(Debug)]
pub struct Liveness {
    workers: BTreeMap<String, WorkerRecord>,
    heartbeat_misses: u32,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness::new(DEFAULT_HEARTBEAT_MISSES)
    }
}

/// What the rules need to know of a worker: its latest report and when its agent was heard.
#[derive(Clone, Copy, Debug)]
pub struct Heard<'a> {
    /// The newest report.
    pub report: &'a WorkerReport,
    /// When that report arrived.
    pub report_at: Moment,
    /// When the agent was last heard from (report or heartbeat).
    pub heard_at: Moment,
    /// The agent's heartbeat interval, if it sends heartbeats.
    pub beat_interval: Option<Duration>,
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
    /// Liveness judging a heartbeating host lost after `heartbeat_misses` missed beats.
    pub fn new(heartbeat_misses: u32) -> Liveness {
        Liveness {
            workers: BTreeMap::new(),
            heartbeat_misses: heartbeat_misses.max(1),
        }
    }

    /// Records a heartbeat received at `now` from the agent of `worker`, which beats every
    /// `interval`; false if the worker has not reported yet (the beat says nothing then).
    pub fn record_beat(&mut self, worker: &str, interval: Duration, now: Moment) -> bool {
        let Some(record) = self.workers.get_mut(worker) else {
            return false;
        };
        record.beat_interval = Some(interval.max(Duration::from_millis(10)));
        record.heard(now);
        true
    }

    /// Whether the agent of `worker` sends heartbeats and has missed enough of them in a row
    /// that its host counts as lost.
    pub fn unreachable(&self, worker: &str, now: Moment) -> bool {
        self.workers
            .get(worker)
            .is_some_and(|record| self.is_unreachable(record, now))
    }

    fn is_unreachable(&self, record: &WorkerRecord, now: Moment) -> bool {
        record
            .beat_interval
            .is_some_and(|interval| now.since(record.heard_at) >= interval * self.heartbeat_misses)
    }

    /// Records a report received at `now`.
    pub fn record(&mut self, report: WorkerReport, now: Moment) {
        let beat_interval = announced_beat(&report);
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
                record.beat_interval = beat_interval.or(record.beat_interval);
                record.heard(now);
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
                    heard_at: now,
                    beat_interval,
                    last_gap_at: None,
                    remembered: false,
                };
                self.workers.insert(record.latest.worker_id.clone(), record);
            }
        }
    }

    /// Takes back a worker a previous collector knew, from the view it stored, as if its agent
    /// had been heard at `started` (when this collector started listening): its rules then run
    /// from there. False, changing nothing, if the worker is already known (its agent was
    /// quicker) or the view names another worker than its report.
    pub fn remember(&mut self, view: WorkerView, started: Moment) -> bool {
        let worker = view.latest.worker_id.clone();
        if worker != view.worker_id || self.workers.contains_key(&worker) {
            return false;
        }
        let mut history: VecDeque<HistoryPoint> = view.history.into_iter().collect();
        while history.len() > HISTORY_LEN {
            history.pop_front();
        }
        let record = WorkerRecord {
            beat_interval: announced_beat(&view.latest),
            latest: view.latest,
            last_report_at: started,
            reports_received: 0,
            reports_missed: 0,
            recent_gaps: VecDeque::new(),
            rtts_ms: VecDeque::new(),
            history,
            heard_at: started,
            last_gap_at: None,
            remembered: true,
        };
        self.workers.insert(worker, record);
        true
    }

    /// The latest report of a worker, when it arrived, and when its agent was last heard.
    pub fn latest(&self, worker: &str) -> Option<Heard<'_>> {
        self.workers.get(worker).map(|r| Heard {
            report: &r.latest,
            report_at: r.last_report_at,
            heard_at: r.heard_at,
            beat_interval: r.beat_interval,
        })
    }

    /// Ids of every known worker.
    pub fn worker_ids(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// The view of one worker at `now`; `paused` says whether it is told to stop leasing.
    pub fn view(&self, worker: &str, now: Moment, paused: bool) -> Option<WorkerView> {
        let record = self.workers.get(worker)?;
        let missed_reports = missed_intervals(&record.latest, record.last_report_at, now);
        let expected = record.reports_received + record.reports_missed + missed_reports;
        let unreachable = self.is_unreachable(record, now);
        let (mut state, missed) = match record.beat_interval {
            Some(interval) => (
                beating_state(record, interval, unreachable, now),
                missed_beats(interval, record.heard_at, now),
            ),
            None => (reporting_state(record, missed_reports), missed_reports),
        };
        if record.remembered && state == LivenessState::Active {
            // Its last report is older than this collector: nothing says it still works.
            state = LivenessState::Unstable;
        }
        let silence = now.since(record.last_report_at).as_secs_f64();
        Some(WorkerView {
            worker_id: worker.to_string(),
            state,
            status: record.latest.status,
            unreachable,
            consecutive_missed: missed,
            mean_rtt_ms: (!record.rtts_ms.is_empty())
                .then(|| record.rtts_ms.iter().sum::<f64>() / record.rtts_ms.len() as f64),
            uptime_secs: record.latest.worker_uptime_secs.map(|up| up + silence),
            success_rate: record.reports_received as f64 / expected.max(1) as f64,
            tasks_done: record.latest.tasks_processed,
            current_task: record.latest.current_task.clone(),
            last_report_secs_ago: silence,
            leasing_paused: paused,
            pause_reason: None,
            latest: record.latest.clone(),
            history: record.history.iter().cloned().collect(),
        })
    }
}

/// The heartbeat interval a report announces, if it is a usable one.
fn announced_beat(report: &WorkerReport) -> Option<Duration> {
    report
        .beat_interval_secs
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| *d >= Duration::from_millis(10) && *d <= Duration::from_secs(60))
}

/// The class of a worker whose agent sends no heartbeats, judged by its reports alone.
fn reporting_state(record: &WorkerRecord, missed: u64) -> LivenessState {
    match record.latest.status {
        WorkerStatus::Dead
        | WorkerStatus::Stopped
        | WorkerStatus::Waiting
        | WorkerStatus::Missing => LivenessState::Inactive,
        WorkerStatus::Alive if missed >= INACTIVE_AFTER_MISSED => LivenessState::Inactive,
        WorkerStatus::Alive if missed > 0 || record.recent_gaps.contains(&true) => {
            LivenessState::Unstable
        }
        WorkerStatus::Alive => LivenessState::Active,
    }
}

/// The class of a worker whose agent sends heartbeats: inactive while lost, unstable while beats
/// are being missed or shortly after they resumed from a gap.
fn beating_state(
    record: &WorkerRecord,
    interval: Duration,
    unreachable: bool,
    now: Moment,
) -> LivenessState {
    let recent_gap = record
        .last_gap_at
        .is_some_and(|at| now.since(at) < interval * UNSTABLE_BEATS_AFTER_GAP);
    match record.latest.status {
        WorkerStatus::Dead
        | WorkerStatus::Stopped
        | WorkerStatus::Waiting
        | WorkerStatus::Missing => LivenessState::Inactive,
        WorkerStatus::Alive if unreachable => LivenessState::Inactive,
        WorkerStatus::Alive if missed_beats(interval, record.heard_at, now) > 0 || recent_gap => {
            LivenessState::Unstable
        }
        WorkerStatus::Alive => LivenessState::Active,
    }
}

/// Heartbeats missed since `heard_at`, counting one as missed once it is half an interval late.
fn missed_beats(interval: Duration, heard_at: Moment, now: Moment) -> u64 {
    let elapsed = now.since(heard_at).as_secs_f64();
    ((elapsed / interval.as_secs_f64() + 0.5).floor() as u64).saturating_sub(1)
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
            grid_cpu_percent: None,
            pid: Some(42),
            tasks_processed: 7,
            current_task: None,
            tasks: Vec::new(),
            worker_uptime_secs: Some(100.0),
            report_interval_secs: 10.0,
            last_rtt_ms: rtt,
            beat_interval_secs: None,
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

    #[test]
    fn a_heartbeating_host_is_inactive_once_beats_stop_and_active_again_soon_after() {
        let mut liveness = Liveness::new(3);
        let t0 = Moment::now();
        let ms = |n: u64| t0.plus(Duration::from_millis(n));
        liveness.record(report(WorkerStatus::Alive, None), t0);
        let beat = Duration::from_secs(1);
        for second in 1..=3 {
            assert!(liveness.record_beat("w1", beat, at(t0, second)));
        }
        let view = liveness.view("w1", ms(3_400), false).expect("known");
        assert_eq!(
            (view.state, view.unreachable),
            (LivenessState::Active, false)
        );
        let view = liveness.view("w1", ms(4_600), false).expect("known");
        assert_eq!(view.state, LivenessState::Unstable, "a beat is missed");
        let view = liveness.view("w1", ms(6_000), false).expect("known");
        assert_eq!(
            (view.state, view.status, view.unreachable),
            (LivenessState::Inactive, WorkerStatus::Alive, true),
            "three beats missed: lost, even though the last report said ALIVE"
        );
        assert!(liveness.unreachable("w1", ms(6_000)));
        liveness.record_beat("w1", beat, at(t0, 20));
        let view = liveness.view("w1", ms(20_100), false).expect("known");
        assert_eq!(
            (view.state, view.unreachable),
            (LivenessState::Unstable, false)
        );
        for second in 21..=26 {
            liveness.record_beat("w1", beat, at(t0, second));
        }
        let view = liveness.view("w1", ms(26_100), false).expect("known");
        assert_eq!(view.state, LivenessState::Active, "back within seconds");
        assert!(
            !liveness.record_beat("w9", beat, t0),
            "a beat before any report names no known worker"
        );
    }

    #[test]
    fn a_remembered_worker_is_lost_one_window_after_the_restart_unless_its_agent_is_heard() {
        let mut old = Liveness::new(3);
        let t0 = Moment::now();
        let beating = WorkerReport {
            beat_interval_secs: Some(1.0),
            ..report(WorkerStatus::Alive, Some(2.0))
        };
        old.record(beating.clone(), t0);
        let stored = old.view("w1", t0, false).expect("known");
        let other = WorkerView {
            worker_id: "w2".into(),
            latest: WorkerReport {
                worker_id: "w2".into(),
                ..beating.clone()
            },
            ..stored.clone()
        };

        let mut restarted = Liveness::new(3);
        let started = at(t0, 100);
        let ms = |n: u64| started.plus(Duration::from_millis(n));
        assert!(restarted.remember(stored.clone(), started));
        assert!(restarted.remember(other, started));
        assert!(!restarted.remember(stored, started), "known once");
        let view = restarted.view("w1", ms(100), false).expect("remembered");
        assert_eq!(
            (view.state, view.status, view.unreachable),
            (LivenessState::Unstable, WorkerStatus::Alive, false),
            "not active before its agent is heard"
        );
        assert_eq!(view.history.len(), 1, "its history is kept");
        assert!(!restarted.unreachable("w1", ms(2_999)));
        assert!(
            restarted.unreachable("w1", ms(3_000)),
            "three beats from the restart"
        );

        // w2's agent comes back in time: it is judged like any worker from then on.
        restarted.record(
            WorkerReport {
                worker_id: "w2".into(),
                ..beating
            },
            ms(800),
        );
        for n in [1_800, 2_800] {
            assert!(restarted.record_beat("w2", Duration::from_secs(1), ms(n)));
        }
        assert!(!restarted.unreachable("w2", ms(3_000)));
        let view = restarted.view("w2", ms(3_000), false).expect("heard");
        assert_eq!(view.state, LivenessState::Active);
    }

    #[test]
    fn a_worker_heard_before_the_store_answers_is_not_overwritten() {
        let mut liveness = Liveness::new(3);
        let t0 = Moment::now();
        liveness.record(report(WorkerStatus::Dead, None), t0);
        let stale = WorkerView {
            status: WorkerStatus::Alive,
            latest: report(WorkerStatus::Alive, None),
            ..liveness.view("w1", t0, false).expect("known")
        };
        assert!(!liveness.remember(stale, t0));
        let heard = liveness.latest("w1").expect("known");
        assert_eq!(heard.report.status, WorkerStatus::Dead);
    }
}
