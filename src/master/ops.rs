//! What the master counts for operators: a queue decorator that times every lease it hands
//! out and counts retries, re-queues, dead letters and bytes, plus two histograms (task duration
//! per kind, job duration). Counters only grow; they describe this master process since it
//! started, as Prometheus expects of `_total` series.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::live_output::{LiveOutput, OutputPiece};
use crate::backend::{
    BackendResult, Completion, CompletionOutcome, Lease, Leases, MasterQueue, NackOutcome, NewTask,
    QueueAdmin, ResultSink, TaskId, WorkerId, WorkerIds, WorkerOffer,
};
pub use crate::jobs::command::COMMAND_OUTCOMES;
use crate::protocol::ScaleDirection;
use async_trait::async_trait;

/// Upper bounds of the task-duration buckets, seconds: a search chunk takes milliseconds, a
/// Julia band or a particle replica up to minutes.
pub const TASK_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];
/// Upper bounds of the job-duration buckets, seconds.
pub const JOB_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// A cumulative histogram as Prometheus exposes it.
#[derive(Clone, Debug)]
pub struct Histogram {
    /// Upper bounds, ascending (the `+Inf` bucket is `count`).
    pub bounds: &'static [f64],
    /// Observations at or below each bound.
    pub buckets: Vec<u64>,
    /// Observations in all.
    pub count: u64,
    /// Sum of the observed values.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Adds one observation.
    pub fn observe(&mut self, value: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&mut self.buckets) {
            if value <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// One lease handed out and not yet settled.
struct InFlight {
    kind: String,
    worker: String,
    bytes: u64,
    since: Instant,
}

#[derive(Default)]
struct Timings {
    in_flight: HashMap<(String, u32), InFlight>,
    task_seconds: BTreeMap<String, Histogram>,
    command_seconds: Option<Histogram>,
    command_outcomes: BTreeMap<&'static str, u64>,
    job_seconds: Option<Histogram>,
    /// Re-deliveries per job (leases of a task's second or later attempt), whatever sent the
    /// task back: a failure, a dead worker, an expired lease, a reply lost with a connection.
    redeliveries_by_job: HashMap<String, u64>,
}

/// The master's operational counters.
#[derive(Default)]
pub struct OpsCounters {
    timings: Mutex<Timings>,
    /// Task input bytes enqueued (uploads, cut into chunks).
    pub bytes_uploaded: AtomicU64,
    /// Input bytes of acknowledged tasks (searched: only search tasks carry input).
    pub bytes_searched: AtomicU64,
    /// Bytes clients uploaded with their submits (a submit of a stored genome adds none).
    pub upload_bytes: AtomicU64,
    /// Task input bytes sent to workers with their leases.
    pub input_sent: AtomicU64,
    /// Task input bases that workers read from the stored genomes' files themselves.
    pub input_read_in_place: AtomicU64,
    /// Tasks handed back for another attempt after a failure.
    pub retries: AtomicU64,
    /// Leases moved back to the queue (a dead worker, an expired lease).
    pub requeued: AtomicU64,
    /// Tasks whose attempts ran out.
    pub dead_lettered: AtomicU64,
    /// Tasks acknowledged.
    pub acked: AtomicU64,
    /// Jobs that finished while this master ran, by outcome.
    finished: Mutex<BTreeMap<&'static str, u64>>,
    /// Workers an autoscaler started (`up`) and stopped (`down`), as it told this master.
    autoscale: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of the counters for one scrape.
pub struct OpsSnapshot {
    /// Leases held now, per job.
    pub in_flight_by_job: HashMap<String, u64>,
    /// Task durations per kind.
    pub task_seconds: BTreeMap<String, Histogram>,
    /// Wall time of the programs of command tasks whose result this master stored.
    pub command_seconds: Histogram,
    /// Command task results this master stored, by outcome (every class always present).
    pub command_outcomes: BTreeMap<&'static str, u64>,
    /// Job durations.
    pub job_seconds: Histogram,
    /// Jobs finished, by outcome.
    pub finished: BTreeMap<&'static str, u64>,
    /// Tasks acknowledged.
    pub acked: u64,
    /// Failed tasks queued again.
    pub retries: u64,
    /// Leases moved back to the queue.
    pub requeued: u64,
    /// Tasks whose attempts ran out.
    pub dead_lettered: u64,
    /// Task input bytes enqueued.
    pub bytes_uploaded: u64,
    /// Input bytes of search tasks acknowledged.
    pub bytes_searched: u64,
    /// Bytes clients uploaded with their submits.
    pub upload_bytes: u64,
    /// Task input bytes sent to workers with their leases.
    pub input_sent: u64,
    /// Task input bases workers read from the stored genomes' files themselves.
    pub input_read_in_place: u64,
    /// Autoscaler decisions, by direction (`up`, `down`; both always present).
    pub autoscale: BTreeMap<&'static str, u64>,
}

impl OpsCounters {
    /// Counts one autoscaler decision.
    pub fn autoscaled(&self, direction: ScaleDirection) {
        let mut counts = self.autoscale.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(direction.as_str()).or_default() += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timings> {
        self.timings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leased(&self, lease: &Lease) {
        let key = (lease.id.job.clone(), lease.id.chunk);
        let entry = InFlight {
            kind: lease.kind.clone(),
            worker: lease.worker.clone(),
            bytes: lease.data.len() as u64,
            since: Instant::now(),
        };
        let mut timings = self.lock();
        if lease.attempt > 1 {
            *timings
                .redeliveries_by_job
                .entry(lease.id.job.clone())
                .or_default() += 1;
        }
        timings.in_flight.insert(key, entry);
    }

    fn settled(&self, id: &TaskId) -> Option<InFlight> {
        self.lock().in_flight.remove(&(id.job.clone(), id.chunk))
    }

    /// A task was acked (a lease handle from the wire names no kind: the kind is the one
    /// recorded when it was leased).
    fn acked(&self, id: &TaskId) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        let Some(task) = self.settled(id) else { return };
        // Only kinds whose tasks carry input (a genome range) add bytes: parameter-range tasks
        // carry none, so no kind needs naming here.
        self.bytes_searched.fetch_add(task.bytes, Ordering::Relaxed);
        let seconds = task.since.elapsed().as_secs_f64();
        self.lock()
            .task_seconds
            .entry(task.kind)
            .or_insert_with(|| Histogram::new(&TASK_BUCKETS))
            .observe(seconds);
    }

    /// The stored tasks of a command job that ended: each one's class (see
    /// [`crate::jobs::command::outcome_class`]) and its program's wall time when recorded.
    /// Counted from the store when the job ends, so tasks that Redis workers stored themselves
    /// count as those stored through this master do.
    pub fn command_tasks_ended(&self, endings: &[(&'static str, Option<f64>)]) {
        let mut timings = self.lock();
        for (class, wall_secs) in endings {
            *timings.command_outcomes.entry(class).or_default() += 1;
            if let Some(seconds) = wall_secs {
                timings
                    .command_seconds
                    .get_or_insert_with(|| Histogram::new(&TASK_BUCKETS))
                    .observe(seconds.max(0.0));
            }
        }
    }

    fn nacked(&self, id: &TaskId, outcome: NackOutcome) {
        self.settled(id);
        match outcome {
            NackOutcome::Retrying { .. } => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            NackOutcome::DeadLettered => {
                self.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            NackOutcome::Stale => {}
        }
    }

    /// Counts re-queued tasks and stops expecting their leases to settle: those of a dead
    /// `worker`, or those handed out before `expired_before`.
    fn reclaimed(&self, count: usize, worker: Option<&str>, expired_before: Option<Instant>) {
        self.requeued.fetch_add(count as u64, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        let mut timings = self.lock();
        if let Some(worker) = worker {
            timings.in_flight.retain(|_, task| task.worker != worker);
        }
        if let Some(before) = expired_before {
            timings.in_flight.retain(|_, task| task.since >= before);
        }
    }

    /// Records a job that finished while this master ran; returns the re-deliveries of its
    /// tasks it handed out.
    pub fn job_finished(&self, job: &str, outcome: &'static str, seconds: f64) -> u64 {
        *self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
        let mut timings = self.lock();
        timings
            .job_seconds
            .get_or_insert_with(|| Histogram::new(&JOB_BUCKETS))
            .observe(seconds.max(0.0));
        timings.in_flight.retain(|(owner, _), _| owner != job);
        timings.redeliveries_by_job.remove(job).unwrap_or(0)
    }

    /// A consistent copy for one scrape.
    pub fn snapshot(&self) -> OpsSnapshot {
        let timings = self.lock();
        let mut in_flight_by_job: HashMap<String, u64> = HashMap::new();
        for (job, _) in timings.in_flight.keys() {
            *in_flight_by_job.entry(job.clone()).or_default() += 1;
        }
        OpsSnapshot {
            in_flight_by_job,
            task_seconds: timings.task_seconds.clone(),
            command_seconds: timings
                .command_seconds
                .clone()
                .unwrap_or_else(|| Histogram::new(&TASK_BUCKETS)),
            command_outcomes: COMMAND_OUTCOMES
                .iter()
                .map(|class| {
                    let count = timings.command_outcomes.get(class).copied().unwrap_or(0);
                    (*class, count)
                })
                .collect(),
            job_seconds: timings
                .job_seconds
                .clone()
                .unwrap_or_else(|| Histogram::new(&JOB_BUCKETS)),
            finished: self
                .finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            acked: self.acked.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            bytes_searched: self.bytes_searched.load(Ordering::Relaxed),
            upload_bytes: self.upload_bytes.load(Ordering::Relaxed),
            input_sent: self.input_sent.load(Ordering::Relaxed),
            input_read_in_place: self.input_read_in_place.load(Ordering::Relaxed),
            autoscale: {
                let mut counts = self
                    .autoscale
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                counts.entry("up").or_insert(0);
                counts.entry("down").or_insert(0);
                counts
            },
        }
    }
}

/// A queue that reports what passes through it to [`OpsCounters`].
pub struct MeteredQueue {
    inner: Arc<dyn MasterQueue>,
    counters: Arc<OpsCounters>,
    /// Leases older than this when an expiry sweep re-queues tasks are taken as the re-queued.
    visibility_timeout: Duration,
}

impl MeteredQueue {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn MasterQueue>,
        counters: Arc<OpsCounters>,
        visibility_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            counters,
            visibility_timeout,
        }
    }
}

#[async_trait]
impl Leases for MeteredQueue {
    async fn set_offer(&self, worker: &str, offer: WorkerOffer) -> BackendResult<()> {
        self.inner.set_offer(worker, offer).await
    }

    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        let lease = self.inner.lease(worker, wait).await?;
        if let Some(lease) = &lease {
            self.counters.leased(lease);
        }
        Ok(lease)
    }

    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        let leases = self.inner.lease_batch(worker, max, wait).await?;
        for lease in &leases {
            self.counters.leased(lease);
        }
        Ok(leases)
    }

    async fn complete_batch(
        &self,
        results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let outcomes = self.inner.complete_batch(results, items).await?;
        for (item, outcome) in items.iter().zip(&outcomes) {
            if outcome.is_ok() {
                self.counters.acked(&item.lease.id);
            }
        }
        Ok(outcomes)
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        self.inner.extend(lease).await
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        self.inner.extend_with_output(lease, piece).await
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        self.inner.ack(lease).await?;
        self.counters.acked(&lease.id);
        Ok(())
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        let outcome = self.inner.nack(lease, error).await?;
        self.counters.nacked(&lease.id, outcome);
        Ok(outcome)
    }

    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize> {
        let count = self.inner.release_unheld(worker, held).await?;
        self.counters.reclaimed(count, None, None);
        Ok(count)
    }
}

#[async_trait]
impl QueueAdmin for MeteredQueue {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        // A task reading a stored genome carries no bytes: its input is its range.
        let bytes: u64 = tasks
            .iter()
            .map(
                |t| match crate::backend::genome::GenomeRef::from_spec(&t.spec) {
                    Some(range) if t.data.is_empty() => range.len,
                    _ => t.data.len() as u64,
                },
            )
            .sum();
        self.inner.enqueue(tasks).await?;
        self.counters
            .bytes_uploaded
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize> {
        let count = self.inner.reclaim_worker(worker).await?;
        self.counters.reclaimed(count, Some(worker), None);
        Ok(count)
    }

    async fn oldest_waiting(&self) -> BackendResult<Vec<(crate::backend::Priority, f64)>> {
        self.inner.oldest_waiting().await
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        let count = self.inner.reclaim_expired().await?;
        let before = Instant::now().checked_sub(self.visibility_timeout);
        self.counters.reclaimed(count, None, before);
        Ok(count)
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        self.inner.cancel_job(job).await
    }

    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool> {
        self.inner.cancel_if_unstarted(job).await
    }

    async fn recent_workers(&self, window: Duration) -> BackendResult<Option<Vec<WorkerId>>> {
        self.inner.recent_workers(window).await
    }
    async fn command_slots_live(&self, window: Duration) -> BackendResult<Option<u32>> {
        self.inner.command_slots_live(window).await
    }

    async fn live_output(&self, job: &str, chunk: u32) -> BackendResult<Option<LiveOutput>> {
        self.inner.live_output(job, chunk).await
    }

    async fn live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        self.inner.live_tasks(job).await
    }
}

#[async_trait]
impl WorkerIds for MeteredQueue {
    async fn hold_worker_id(&self, worker: &str, holder: &str) -> BackendResult<bool> {
        self.inner.hold_worker_id(worker, holder).await
    }

    async fn release_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()> {
        self.inner.release_worker_id(worker, holder).await
    }
}

/// This process's CPU time and resident memory, read from `/proc/self`; `None` off Linux.
pub fn process_usage() -> Option<(f64, u64)> {
    let cpu_seconds = crate::procfs::stat(None)?.cpu_seconds;
    Some((cpu_seconds, crate::procfs::resident_bytes(None)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::new(&TASK_BUCKETS);
        histogram.observe(0.003);
        histogram.observe(0.2);
        histogram.observe(500.0);
        assert_eq!(histogram.count, 3);
        assert_eq!(histogram.buckets[0], 0, "0.001");
        assert_eq!(histogram.buckets[1], 1, "0.005");
        assert_eq!(histogram.buckets[6], 2, "0.25");
        assert_eq!(*histogram.buckets.last().expect("buckets"), 2, "120");
        assert!((histogram.sum - 500.203).abs() < 1e-9);
    }

    #[test]
    fn own_process_usage_is_read() {
        let (cpu, rss) = process_usage().expect("linux /proc");
        assert!(cpu >= 0.0);
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
