//! The agent's link to the collector: a report every interval and at once on a status change,
//! kept in a bounded buffer until the collector acknowledges it (so reports made while the
//! collector is away are delivered when it returns), reconnecting with backoff. Each ack carries
//! the collector's lease verdict, which is passed on to the worker. Between reports a heartbeat
//! goes out every beat interval, so the collector can judge a lost host in seconds while full
//! reports stay infrequent.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use super::sampler::Sampler;
use super::server::{AgentShared, LeaseAdvice};
use super::task_usage::TaskSampler;
use crate::protocol::handshake::{hello, Greeting};
use crate::protocol::transport::{self, ConnectError};
use crate::protocol::{ClientTls, Connection, Message, ProtocolError, WorkerReport, WorkerStatus};
use crate::time::unix_now;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A report not acknowledged within this time counts as lost; the connection is redone.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Reports made but not yet acknowledged, oldest first, dropping the oldest when full.
#[derive(Debug)]
pub struct ReportBuffer {
    reports: Mutex<VecDeque<WorkerReport>>,
    capacity: usize,
    added: Notify,
}

impl ReportBuffer {
    /// A buffer holding at most `capacity` reports.
    pub fn new(capacity: usize) -> ReportBuffer {
        ReportBuffer {
            reports: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            added: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<WorkerReport>> {
        self.reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a report; returns the report dropped to make room, if any.
    pub fn push(&self, report: WorkerReport) -> Option<WorkerReport> {
        let mut reports = self.lock();
        let dropped = if reports.len() >= self.capacity {
            reports.pop_front()
        } else {
            None
        };
        reports.push_back(report);
        drop(reports);
        self.added.notify_one();
        dropped
    }

    /// The oldest unacknowledged report.
    pub fn front(&self) -> Option<WorkerReport> {
        self.lock().front().cloned()
    }

    /// Removes the oldest report once acknowledged (only if it is still `seq`).
    pub fn acknowledge(&self, seq: u64) {
        let mut reports = self.lock();
        if reports.front().is_some_and(|r| r.seq == seq) {
            reports.pop_front();
        }
    }

    /// Reports waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// What a report needs besides the worker's state.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// The worker's id.
    pub worker_id: String,
    /// How often to report when nothing changes.
    pub interval: Duration,
    /// How often heartbeats go out between reports (zero: none), announced in each report.
    pub beat_interval: Duration,
    /// Disk whose use is reported.
    pub disk_path: PathBuf,
}

/// Makes a report every interval and on every status change, until `shutdown` completes.
pub async fn produce(
    settings: ReportSettings,
    shared: Arc<AgentShared>,
    buffer: Arc<ReportBuffer>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let mut sampler = Sampler::new(&settings.disk_path);
    let mut tasks = TaskSampler::default();
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shared.status_changed.notified() => {}
            _ = &mut shutdown => return,
        }
        seq += 1;
        let report = make_report(&settings, &shared, (&mut sampler, &mut tasks), seq);
        if let Some(dropped) = buffer.push(report) {
            tracing::warn!(
                seq = dropped.seq,
                "report buffer full; dropped the oldest report"
            );
        }
    }
}

fn make_report(
    settings: &ReportSettings,
    shared: &AgentShared,
    (sampler, task_sampler): (&mut Sampler, &mut TaskSampler),
    seq: u64,
) -> WorkerReport {
    let (status, reason, pid, tasks, task, running, uptime) = {
        let tracker = shared.tracker();
        (
            tracker.status(),
            tracker.reason().map(str::to_string),
            tracker.pid(),
            tracker.tasks_completed(),
            tracker.current_task().map(str::to_string),
            tracker.running().to_vec(),
            tracker.uptime(Instant::now()),
        )
    };
    let sample = sampler.sample(pid);
    // A worker that is not alive runs nothing any more (its tasks die with it).
    let running = if status == WorkerStatus::Alive {
        task_sampler.sample(&running)
    } else {
        task_sampler.sample(&[]);
        Vec::new()
    };
    WorkerReport {
        worker_id: settings.worker_id.clone(),
        seq,
        timestamp: unix_now(),
        status,
        status_reason: reason,
        cpu_percent: sample.cpu_percent,
        memory_mb: sample.memory_mb,
        memory_percent: sample.memory_percent,
        disk_percent: sample.disk_percent,
        process_cpu_percent: sample.process_cpu_percent,
        process_rss_mb: sample.process_rss_mb,
        grid_cpu_percent: sample.grid_cpu_percent,
        pid,
        tasks_processed: tasks,
        current_task: task,
        tasks: running,
        worker_uptime_secs: uptime.map(|d| d.as_secs_f64()),
        report_interval_secs: settings.interval.as_secs_f64(),
        last_rtt_ms: None,
        beat_interval_secs: (!settings.beat_interval.is_zero())
            .then_some(settings.beat_interval.as_secs_f64()),
    }
}

/// Where the collector is and how to reach it.
pub struct CollectorLink {
    /// Its address (host:port).
    pub address: String,
    /// TLS settings when it serves TLS.
    pub tls: Option<ClientTls>,
    /// The agent's hello.
    pub greeting: Greeting,
}

/// Delivers buffered reports to the collector, oldest first, with a heartbeat for `worker` every
/// `beat_interval` in between (none if zero), until `shutdown` completes.
pub async fn deliver(
    link: CollectorLink,
    worker: String,
    beat_interval: Duration,
    shared: Arc<AgentShared>,
    buffer: Arc<ReportBuffer>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let collector = &link.address;
    // A restarted collector judges lost every agent it does not hear from within a few beats,
    // so an agent that beats never waits longer than one beat between attempts.
    let retry_max = if beat_interval.is_zero() {
        RETRY_MAX
    } else {
        beat_interval.clamp(RETRY_MIN, RETRY_MAX)
    };
    let mut retry = RETRY_MIN;
    let mut last_rtt_ms = None;
    let mut beats = Beats {
        worker: &worker,
        interval: beat_interval,
        enabled: !beat_interval.is_zero(),
    };
    loop {
        let mut connected = false;
        let outcome = tokio::select! {
            outcome = session(&link, &mut beats, &shared, &buffer, &mut last_rtt_ms,
                &mut connected) => outcome,
            _ = &mut shutdown => return,
        };
        // Without the collector there is no verdict: never leave a worker paused on stale advice.
        shared.advice.send_if_modified(|advice| {
            let was_paused = advice.pause;
            *advice = LeaseAdvice::default();
            was_paused
        });
        if connected {
            // A link that worked: retry quickly, and say once that reports are now buffered.
            retry = RETRY_MIN;
            let reason = outcome.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(collector = %collector, error = %reason,
                "lost the collector; buffering reports until it returns");
        } else if let Err(err) = outcome {
            tracing::debug!(collector = %collector, error = %err, "collector unreachable");
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = &mut shutdown => return,
        }
        retry = (retry * 2).min(retry_max);
    }
}

/// Whose heartbeats to send, and how often.
struct Beats<'a> {
    worker: &'a str,
    interval: Duration,
    /// False once a collector refused them (one that predates heartbeats), for good.
    enabled: bool,
}

/// One connection to the collector; returns how many reports it delivered before it ended.
async fn session(
    link: &CollectorLink,
    beats: &mut Beats<'_>,
    shared: &AgentShared,
    buffer: &ReportBuffer,
    last_rtt_ms: &mut Option<f64>,
    connected: &mut bool,
) -> Result<u64, ProtocolError> {
    let collector = link.address.as_str();
    let stream = match transport::connect(collector, link.tls.as_ref(), ACK_TIMEOUT).await {
        Ok(stream) => stream,
        Err(ConnectError::Unreachable(reason)) => return Err(std::io::Error::other(reason).into()),
        Err(ConnectError::Tls(reason)) => {
            // A certificate the CA does not vouch for: retrying will not help until someone
            // fixes --tls-ca, so say so loudly.
            tracing::warn!(collector, error = %reason, "cannot connect to the collector");
            return Err(std::io::Error::other(reason).into());
        }
    };
    let mut conn = Connection::new(stream);
    hello(&mut conn, &link.greeting).await?;
    *connected = true;
    tracing::info!(collector, pending = buffer.len(), "connected to collector");
    let mut delivered = 0;
    // Beat at once when nothing waits to be reported: a collector that just restarted counts
    // the host lost unless it hears from the agent within a few beats of its start.
    let mut next_beat = tokio::time::Instant::now();
    loop {
        let Some(mut report) = buffer.front() else {
            let beat_due = tokio::time::sleep_until(next_beat);
            tokio::select! {
                _ = buffer.added.notified() => {}
                _ = beat_due, if beats.enabled => {
                    beat(&mut conn, beats, shared).await?;
                    next_beat = tokio::time::Instant::now() + beats.interval;
                }
            }
            continue;
        };
        report.last_rtt_ms = *last_rtt_ms;
        let seq = report.seq;
        let sent_at = Instant::now();
        conn.write_message(&Message::Metrics {
            data: Box::new(report),
        })
        .await?;
        let reply = tokio::time::timeout(ACK_TIMEOUT, conn.expect_message())
            .await
            .map_err(|_| ProtocolError::Timeout(ACK_TIMEOUT))??;
        match reply {
            Message::MetricsAck {
                seq: acked,
                pause_leasing,
                reason,
            } if acked == seq => {
                *last_rtt_ms = Some(sent_at.elapsed().as_secs_f64() * 1000.0);
                buffer.acknowledge(seq);
                delivered += 1;
                next_beat = tokio::time::Instant::now() + beats.interval;
                advise(shared, pause_leasing, reason);
            }
            Message::Error { code, message, .. } => {
                tracing::warn!(%code, message, "collector refused a report");
                return Ok(delivered);
            }
            other => {
                tracing::warn!(reply = %other.type_name(), "unexpected reply from collector");
                return Ok(delivered);
            }
        }
    }
}

/// Passes the collector's lease verdict on to the worker when it changed.
fn advise(shared: &AgentShared, pause: bool, reason: Option<String>) {
    let advice = LeaseAdvice { pause, reason };
    shared.advice.send_if_modified(|current| {
        let changed = *current != advice;
        *current = advice;
        changed
    });
}

/// Sends one heartbeat and takes its ack. A collector that predates heartbeats refuses them
/// (and may close the connection): they are then turned off, and reports alone inform it.
async fn beat(
    conn: &mut Connection<transport::Stream>,
    beats: &mut Beats<'_>,
    shared: &AgentShared,
) -> Result<(), ProtocolError> {
    conn.write_message(&Message::AgentHeartbeat {
        worker_id: beats.worker.to_string(),
        interval_secs: beats.interval.as_secs_f64(),
    })
    .await?;
    let reply = tokio::time::timeout(ACK_TIMEOUT, conn.expect_message())
        .await
        .map_err(|_| ProtocolError::Timeout(ACK_TIMEOUT))??;
    match reply {
        Message::AgentHeartbeatAck {
            pause_leasing,
            reason,
        } => {
            advise(shared, pause_leasing, reason);
            Ok(())
        }
        Message::Error { code, message, .. } => {
            tracing::info!(
                %code,
                message,
                "the collector takes no heartbeats; sending reports only"
            );
            beats.enabled = false;
            Ok(())
        }
        other => {
            tracing::warn!(reply = %other.type_name(), "unexpected reply to a heartbeat");
            Err(ProtocolError::Closed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WorkerStatus;

    fn report(seq: u64) -> WorkerReport {
        WorkerReport {
            worker_id: "w1".into(),
            seq,
            timestamp: seq as f64,
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
            report_interval_secs: 10.0,
            last_rtt_ms: None,
            beat_interval_secs: None,
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_keeps_order() {
        let buffer = ReportBuffer::new(3);
        let dropped: Vec<u64> = (1..=5)
            .filter_map(|seq| buffer.push(report(seq)))
            .map(|r| r.seq)
            .collect();
        assert_eq!(dropped, [1, 2]);
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.front().map(|r| r.seq), Some(3));
    }

    #[test]
    fn only_the_report_sent_is_acknowledged() {
        let buffer = ReportBuffer::new(10);
        buffer.push(report(1));
        buffer.push(report(2));
        buffer.acknowledge(2);
        assert_eq!(
            buffer.front().map(|r| r.seq),
            Some(1),
            "a stale ack removes nothing"
        );
        buffer.acknowledge(1);
        buffer.acknowledge(2);
        assert!(buffer.is_empty());
    }
}
