//! The live tails of running command tasks' output, in the master's memory only (a restart
//! loses them; the output is stored with each result anyway). An entry is made by the first
//! extension that carries output, belongs to one delivery (its token), and goes when the task is
//! acked, nacked, reclaimed or cancelled, or when its holder stops extending it. At most
//! [`MAX_LIVE_TASKS`] entries of [`LIVE_TAIL_BYTES`] per stream are kept.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::live_output::{LiveOutput, OutputPiece, MAX_LIVE_TASKS};
use crate::backend::{Lease, TaskId};

/// Seconds without an extension after which a tail is dropped: its holder is gone (a live worker
/// extends a running task's lease at least every --extend-interval, 20 s by default).
const STALE_SECS: f64 = 120.0;

/// One delivery's tail.
struct Entry {
    token: String,
    output: LiveOutput,
}

/// Every running task's tail, by task.
#[derive(Default)]
pub(super) struct LiveTails {
    tasks: Mutex<HashMap<TaskId, Entry>>,
}

impl LiveTails {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Entry>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `piece` to the tail of `lease`'s delivery (call only while the lease is held).
    pub(super) fn record(&self, lease: &Lease, piece: &OutputPiece, now: f64) {
        let mut tasks = self.lock();
        let fresh = match tasks.get(&lease.id) {
            Some(entry) => entry.token != lease.token,
            None => true,
        };
        if fresh {
            if tasks.len() >= MAX_LIVE_TASKS {
                tasks.retain(|_, entry| now - entry.output.updated_at < STALE_SECS);
            }
            if tasks.len() >= MAX_LIVE_TASKS && !tasks.contains_key(&lease.id) {
                return;
            }
            let output = LiveOutput {
                chunk: lease.id.chunk,
                worker: lease.worker.clone(),
                started_at: now,
                ..LiveOutput::default()
            };
            let token = lease.token.clone();
            tasks.insert(lease.id.clone(), Entry { token, output });
        }
        if let Some(entry) = tasks.get_mut(&lease.id) {
            entry.output.append(piece, now);
        }
    }

    /// Drops the tail of `lease`'s delivery: the task ended there.
    pub(super) fn forget(&self, lease: &Lease) {
        let mut tasks = self.lock();
        if tasks
            .get(&lease.id)
            .is_some_and(|entry| entry.token == lease.token)
        {
            tasks.remove(&lease.id);
        }
    }

    /// Drops every tail of `job` (cancelled).
    pub(super) fn forget_job(&self, job: &str) {
        self.lock().retain(|id, _| id.job != job);
    }

    /// Drops every tail of `worker` (its tasks were reclaimed).
    pub(super) fn forget_worker(&self, worker: &str) {
        self.lock().retain(|_, entry| entry.output.worker != worker);
    }

    /// The tail of chunk `chunk` of `job`, unless its holder stopped extending it.
    pub(super) fn get(&self, job: &str, chunk: u32, now: f64) -> Option<LiveOutput> {
        let id = TaskId {
            job: job.to_string(),
            chunk,
        };
        let tasks = self.lock();
        let entry = tasks.get(&id)?;
        (now - entry.output.updated_at < STALE_SECS).then(|| entry.output.clone())
    }

    /// The running tasks of `job`, by chunk, without their text.
    pub(super) fn of_job(&self, job: &str, now: f64) -> Vec<LiveOutput> {
        let tasks = self.lock();
        let mut found: Vec<LiveOutput> = tasks
            .iter()
            .filter(|(id, entry)| id.job == job && now - entry.output.updated_at < STALE_SECS)
            .map(|(_, entry)| {
                let mut output = entry.output.clone();
                // Text left out, the offset kept at the stream's end: its size so far.
                for stream in [&mut output.stdout, &mut output.stderr] {
                    stream.offset = stream.end();
                    stream.text.clear();
                }
                output
            })
            .collect();
        found.sort_by_key(|output| output.chunk);
        found
    }
}
