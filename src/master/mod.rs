//! The master: takes jobs over TCP, cuts them into chunk tasks, serves leases (embedded backend),
//! aggregates results and reclaims a dead worker's tasks when the collector says so.
//!
//! `run(listener, state, shutdown)` is the server; `serve(args)` builds it from the command line.
//! The queue and store are trait objects, so the same master runs on either backend.

mod cmd;
mod config;
mod rate_limit;
mod server;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;

use crate::backend::config::{BackendConfigError, DeliverySettings};
use crate::backend::{BackendError, JobStatus, Queue, Store};

pub use config::{MasterArgs, MasterConfig};
pub use rate_limit::RateLimiter;
pub use server::run;
pub use workers::WorkerRegistry;

/// Why the master could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum MasterError {
    /// The listen address is taken or invalid.
    #[error(
        "cannot listen on {addr}: {source} (is another master running? pick another --listen)"
    )]
    Bind {
        /// The address.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The backend could not be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// `--backend` (or REDIS_HOST / REDIS_PORT) names no usable backend.
    #[error(transparent)]
    BackendConfig(#[from] BackendConfigError),
}

/// Everything the connection handlers share.
pub struct MasterState {
    /// Where tasks go.
    pub queue: Arc<dyn Queue>,
    /// Where job state and results live.
    pub store: Arc<dyn Store>,
    /// Limits and defaults.
    pub config: MasterConfig,
    /// Workers seen recently (for "active workers").
    pub workers: WorkerRegistry,
    /// Jobs per client per minute.
    pub rate_limiter: RateLimiter,
    /// Ids of jobs whose upload is streaming right now.
    pub uploads: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl MasterState {
    /// State over the given backend.
    pub fn new(queue: Arc<dyn Queue>, store: Arc<dyn Store>, config: MasterConfig) -> Self {
        Self {
            rate_limiter: RateLimiter::new(config.jobs_per_minute, Duration::from_secs(60)),
            queue,
            store,
            config,
            workers: WorkerRegistry::new(Duration::from_secs(10)),
            uploads: Default::default(),
        }
    }
}

/// Runs a master from the command line until Ctrl-C or SIGTERM.
pub async fn serve(args: MasterArgs) -> Result<(), MasterError> {
    let config = args.config();
    let delivery = DeliverySettings {
        visibility_timeout: config.visibility_timeout,
        max_attempts: config.max_attempts,
    };
    let (queue, store) = args
        .backend
        .resolve()?
        .open(&config.data_dir, delivery)
        .await?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| MasterError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| MasterError::Bind {
        addr: config.listen.clone(),
        source,
    })?;
    if let Some(path) = &args.addr_file {
        // Write then rename, so a reader never sees a half-written address.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, local.to_string())
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|source| MasterError::Bind {
                addr: format!("{} (address file)", path.display()),
                source,
            })?;
    }
    tracing::info!(component = "master", listen = %local, data_dir = %config.data_dir.display(), "master listening");
    let state = Arc::new(MasterState::new(queue, store, config));
    resume_unfinished(&state).await?;
    run(listener, state, crate::shutdown::signal()).await;
    Ok(())
}

/// After a restart: uploads cut off by the stop can never complete, so they fail (the client
/// resubmits); accepted jobs simply continue from their persisted tasks.
pub async fn resume_unfinished(state: &MasterState) -> Result<(), BackendError> {
    let mut resumed = 0;
    for job in state.store.jobs().await? {
        match job.status {
            JobStatus::Uploading => {
                state.queue.cancel_job(&job.id).await?;
                let error = "upload interrupted by a master restart; submit the file again";
                state
                    .store
                    .set_status(&job.id, JobStatus::Failed, Some(error))
                    .await?;
                tracing::warn!(component = "master", job = %job.id, "failed interrupted upload");
            }
            status if !status.is_finished() => resumed += 1,
            _ => {}
        }
    }
    if resumed > 0 {
        tracing::info!(
            component = "master",
            jobs = resumed,
            "resuming unfinished jobs"
        );
    }
    Ok(())
}
