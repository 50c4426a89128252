//! The master: takes jobs through its three doors (the protocol port, the HTTP API and the drop
//! directory), cuts them into tasks, serves leases to workers that connect to it, streams results
//! back, and re-queues a dead worker's tasks when the collector says so.
//!
//! `run(listener, state, shutdown)` is the server; `serve(args)` builds it from the command line.
//! The queue and store are trait objects, so the same master runs on either backend.

mod backend_health;
mod cmd;
mod config;
mod data_dir_lock;
mod disk;
mod drop_dir;
pub mod forget;
pub mod http;
mod job_log;
mod job_view;
pub mod jobs;
mod ops;
mod rate_limit;
mod refusal_alert;
mod retention;
mod server;
mod state;
pub mod task_output;
pub mod views;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backend::config::{BackendConfigError, DeliverySettings};
use crate::backend::{BackendError, JobStatus};
use crate::protocol::{check_listen, TlsError, TokenError, Unprotected};

/// What anyone reaching an unprotected master could do, for the refusal to start.
const MASTER_RISK: &str = "submit and cancel jobs and send results for any worker";
/// What anyone reaching an unprotected HTTP API could do.
const HTTP_RISK: &str = "read every job, worker and alert of the grid and forget dead workers";

pub use config::{http_address, MasterArgs, MasterConfig, DEFAULT_HTTP};
pub use data_dir_lock::{data_dir_holder, DataDirLockError};
pub use job_view::{job_view, no_results_yet, summary_view};
pub use rate_limit::{Load, RateLimiter, RateRefusal};
pub use retention::{parse_retention, Retention};
pub use server::{run, run_with_tls};
pub use state::MasterState;
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
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A non-loopback address without a token (and without `--insecure`).
    #[error(transparent)]
    Unprotected(#[from] Unprotected),
    /// The TLS certificate or key could not be used.
    #[error("{0}; check --tls-cert and --tls-key")]
    Tls(#[from] TlsError),
    /// Another master holds the data directory, or it cannot be locked.
    #[error(transparent)]
    DataDir(#[from] DataDirLockError),
    /// The drop directory is unsafe to use (a symlinked or foreign subdirectory) or unusable.
    #[error(transparent)]
    DropDir(#[from] drop_dir::DropDirError),
}

impl MasterError {
    /// Process exit code: 2 for errors the user can fix (a taken address, a bad `--backend`),
    /// 1 for a failing backend.
    pub fn exit_code(&self) -> i32 {
        match self {
            MasterError::Backend(_) => 1,
            MasterError::Bind { .. }
            | MasterError::BackendConfig(_)
            | MasterError::Token(_)
            | MasterError::Unprotected(_)
            | MasterError::Tls(_)
            | MasterError::DataDir(_)
            | MasterError::DropDir(_) => 2,
        }
    }
}

/// Runs a master from the command line until Ctrl-C or SIGTERM.
pub async fn serve(args: MasterArgs) -> Result<(), MasterError> {
    let config = args.config()?;
    let tls = args.tls.server()?;
    let delivery = DeliverySettings {
        visibility_timeout: config.visibility_timeout,
        max_attempts: config.max_attempts,
    };
    let backend_config = args.backend.resolve()?;
    // Held until the master exits: a second master on this directory is refused before it
    // opens the database.
    let _data_dir = data_dir_lock::lock_data_dir(&config.data_dir)?;
    let backend = backend_config
        .connect_master(&config.data_dir, delivery, crate::jobs::result_check())
        .await?;
    let drop_dir = args
        .drop_dir
        .as_deref()
        .map(drop_dir::DropDir::open)
        .transpose()?
        .map(|dir| dir.taking_commands(args.drop_dir_commands));
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
    let has_token = config.token.is_some();
    check_listen(
        "master protocol",
        local,
        has_token,
        config.insecure,
        MASTER_RISK,
    )?;
    // HTTP binds before the protocol address is published: whoever waits for that file finds
    // the HTTP address file (if asked for) already written.
    let http_listener = match &config.http {
        Some(addr) => Some(bind_http(addr, args.http_addr_file.as_deref(), &config).await?),
        None => None,
    };
    if let Some(path) = &args.addr_file {
        write_addr_file(path, local)?;
    }
    tracing::info!(component = "master", listen = %local, tls = tls.is_some(), data_dir = %config.data_dir.display(), "master listening");
    let mut state =
        MasterState::new(backend.queue, backend.store, config).with_genomes(backend.genomes);
    if matches!(
        backend_config,
        crate::backend::config::BackendConfig::Embedded
    ) {
        state.spool_dir = Some(state.config.data_dir.clone());
    }
    let state = Arc::new(state);
    resume_unfinished(&state).await?;
    let stop = shared_shutdown();
    tokio::spawn(job_log::run(state.clone(), stopped(stop.clone())));
    if let Some(dir) = drop_dir {
        tokio::spawn(drop_dir::run(
            dir,
            state.clone(),
            args.drop_poll,
            stopped(stop.clone()),
        ));
    }
    if let Some(keep) = state.config.keep_finished.0 {
        let sweep = retention::Sweep::FinishedJobs;
        tokio::spawn(retention::run(
            state.clone(),
            sweep,
            keep,
            stopped(stop.clone()),
        ));
    }
    if let Some(keep) = state.config.keep_genomes.0 {
        let sweep = retention::Sweep::UnusedGenomes;
        tokio::spawn(retention::run(
            state.clone(),
            sweep,
            keep,
            stopped(stop.clone()),
        ));
    }
    let http_limits = args.http_limits.limits();
    let http_task = http_listener.map(|(listener, bound)| {
        let http_state = http::HttpState {
            master: state.clone(),
            backend: backend_config.name(),
            started: std::time::Instant::now(),
            allowed_hosts: Arc::new(http::AllowedHosts::new(
                bound,
                &args.http_limits.allowed_hosts,
            )),
            renders: Arc::new(tokio::sync::Semaphore::new(http_limits.max_renders)),
            max_renders: http_limits.max_renders,
            history: Default::default(),
        };
        let stopping = stopped(stop.clone());
        tokio::spawn(http::run(listener, http_state, http_limits, stopping))
    });
    run_with_tls(listener, state, tls, stopped(stop)).await;
    if let Some(task) = http_task {
        // A client that never finishes its request must not hold the master up.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// Binds the HTTP API, logs where, and writes its address file if asked.
async fn bind_http(
    addr: &str,
    addr_file: Option<&std::path::Path>,
    config: &MasterConfig,
) -> Result<(TcpListener, std::net::SocketAddr), MasterError> {
    let listener = http::bind(addr).await?;
    let local = listener.local_addr().map_err(|source| MasterError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let has_token = config.token.is_some();
    check_listen(
        "master HTTP API",
        local,
        has_token,
        config.insecure,
        HTTP_RISK,
    )?;
    if let Some(path) = addr_file {
        write_addr_file(path, local)?;
    }
    tracing::info!(component = "master", http = %local, dashboard = %format!("http://{local}/"), "HTTP API listening");
    Ok((listener, local))
}

/// Writes `addr` to `path`: write then rename, so a reader never sees a half-written address.
fn write_addr_file(path: &std::path::Path, addr: std::net::SocketAddr) -> Result<(), MasterError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, addr.to_string())
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|source| MasterError::Bind {
            addr: format!("{} (address file)", path.display()),
            source,
        })
}

/// One Ctrl-C / SIGTERM shared by the protocol and HTTP servers.
fn shared_shutdown() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        let _ = tx.send(true);
    });
    rx
}

/// Completes once the shared shutdown is signalled.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// A job whose tasks follow from its spec alone (a batch job, a Julia render), cut off by a stop
/// between its creation and its acceptance, is planned and accepted now: nothing of it was lost.
async fn resume_planned(state: &MasterState, id: &str) -> bool {
    let Ok(Some(job)) = state.store.job(id).await else {
        return false;
    };
    let planned = crate::jobs::kind(&job.kind)
        .and_then(|kind| kind.tasks(&job.spec).ok())
        .is_some_and(|tasks| matches!(tasks, crate::jobs::TaskSource::Planned(_)));
    if !planned {
        return false;
    }
    jobs::plan_and_accept(state, &job, job.priority)
        .await
        .is_ok()
}

/// After a restart: uploads cut off by the stop can never complete, so they fail (the client
/// resubmits), while jobs that upload nothing are planned again; accepted jobs simply continue
/// from their persisted tasks.
pub async fn resume_unfinished(state: &MasterState) -> Result<(), BackendError> {
    let mut resumed = 0;
    for job in state.store.job_summaries(usize::MAX).await? {
        match job.status {
            JobStatus::Uploading if resume_planned(state, &job.id).await => resumed += 1,
            JobStatus::Uploading => {
                // A job that cannot be cleaned up now (a full disk) must not stop the start.
                if let Err(err) = state.queue.cancel_job(&job.id).await {
                    tracing::warn!(component = "master", job = %job.id, error = %err, "removing an interrupted upload's tasks failed");
                }
                let error = "upload interrupted by a master restart; submit the file again";
                match state
                    .store
                    .set_status(&job.id, JobStatus::Failed, Some(error))
                    .await
                {
                    Ok(_) => {
                        tracing::warn!(component = "master", job = %job.id, "failed interrupted upload")
                    }
                    Err(err) => {
                        tracing::warn!(component = "master", job = %job.id, error = %err, "failing an interrupted upload failed; retried at the next start")
                    }
                }
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
