//! What every connection handler of the master shares: the backend, the settings, the workers
//! seen recently, the rate limiter and the uploads in flight.

use std::sync::Arc;
use std::time::Duration;

use super::ops::{MeteredQueue, OpsCounters};
use super::{MasterConfig, RateLimiter, WorkerRegistry};
use crate::backend::{BackendError, BackendResult, GenomeStore, MasterQueue, MasterStore};

/// Everything the connection handlers share.
pub struct MasterState {
    /// Where tasks go.
    pub queue: Arc<dyn MasterQueue>,
    /// Where job state and results live.
    pub store: Arc<dyn MasterStore>,
    /// Where uploaded genomes are kept for reuse; `None` when the backend keeps none.
    pub genomes: Option<Arc<dyn GenomeStore>>,
    /// Limits and defaults.
    pub config: MasterConfig,
    /// Workers seen recently (for "active workers").
    pub workers: WorkerRegistry,
    /// Jobs and queued tasks per client per minute, for every way in.
    pub rate_limiter: RateLimiter,
    /// Ids of jobs whose upload is streaming right now.
    pub uploads: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Where uploads are stored on this machine (the embedded backend's data directory), so an
    /// upload can be checked against its free space; `None` when uploads go elsewhere.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Throttles the alerts that refused results raise.
    pub refusal_alerts: super::refusal_alert::RefusalAlerts,
    /// Whether the backend answers in time (logs an outage once, and its end).
    pub backend_health: super::backend_health::BackendHealth,
    /// Unix time this master started (an upload begun before cannot be streaming to it).
    pub started_at: f64,
    /// Leases, retries, bytes and durations counted for `/metrics`.
    pub ops: Arc<OpsCounters>,
    /// Dead workers an operator asked to forget.
    pub forgotten: super::forget::Forgotten,
}

impl MasterState {
    /// State over the given backend, keeping no genomes (see [`MasterState::with_genomes`]).
    pub fn new(
        queue: Arc<dyn MasterQueue>,
        store: Arc<dyn MasterStore>,
        config: MasterConfig,
    ) -> Self {
        let ops = Arc::new(OpsCounters::default());
        let queue: Arc<dyn MasterQueue> = Arc::new(MeteredQueue::new(
            queue,
            ops.clone(),
            config.visibility_timeout,
        ));
        Self {
            ops,
            forgotten: Default::default(),
            rate_limiter: RateLimiter::new(
                config.jobs_per_minute,
                config.tasks_per_minute,
                Duration::from_secs(60),
            ),
            queue,
            store,
            genomes: None,
            config,
            workers: WorkerRegistry::new(Duration::from_secs(10)),
            uploads: Default::default(),
            spool_dir: None,
            refusal_alerts: Default::default(),
            backend_health: Default::default(),
            started_at: crate::time::unix_now(),
        }
    }

    /// The same state, keeping uploaded genomes in `genomes` (when given).
    pub fn with_genomes(mut self, genomes: Option<Arc<dyn GenomeStore>>) -> Self {
        self.genomes = genomes;
        self
    }

    /// The genome store, or the error of a backend that keeps no genomes.
    pub fn genome_store(&self) -> BackendResult<&dyn GenomeStore> {
        self.genomes
            .as_deref()
            .ok_or_else(|| BackendError::Other("this backend does not store genomes".into()))
    }

    /// How many workers are active, for a client told whether its job will start: those seen
    /// recently, or when none was, those a fresh look at the backend finds. Workers reading
    /// Redis directly are otherwise noticed only every few seconds, and a worker that started
    /// (or a master that restarted) just before the submit must not read as none.
    pub async fn active_workers(&self) -> u32 {
        let active = self.workers.active();
        if active > 0 {
            return active;
        }
        let look = self.queue.recent_workers(BACKEND_WORKERS_WINDOW);
        if let Ok(Ok(Some(workers))) = tokio::time::timeout(FRESH_LOOK, look).await {
            workers.iter().for_each(|worker| self.workers.touch(worker));
        }
        self.workers.active()
    }
}

/// How recently a worker must have shown itself in the backend (leased, or renewed its id
/// claim, every few seconds while it lives) to count as active.
pub const BACKEND_WORKERS_WINDOW: Duration = Duration::from_secs(10);

/// The longest a reply to a client waits for a fresh look at the backend's workers.
const FRESH_LOOK: Duration = Duration::from_secs(1);
