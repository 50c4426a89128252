//! Which workers have talked to the master recently: the "active workers" of `query_status`
//! and the plain "no active workers" warning on submit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Last time each worker was heard from.
pub struct WorkerRegistry {
    window: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl WorkerRegistry {
    /// A worker counts as active for `window` after it was last heard from.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `worker` is alive now.
    pub fn touch(&self, worker: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(worker.to_string(), Instant::now());
    }

    /// Forgets a worker (it said goodbye or was reported dead).
    pub fn forget(&self, worker: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(worker);
    }

    /// Workers heard from within the window.
    pub fn active(&self) -> u32 {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().filter(|t| t.elapsed() < self.window).count() as u32
    }
}
