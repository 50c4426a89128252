//! Which workers have talked to the master recently (the "active workers" of `query_status`,
//! the plain "no active workers" warning on submit, and the agentless workers every view lists),
//! and which process holds each worker id: while one process has a connection open under an id,
//! another process is refused it. Where workers share the backend (Redis), a connection also
//! holds the id there, as a worker reaching Redis directly does, so one id rule covers both ways
//! in; the last connection's end gives the id up at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{WorkerIds, WORKER_ID_TTL};

/// The process holding a worker id: its nonce, address, and open connections.
#[derive(Debug)]
struct Holder {
    instance: Option<String>,
    peer: String,
    connections: usize,
}

type Holders = Arc<Mutex<HashMap<String, Holder>>>;

/// When a worker was first heard from in its current stretch of activity, and last.
#[derive(Clone, Copy, Debug)]
struct Seen {
    first: Instant,
    last: Instant,
}

/// Last time each worker was heard from, and who holds each id.
pub struct WorkerRegistry {
    window: Duration,
    seen: Mutex<HashMap<String, Seen>>,
    holders: Holders,
    /// When each worker that runs command tasks last asked for a lease, and its slots.
    runs_commands: Mutex<HashMap<String, (Instant, u32)>>,
}

/// One connection's hold on a worker id; released when dropped (the connection ended).
pub struct IdClaim {
    worker: String,
    holders: Holders,
    shared: Option<SharedHold>,
}

/// The same connection's hold on the id in a shared backend: renewed while it lives.
struct SharedHold {
    queue: Arc<dyn WorkerIds>,
    holder: String,
    renewer: tokio::task::AbortHandle,
}

impl std::fmt::Debug for IdClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdClaim")
            .field("worker", &self.worker)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl IdClaim {
    /// Holds the id in `queue` too (a backend other masters' and workers' processes share) for
    /// the claim value `holder`, renewing it while this claim lives; the message to refuse the
    /// worker with while another process holds it there. A backend that cannot be reached now
    /// does not refuse the worker: the renewals take the id once it is back.
    pub async fn hold_shared(
        &mut self,
        queue: Arc<dyn WorkerIds>,
        holder: String,
    ) -> Result<(), String> {
        match queue.hold_worker_id(&self.worker, &holder).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "worker id {:?} is in use by a live worker (one reaching the shared backend \
                     directly or through another master); give each worker its own --id, or \
                     leave it out for the default HOST-PID",
                    self.worker
                ))
            }
            Err(err) => tracing::warn!(component = "master", worker = %self.worker, error = %err,
                "could not hold the worker id in the backend; retrying while the worker is connected"),
        }
        let renewer = tokio::spawn(renew(queue.clone(), self.worker.clone(), holder.clone()));
        self.shared = Some(SharedHold {
            queue,
            holder,
            renewer: renewer.abort_handle(),
        });
        Ok(())
    }
}

/// Renews a shared hold every third of its lifetime until aborted.
async fn renew(queue: Arc<dyn WorkerIds>, worker: String, holder: String) {
    let mut ticker = tokio::time::interval(WORKER_ID_TTL / 3);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match queue.hold_worker_id(&worker, &holder).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(component = "master", worker = %worker,
                "another process took this connected worker's id in the backend"),
            Err(err) => tracing::warn!(component = "master", worker = %worker, error = %err,
                "renewing the worker id in the backend failed; retrying"),
        }
    }
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = false;
        if let Some(holder) = holders.get_mut(&self.worker) {
            holder.connections = holder.connections.saturating_sub(1);
            if holder.connections == 0 {
                holders.remove(&self.worker);
                last = true;
            }
        }
        drop(holders);
        let Some(shared) = self.shared.take() else {
            return;
        };
        shared.renewer.abort();
        if let (true, Ok(runtime)) = (last, tokio::runtime::Handle::try_current()) {
            let worker = self.worker.clone();
            runtime.spawn(async move {
                if let Err(err) = shared
                    .queue
                    .release_worker_id(&worker, &shared.holder)
                    .await
                {
                    tracing::warn!(component = "master", worker = %worker, error = %err,
                        "giving the worker id up in the backend failed; it lapses on its own");
                }
            });
        }
    }
}

impl WorkerRegistry {
    /// A worker counts as active for `window` after it was last heard from.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(HashMap::new()),
            holders: Arc::new(Mutex::new(HashMap::new())),
            runs_commands: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `worker`, which runs command tasks on `slots` slots, asked for a lease now.
    pub fn note_runs_commands(&self, worker: &str, slots: u32) {
        let mut workers = self.runs_commands.lock().unwrap_or_else(|e| e.into_inner());
        workers.insert(worker.to_string(), (Instant::now(), slots));
    }

    /// The most slots of a worker that runs command tasks and asked for a lease within the
    /// window; 0 when there is none.
    pub fn widest_command_worker(&self) -> u32 {
        let workers = self.runs_commands.lock().unwrap_or_else(|e| e.into_inner());
        workers
            .values()
            .filter(|(at, _)| at.elapsed() < self.window)
            .map(|(_, slots)| *slots)
            .max()
            .unwrap_or(0)
    }

    /// Holds `worker` for a connection of the process `instance` from `peer`; refused while
    /// another process has a connection open under that id.
    pub fn claim(
        &self,
        worker: &str,
        instance: Option<&str>,
        peer: &str,
    ) -> Result<IdClaim, String> {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let holder = holders.entry(worker.to_string()).or_insert_with(|| Holder {
            instance: instance.map(str::to_string),
            peer: peer.to_string(),
            connections: 0,
        });
        if holder.instance.as_deref() != instance {
            return Err(format!(
                "worker id {worker:?} is in use by a live worker (connected from {}); give each \
                 worker its own --id, or leave it out for the default HOST-PID",
                holder.peer
            ));
        }
        holder.connections += 1;
        Ok(IdClaim {
            worker: worker.to_string(),
            holders: Arc::clone(&self.holders),
            shared: None,
        })
    }

    /// Notes that `worker` is alive now.
    pub fn touch(&self, worker: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = seen.entry(worker.to_string()).or_insert(Seen {
            first: now,
            last: now,
        });
        if entry.last.elapsed() >= self.window {
            entry.first = now;
        }
        entry.last = now;
    }

    /// Forgets a worker (it said goodbye or was reported dead).
    pub fn forget(&self, worker: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(worker);
    }

    /// Whether a process has a connection open under `worker`'s id now.
    pub fn is_connected(&self, worker: &str) -> bool {
        let holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders
            .get(worker)
            .is_some_and(|holder| holder.connections > 0)
    }

    /// Workers heard from within the window (or holding a connection now) for at least
    /// `known_for`, with how long ago each was last heard from: the workers that lease, whether
    /// or not an agent watches them. `known_for` leaves a new worker's agent time to report.
    pub fn recent(&self, known_for: Duration) -> Vec<(String, Duration)> {
        let connected: Vec<String> = {
            let holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
            holders
                .iter()
                .filter(|(_, holder)| holder.connections > 0)
                .map(|(worker, _)| worker.clone())
                .collect()
        };
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|(worker, at)| at.last.elapsed() < self.window || connected.contains(worker))
            .filter(|(_, at)| at.first.elapsed() >= known_for)
            .map(|(worker, at)| (worker.clone(), at.last.elapsed()))
            .collect()
    }

    /// Workers heard from within the window.
    pub fn active(&self) -> u32 {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values()
            .filter(|t| t.last.elapsed() < self.window)
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_id_is_held_by_one_process_until_its_connections_end() {
        let registry = WorkerRegistry::new(Duration::from_secs(10));
        let first = registry.claim("w1", Some("a"), "h1:1").expect("free");
        let second = registry
            .claim("w1", Some("a"), "h1:2")
            .expect("same process");
        let err = registry
            .claim("w1", Some("b"), "h2:1")
            .expect_err("another process");
        assert!(err.contains("h1:1") && err.contains("--id"), "{err}");
        drop(first);
        assert!(
            registry.claim("w1", Some("b"), "h2:1").is_err(),
            "one still open"
        );
        drop(second);
        assert!(registry.claim("w1", Some("b"), "h2:1").is_ok(), "released");
    }

    #[test]
    fn recent_workers_are_those_heard_from_or_connected() {
        let registry = WorkerRegistry::new(Duration::from_secs(10));
        registry.touch("leasing");
        let _held = registry.claim("connected", Some("a"), "h:1").expect("free");
        registry.touch("gone");
        registry.forget("gone");
        registry.touch("connected");
        let ids = |known_for| {
            let mut ids: Vec<String> = registry
                .recent(known_for)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(Duration::ZERO), ["connected", "leasing"]);
        assert!(ids(Duration::from_secs(3600)).is_empty(), "all are new");
        let stale = WorkerRegistry::new(Duration::ZERO);
        stale.touch("old");
        assert!(
            stale.recent(Duration::ZERO).is_empty(),
            "outside the window"
        );
    }
}
