//! Rule lifecycle tests, driven by an injected clock: minutes of rule time run in microseconds.

use std::time::Duration;

use super::*;

fn report(worker: &str, status: WorkerStatus, cpu: f64, memory: f64) -> WorkerReport {
    WorkerReport {
        worker_id: worker.into(),
        seq: 1,
        timestamp: 0.0,
        status,
        status_reason: None,
        cpu_percent: cpu,
        memory_mb: 1000.0,
        memory_percent: memory,
        disk_percent: 10.0,
        process_cpu_percent: None,
        process_rss_mb: None,
        grid_cpu_percent: None,
        pid: None,
        tasks_processed: 0,
        current_task: None,
        tasks: Vec::new(),
        worker_uptime_secs: None,
        report_interval_secs: 10.0,
        last_rtt_ms: None,
        beat_interval_secs: None,
    }
}

/// Feeds one report per 10 s from `start` for `seconds`; returns (second, alert) per event.
fn feed(
    engine: &mut RuleEngine,
    t0: Moment,
    seconds: std::ops::Range<u64>,
    make: impl Fn(u64) -> WorkerReport,
) -> Vec<(u64, Alert)> {
    let mut events = Vec::new();
    for second in seconds.step_by(10) {
        let now = t0.plus(Duration::from_secs(second));
        let report = make(second);
        let observation = Observation {
            report: &report,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        };
        for alert in engine.evaluate(observation, now) {
            events.push((second, alert));
        }
    }
    events
}

fn summary(events: &[(u64, Alert)]) -> Vec<(u64, &str, AlertState)> {
    events
        .iter()
        .map(|(t, a)| (*t, a.rule.as_str(), a.state))
        .collect()
}

#[test]
fn cpu_high_fires_once_after_five_minutes_and_resolves_once() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    // CPU 99 % from t=0 to t=590, then 20 % until t=700.
    let events = feed(&mut engine, t0, 0..700, |t| {
        let cpu = if t < 600 { 99.0 } else { 20.0 };
        report("w1", WorkerStatus::Alive, cpu, 40.0)
    });
    assert_eq!(
        summary(&events),
        [
            (300, "cpu_high", AlertState::Firing),
            (600, "cpu_high", AlertState::Resolved)
        ]
    );
    let (fired, resolved) = (&events[0].1, &events[1].1);
    assert_eq!(
        fired.id, resolved.id,
        "a resolution names the alert it ends"
    );
    assert_eq!(fired.severity, Severity::Warning);
    assert_eq!(fired.active_since, t0.unix_secs);
    assert_eq!(fired.value, Some(99.0));
}

#[test]
fn a_host_busy_with_the_grids_own_workers_never_pauses_them() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    // Ten minutes at 99 % host CPU, 97 points of it the grid's workers: no pressure from
    // elsewhere, so no alert and no pause, however long the job runs.
    let events = feed(&mut engine, t0, 0..600, |_| {
        let mut busy = report("w1", WorkerStatus::Alive, 99.0, 40.0);
        busy.grid_cpu_percent = Some(97.0);
        busy
    });
    assert_eq!(summary(&events), []);
    assert!(!engine.should_pause_leasing("w1"));
    // Another program taking the host beside a modest grid load is still pressure.
    let t1 = t0.plus(Duration::from_secs(600));
    let events = feed(&mut engine, t1, 0..400, |_| {
        let mut contended = report("w1", WorkerStatus::Alive, 99.5, 40.0);
        contended.grid_cpu_percent = Some(2.0);
        contended
    });
    assert_eq!(summary(&events), [(300, "cpu_high", AlertState::Firing)]);
    assert_eq!(events[0].1.value, Some(97.5));
    assert!(engine.should_pause_leasing("w1"));
}

#[test]
fn cpu_spikes_shorter_than_the_duration_never_fire() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    // High for 290 s, one low report, high for 290 s again: pending restarts, never fires.
    let events = feed(&mut engine, t0, 0..600, |t| {
        let cpu = if t == 290 { 50.0 } else { 99.0 };
        report("w1", WorkerStatus::Alive, cpu, 40.0)
    });
    assert_eq!(summary(&events), []);
    let active = engine.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].state, AlertState::Pending);
}

#[test]
fn dead_status_fires_at_once_and_resolves_when_alive_again() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    let events = feed(&mut engine, t0, 0..100, |t| {
        let status = if (30..60).contains(&t) {
            WorkerStatus::Dead
        } else {
            WorkerStatus::Alive
        };
        report("w2", status, 10.0, 40.0)
    });
    assert_eq!(
        summary(&events),
        [
            (30, "worker_dead", AlertState::Firing),
            (60, "worker_dead", AlertState::Resolved)
        ]
    );
    assert!(events[0].1.means_worker_down());
    assert!(!events[1].1.means_worker_down());
}

#[test]
fn an_agent_without_its_worker_fires_worker_missing_until_the_worker_appears() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    let events = feed(&mut engine, t0, 0..100, |t| {
        let status = match t {
            0..=10 => WorkerStatus::Waiting,
            20..=50 => WorkerStatus::Missing,
            _ => WorkerStatus::Alive,
        };
        report("w4", status, 10.0, 40.0)
    });
    assert_eq!(
        summary(&events),
        [
            (20, "worker_missing", AlertState::Firing),
            (60, "worker_missing", AlertState::Resolved)
        ],
        "waiting is not missing yet; one firing, resolved when the worker said hello"
    );
    assert_eq!(events[0].1.severity, Severity::Critical);
    assert!(
        events[0].1.message.contains("w4 is missing"),
        "{:?}",
        events[0].1
    );
}

#[test]
fn silence_fires_no_report_once_and_a_report_resolves_it() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    let last = report("w3", WorkerStatus::Alive, 10.0, 40.0);
    let mut events = Vec::new();
    // One report at t=0, then only the collector's ticks, once a second for a minute.
    for second in 0..60 {
        let now = t0.plus(Duration::from_secs(second));
        let observation = Observation {
            report: &last,
            received_at: t0,
            heard_at: t0,
            beat_interval: None,
        };
        events.extend(
            engine
                .evaluate(observation, now)
                .into_iter()
                .map(|a| (second, a)),
        );
    }
    let fresh = t0.plus(Duration::from_secs(60));
    let observation = Observation {
        report: &last,
        received_at: fresh,
        heard_at: fresh,
        beat_interval: None,
    };
    events.extend(
        engine
            .evaluate(observation, fresh)
            .into_iter()
            .map(|a| (60, a)),
    );
    assert_eq!(
        summary(&events),
        [
            (30, "no_report", AlertState::Firing),
            (60, "no_report", AlertState::Resolved)
        ]
    );
    assert_eq!(events[0].1.severity, Severity::Critical);
}

#[test]
fn a_worker_that_said_goodbye_may_go_quiet() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    let last = report("w4", WorkerStatus::Stopped, 10.0, 40.0);
    let later = t0.plus(Duration::from_secs(120));
    let observation = Observation {
        report: &last,
        received_at: t0,
        heard_at: t0,
        beat_interval: None,
    };
    assert_eq!(engine.evaluate(observation, later), []);
}

#[test]
fn memory_high_fires_at_once_and_pauses_leasing_until_resolved() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let t0 = Moment::now();
    let events = feed(&mut engine, t0, 0..30, |t| {
        let memory = if t == 10 { 95.0 } else { 50.0 };
        report("w5", WorkerStatus::Alive, 10.0, memory)
    });
    assert_eq!(
        summary(&events),
        [
            (10, "memory_high", AlertState::Firing),
            (20, "memory_high", AlertState::Resolved)
        ]
    );
    let hot = report("w5", WorkerStatus::Alive, 10.0, 95.0);
    let now = t0.plus(Duration::from_secs(40));
    engine.evaluate(
        Observation {
            report: &hot,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        },
        now,
    );
    assert!(engine.should_pause_leasing("w5"));
    assert!(
        !engine.should_pause_leasing("w6"),
        "verdicts are per worker"
    );
    let cool = report("w5", WorkerStatus::Alive, 10.0, 50.0);
    let now = t0.plus(Duration::from_secs(50));
    engine.evaluate(
        Observation {
            report: &cool,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        },
        now,
    );
    assert!(!engine.should_pause_leasing("w5"));
}

#[test]
fn a_dead_worker_is_not_paused_but_reclaimed() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let now = Moment::now();
    let dead = report("w7", WorkerStatus::Dead, 10.0, 40.0);
    let events = engine.evaluate(
        Observation {
            report: &dead,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        },
        now,
    );
    assert_eq!(events.len(), 1);
    assert!(
        !engine.should_pause_leasing("w7"),
        "critical alerts do not pause leasing"
    );
}

#[test]
fn thresholds_are_configurable() {
    let thresholds = Thresholds {
        cpu_percent: 50.0,
        cpu_for: Duration::from_secs(20),
        memory_percent: 99.0,
        ..Thresholds::default()
    };
    let mut engine = RuleEngine::new(thresholds);
    let t0 = Moment::now();
    let events = feed(&mut engine, t0, 0..40, |_| {
        report("w8", WorkerStatus::Alive, 60.0, 95.0)
    });
    assert_eq!(summary(&events), [(20, "cpu_high", AlertState::Firing)]);
}

#[test]
fn workers_have_independent_lifecycles() {
    let mut engine = RuleEngine::new(Thresholds::default());
    let now = Moment::now();
    let dead_a = report("a", WorkerStatus::Dead, 10.0, 40.0);
    let dead_b = report("b", WorkerStatus::Dead, 10.0, 40.0);
    let first = engine.evaluate(
        Observation {
            report: &dead_a,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        },
        now,
    );
    let second = engine.evaluate(
        Observation {
            report: &dead_b,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        },
        now,
    );
    let again = engine.evaluate(
        Observation {
            report: &dead_a,
            received_at: now,
            heard_at: now,
            beat_interval: None,
        },
        now,
    );
    assert_eq!((first.len(), second.len(), again.len()), (1, 1, 0));
    assert_eq!(second[0].worker_id, "b");
}

#[test]
fn thresholds_parse_from_toml_with_defaults_for_missing_keys() {
    let thresholds: Thresholds =
        toml::from_str("cpu_percent = 80.0\ncpu_for = 1.5\n").expect("valid toml");
    assert_eq!(thresholds.cpu_percent, 80.0);
    assert_eq!(thresholds.cpu_for, Duration::from_millis(1500));
    assert_eq!(thresholds.memory_percent, 90.0);
}
