//! Worker ids are unique among live workers: a worker holds `worker:{id}:owner` with its process
//! nonce and a short TTL that it keeps renewing while it lives, so a second process with the same
//! id is refused, and the id is free again soon after its holder dies.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use ::redis::Script;

use super::{keys, RedisBackend};
use crate::backend::{BackendError, BackendResult};

/// How long a claim outlives its holder's last renewal.
pub const WORKER_ID_TTL: Duration = Duration::from_secs(10);

fn hold_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/hold_worker_id.lua")))
}

impl RedisBackend {
    /// Takes or renews `worker` for the process `instance`; false while another holds it.
    pub async fn hold_worker_id(&self, worker: &str, instance: &str) -> BackendResult<bool> {
        let mut invocation = hold_script().prepare_invoke();
        invocation
            .key(keys::worker_owner(worker))
            .key(keys::WORKERS_SEEN)
            .arg(instance)
            .arg(WORKER_ID_TTL.as_millis() as u64)
            .arg(worker);
        let held: i64 = self.invoke(&invocation).await?;
        Ok(held == 1)
    }
}

/// Claims `worker` for `instance`, refusing with a clear error while another live process holds
/// it, then keeps renewing the claim for as long as `backend` lives.
pub async fn claim_worker_id(
    backend: &Arc<RedisBackend>,
    worker: &str,
    instance: &str,
) -> BackendResult<()> {
    if !backend.hold_worker_id(worker, instance).await? {
        return Err(BackendError::Other(format!(
            "worker id {worker:?} is in use by a live worker (its claim lapses {} s after that \
             worker stops); give each worker its own --id, or leave it out for the default HOST-PID",
            WORKER_ID_TTL.as_secs()
        )));
    }
    tokio::spawn(renew(
        Arc::downgrade(backend),
        worker.to_string(),
        instance.to_string(),
    ));
    Ok(())
}

/// Renews the claim every third of its TTL until the backend is dropped.
async fn renew(backend: Weak<RedisBackend>, worker: String, instance: String) {
    let mut ticker = tokio::time::interval(WORKER_ID_TTL / 3);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        match backend.hold_worker_id(&worker, &instance).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(component = "worker", worker = %worker,
                "another process took this worker id while Redis could not be reached"),
            Err(err) => tracing::warn!(component = "worker", worker = %worker, error = %err,
                "renewing the worker id claim failed; retrying"),
        }
    }
}
