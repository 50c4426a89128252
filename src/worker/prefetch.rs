//! Leasing ahead: one feeder leases tasks in batches into a bounded buffer that the slots take
//! from, so a slot that finishes a tiny task finds the next one waiting instead of paying a round
//! trip for it. The bound is a count of leases in hand (running, buffered, or with their result
//! not yet settled): the slots plus `--prefetch`. Only quick tasks are leased ahead (see
//! [`QUICK_TASK`]); for longer ones the feeder leases only for slots that wait, still in one batch
//! when several wait at once. Tasks waiting in the buffer keep their leases
//! extended like running ones; a buffered lease found lost is dropped from the buffer (its task is
//! someone else's now). Every buffered lease is held under the worker's id, so a worker declared
//! dead has them reclaimed with the rest, and after a kill -9 their visibility timeout returns them.
//!
//! The buffer also knows every lease in hand by its token, until it is settled. A lease call
//! that failed may have leased tasks whose reply was lost with the connection; before leasing
//! again the feeder names the leases in hand and the backend returns every other task it counts
//! as this worker's ([`Leases::release_unheld`]). A worker starting under an id does so first
//! too, so tasks an earlier process under that id held come back at once.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};

use super::{WorkerConfig, MAX_BACKOFF, MIN_BACKOFF};
use crate::backend::{Lease, Leases, MAX_BATCH};

/// Tasks that run longer than this on average are not leased ahead. Leasing ahead saves a round
/// trip (about a millisecond) per task, which only matters for tasks of a few milliseconds; a
/// longer task gains nothing, while one waiting behind it is withheld from other workers and
/// exposed to its visibility timeout meanwhile.
pub(super) const QUICK_TASK: Duration = Duration::from_millis(100);

/// Leased tasks waiting for a slot, and the count of leases in hand.
pub(super) struct Buffer {
    /// Slots waiting for a task.
    idle: AtomicUsize,
    /// Woken when a slot starts waiting for a task.
    slot_idle: Notify,
    /// Recent task run time, microseconds (a moving average); starts above [`QUICK_TASK`], so
    /// nothing is leased ahead before tasks have shown they are quick.
    recent_micros: AtomicU64,
    state: Mutex<BufferState>,
    /// Woken when a task arrives or the buffer closes.
    ready: Notify,
    /// One permit per lease the worker may still take: slots + prefetch in all.
    capacity: Semaphore,
}

struct BufferState {
    waiting: VecDeque<Lease>,
    /// Tokens of every lease in hand: waiting, running, or with its result not yet settled.
    in_hand: HashSet<String>,
    /// No more tasks will arrive (the worker is stopping).
    closed: bool,
}

impl Buffer {
    /// A buffer allowing `in_hand` leases at once.
    pub fn new(in_hand: usize) -> Self {
        Buffer {
            idle: AtomicUsize::new(0),
            slot_idle: Notify::new(),
            recent_micros: AtomicU64::new(u64::MAX),
            state: Mutex::new(BufferState {
                waiting: VecDeque::new(),
                in_hand: HashSet::new(),
                closed: false,
            }),
            ready: Notify::new(),
            capacity: Semaphore::new(in_hand.max(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BufferState> {
        // The state is a queue and a flag, each left whole by every holder: a panic elsewhere
        // cannot leave it half-changed, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next waiting task; `None` once the buffer is closed and empty.
    pub async fn take(&self) -> Option<Lease> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        self.slot_idle.notify_one();
        let taken = self.wait_for_task().await;
        self.idle.fetch_sub(1, Ordering::SeqCst);
        taken
    }

    async fn wait_for_task(&self) -> Option<Lease> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(lease) = state.waiting.pop_front() {
                    return Some(lease);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn push(&self, leases: Vec<Lease>) {
        {
            let mut state = self.lock();
            state
                .in_hand
                .extend(leases.iter().map(|lease| lease.token.clone()));
            state.waiting.extend(leases);
        }
        self.ready.notify_waiters();
    }

    /// Leases in hand were settled (result stored and acked, nacked, or found lost): the
    /// worker no longer holds them, and may take as many others.
    pub fn settled<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) {
        let count = {
            let mut state = self.lock();
            tokens
                .into_iter()
                .filter(|token| state.in_hand.remove(*token))
                .count()
        };
        self.release(count);
    }

    /// Tokens of the leases in hand.
    fn in_hand(&self) -> Vec<String> {
        self.lock().in_hand.iter().cloned().collect()
    }

    /// No more tasks will arrive: slots finish what is buffered, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
    }

    /// How many tasks wait for a slot.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// A task ran for `elapsed`: updates the recent average that decides whether to lease ahead.
    pub fn ran_for(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().min(u64::MAX as u128 / 8) as u64;
        let recent = self.recent_micros.load(Ordering::Relaxed);
        let next = if recent == u64::MAX {
            micros
        } else {
            (recent.saturating_mul(7) + micros) / 8
        };
        self.recent_micros.store(next, Ordering::Relaxed);
    }

    /// Whether recent tasks were quick enough to lease ahead of the slots.
    fn quick(&self) -> bool {
        self.recent_micros.load(Ordering::Relaxed) < QUICK_TASK.as_micros() as u64
    }

    /// How many tasks to lease now out of `reserved`: all of them when tasks are quick, else
    /// only as many as slots wait for beyond what is buffered (the rest is released).
    fn wanted(&self, reserved: usize) -> usize {
        if self.quick() {
            return reserved;
        }
        let short = self
            .idle
            .load(Ordering::SeqCst)
            .saturating_sub(self.waiting());
        let wanted = reserved.min(short);
        self.release(reserved - wanted);
        wanted
    }

    /// `leases` reserved places were not used after all (or held leases settled): the worker may
    /// take as many others.
    fn release(&self, leases: usize) {
        self.capacity.add_permits(leases);
    }

    /// Waits until at least one more lease may be taken, then reserves as many as may be taken
    /// now (up to `most`). Returns how many were reserved.
    async fn reserve(&self, most: usize) -> usize {
        let Ok(first) = self.capacity.acquire().await else {
            return 0;
        };
        first.forget();
        let more = self
            .capacity
            .available_permits()
            .min(most.saturating_sub(1));
        if more > 0 {
            if let Ok(permits) = self.capacity.try_acquire_many(more as u32) {
                permits.forget();
                return 1 + more;
            }
        }
        1
    }
}

/// Leases batches into `buffer` while there is room, until `stop`; then closes the buffer.
pub(super) async fn feed(
    config: WorkerConfig,
    queue: Arc<dyn Leases>,
    buffer: Arc<Buffer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    // Whether the backend may count leases as ours that we never received: at start (an
    // earlier process under this id), and after every failed lease call.
    let mut unsure = true;
    while !*stop.borrow() {
        if unsure {
            match queue.release_unheld(&config.id, &buffer.in_hand()).await {
                Ok(released) => {
                    unsure = false;
                    backoff = MIN_BACKOFF;
                    if released > 0 {
                        tracing::info!(component = "worker", worker = %config.id, tasks = released, "returned tasks leased under this id that never reached this worker");
                    }
                }
                Err(err) => {
                    tracing::warn!(component = "worker", worker = %config.id, error = %err, retry_in_ms = backoff.as_millis() as u64, "checking this worker's leases failed");
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        if let Some(heartbeat) = config.heartbeat.as_ref().filter(|h| h.leasing_paused()) {
            // Load-aware scheduling: a host whose resources already alarm takes no new work until they recover.
            tracing::info!(component = "worker", worker = %config.id, "leasing paused by the collector");
            tokio::select! {
                _ = stop.changed() => break,
                _ = heartbeat.wait_until_leasing_allowed() => continue,
            }
        }
        let reserved = tokio::select! {
            _ = stop.changed() => break,
            reserved = buffer.reserve(MAX_BATCH) => reserved,
        };
        let wanted = buffer.wanted(reserved);
        if wanted == 0 {
            // Tasks are long: lease only when a slot waits for one.
            tokio::select! {
                _ = stop.changed() => break,
                _ = buffer.slot_idle.notified() => continue,
            }
        }
        // Not cut short by a stop: tasks leased by a request cut off in flight would stay
        // invisible until their visibility timeout. A stop waits for the reply instead (at most
        // the lease wait), and the slots run whatever it brings.
        let leased = queue
            .lease_batch(&config.id, wanted, config.lease_wait)
            .await;
        match leased {
            Ok(leases) => {
                backoff = MIN_BACKOFF;
                buffer.release(wanted - leases.len().min(wanted));
                if !leases.is_empty() {
                    tracing::debug!(component = "worker", worker = %config.id, leased = leases.len(), "leased a batch");
                    buffer.push(leases);
                }
            }
            Err(err) => {
                buffer.release(wanted);
                unsure = true;
                tracing::warn!(component = "worker", worker = %config.id, error = %err, retry_in_ms = backoff.as_millis() as u64, "lease failed");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    buffer.close();
}

/// Extends the leases of buffered tasks every `interval`, as a running task's lease is extended;
/// runs until the worker drops it, once every slot has stopped. A lease the backend no longer holds is dropped from the
/// buffer: its task was reclaimed and is another delivery's now.
pub(super) async fn keep_extended(
    config: WorkerConfig,
    queue: Arc<dyn Leases>,
    buffer: Arc<Buffer>,
) {
    let mut ticker = tokio::time::interval(config.extend_interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let snapshot: Vec<Lease> = buffer.lock().waiting.iter().cloned().collect();
        for lease in snapshot {
            if let Ok(false) = queue.extend(&lease).await {
                let removed = {
                    let mut state = buffer.lock();
                    let before = state.waiting.len();
                    state.waiting.retain(|waiting| waiting.token != lease.token);
                    before - state.waiting.len()
                };
                if removed > 0 {
                    tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, "lease of a buffered task lost; dropped it");
                    buffer.settled([lease.token.as_str()]);
                }
            }
        }
    }
}
