//! Alerts reach people's tools: a real Prometheus Alertmanager hears a killed worker as firing
//! and, once the worker is back, as resolved; a webhook that was down gets the alerts when it
//! comes back; and a webhook that never answers delays neither the DEAD alert nor the re-queue
//! of the dead worker's tasks.

use std::time::{Duration, Instant};

use crate::support::procs::wait_for;
use crate::support::receiver::{alertmanager_binary, never_answering, Alertmanager, Receiver};
use crate::support::watchman_grid::{unix_now, WatchedGrid};

/// Alertmanager's group wait in these tests.
const GROUP_WAIT: Duration = Duration::from_secs(1);

/// The first alert of a webhook notification from Alertmanager with this status for `worker`,
/// with the notification's arrival time.
fn notified(am: &Alertmanager, status: &str, worker: &str) -> Option<(Instant, serde_json::Value)> {
    am.receiver.bodies().into_iter().find_map(|(at, body)| {
        let alerts = body["alerts"].as_array()?;
        alerts
            .iter()
            .find(|a| {
                a["status"] == status
                    && a["labels"]["worker"] == worker
                    && a["labels"]["alertname"] == "worker_dead"
            })
            .map(|a| (at, a.clone()))
    })
}

#[test]
fn a_killed_worker_reaches_alertmanager_as_firing_then_resolved() {
    let Some(binary) = alertmanager_binary() else {
        crate::support::skip_without("prometheus-alertmanager is not installed");
        return;
    };
    let am = Alertmanager::start(binary, "1s");
    // A short resend interval: a firing alert expires in Alertmanager after four of them unless
    // it is re-sent, so one still active well after that proves the re-sending.
    let mut grid = WatchedGrid::start_with(
        &["w1", "w2"],
        "15s",
        &["--alertmanager", &am.url, "--alert-resend-interval", "1s"],
    );
    grid.wait_alive(2);
    let killed = Instant::now();
    grid.worker("w1").kill9();

    let (at, firing) = wait_for("a firing notification", Duration::from_secs(60), || {
        notified(&am, "firing", "w1")
    });
    let latency = at - killed;
    assert!(
        latency < Duration::from_secs(5) + GROUP_WAIT,
        "firing reached the receiver {latency:?} after kill -9"
    );
    assert_eq!(firing["labels"]["severity"], "critical", "{firing}");
    let summary = firing["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains("DEAD"), "{firing}");

    // Past four resend intervals the alert would have expired had it been sent once.
    std::thread::sleep(Duration::from_secs(6));
    let active = am.active_alerts();
    assert!(
        active
            .iter()
            .any(|a| a["labels"]["worker"] == "w1" && a["labels"]["alertname"] == "worker_dead"),
        "w1's alert no longer active in Alertmanager: {active:?}\n{}",
        am.log()
    );
    assert!(
        notified(&am, "resolved", "w1").is_none(),
        "resolved while w1 was still dead"
    );

    grid.restart_worker("w1");
    let (_, resolved) = wait_for("a resolved notification", Duration::from_secs(60), || {
        notified(&am, "resolved", "w1")
    });
    assert_eq!(resolved["labels"]["severity"], "critical", "{resolved}");
}

/// The webhook events for `worker` of rule worker_dead, in the order they arrived.
fn webhook_events(receiver: &Receiver, worker: &str) -> Vec<String> {
    receiver
        .bodies()
        .into_iter()
        .filter(|(_, body)| body["worker_id"] == worker && body["rule"] == "worker_dead")
        .map(|(_, body)| body["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_webhook_down_for_30_seconds_gets_the_alerts_afterwards() {
    // Held, not freed: no other test's server may take the port while the receiver is down.
    let held = crate::support::HeldPort::new();
    let url = format!("http://{}/hook", held.addr);
    let mut grid = WatchedGrid::start_with(&["w1", "w2"], "15s", &["--webhook", &url]);
    grid.wait_alive(2);
    let down_since = Instant::now();
    grid.worker("w1").kill9();
    wait_for("DEAD alert for w1", Duration::from_secs(10), || {
        grid.alert("w1", "firing")
    });
    grid.restart_worker("w1");
    wait_for("w1 resolved", Duration::from_secs(60), || {
        grid.alert("w1", "resolved")
    });
    // The receiver is down for 30 s in all, while both events wait for it.
    let back_at = down_since + Duration::from_secs(30);
    std::thread::sleep(back_at.saturating_duration_since(Instant::now()));
    let receiver = Receiver::start_held(held);
    let events = wait_for(
        "both events at the webhook",
        Duration::from_secs(60),
        || {
            let events = webhook_events(&receiver, "w1");
            (events.len() >= 2).then_some(events)
        },
    );
    assert_eq!(events, ["firing", "resolved"], "in the order they happened");
}

#[test]
fn a_webhook_that_never_answers_delays_neither_the_alert_nor_the_requeue() {
    let silent = never_answering();
    let listening = Receiver::start();
    let mut grid = WatchedGrid::start_with(
        &["w1", "w2", "w3"],
        "15s",
        &[
            "--webhook",
            &silent,
            "--webhook",
            &listening.url(),
            "--alert-delivery-timeout",
            "120s",
        ],
    );
    grid.wait_alive(3);
    // w3's death occupies the silent receiver first: its delivery hangs from here on.
    grid.worker("w3").kill9();
    wait_for(
        "w3's alert at the other webhook",
        Duration::from_secs(30),
        || (!webhook_events(&listening, "w3").is_empty()).then_some(()),
    );

    let (job, expected) = grid.start_job_under_way(12_000_000);
    grid.stop_while_leasing("w1");
    let killed_at = unix_now();
    grid.worker("w1").kill9();
    let dead = wait_for("DEAD alert for w1", Duration::from_secs(10), || {
        grid.alert("w1", "firing")
    });
    let alert_latency = dead["timestamp"].as_f64().expect("timestamp") - killed_at;
    assert!(
        alert_latency < 1.0,
        "DEAD alert {alert_latency:.3} s after kill -9"
    );
    let requeued_at = wait_for("w1's tasks re-queued", Duration::from_secs(10), || {
        grid.master().log_json().into_iter().find_map(|line| {
            let fields = &line["fields"];
            (fields["message"] == "re-queued the dead worker's tasks" && fields["worker"] == "w1")
                .then(|| log_time(&line))
        })
    });
    let requeue_latency = requeued_at - killed_at;
    eprintln!("DEAD alert {alert_latency:.3} s, re-queue {requeue_latency:.3} s after kill -9");
    assert!(
        requeue_latency < 1.0,
        "re-queue {requeue_latency:.3} s after kill -9 with a receiver that never answers"
    );
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    // The listening webhook heard w1's death although the silent one still holds w3's.
    wait_for(
        "w1's alert at the other webhook",
        Duration::from_secs(30),
        || (!webhook_events(&listening, "w1").is_empty()).then_some(()),
    );
}

/// Unix seconds of a JSON log line's RFC 3339 UTC `timestamp`.
fn log_time(line: &serde_json::Value) -> f64 {
    let stamp = line["timestamp"].as_str().expect("a timestamp");
    let number = |range: std::ops::Range<usize>| -> i64 {
        stamp[range]
            .parse()
            .expect("a digit field in the timestamp")
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute) = (number(11..13), number(14..16));
    let seconds: f64 = stamp[17..]
        .trim_end_matches('Z')
        .parse()
        .expect("seconds in the timestamp");
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hour * 3600 + minute * 60) as f64 + seconds
}
