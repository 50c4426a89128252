//! The Redis backend: tasks are entries of Redis Streams read through one consumer group, job
//! state and results are plain keys with readable names, so master and workers on many hosts
//! share one queue and one store, and the master may restart while workers keep going.
//!
//! Every multi-key step is one Lua script (`lua/`), so a crash or a lost connection never leaves
//! half a step behind. Commands share one auto-reconnecting multiplexed connection; a lease that
//! has to block waits on a connection of its own, so it never stalls the others.

mod cache;
mod genome_read;
mod genomes;
mod identity;
pub mod keys;
mod live;
mod queue;
mod retention;
mod scripts;
mod store;
mod token;
mod url;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncCommands, ErrorKind, RedisError, RedisResult, ScriptInvocation};

use crate::backend::{BackendError, BackendResult};
use scripts::Scripts;

pub use identity::{claim_worker_id, own_claim_value, Hold, WORKER_ID_TTL};
use keys::GROUP;
pub use url::{parse_port, RedisUrl, RedisUrlError, DEFAULT_REDIS_PORT};

/// Longest pause between two attempts to reach Redis at start.
pub const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(5);

/// Tuning of the Redis backend; [`Default`] gives the production values.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// A lease idle for longer than this is taken back by [`crate::backend::QueueAdmin::reclaim_expired`].
    /// Long by default: a live worker on a long task extends its lease, and a dead one is
    /// reclaimed at once when the collector reports it.
    pub visibility_timeout: Duration,
    /// Deliveries a task gets before it is dead-lettered and its job fails.
    pub max_attempts: u32,
    /// Alerts kept in `alerts:history`.
    pub alert_history_cap: usize,
    /// Input bytes sent to Redis in one enqueue step (tasks are batched up to this size).
    pub enqueue_batch_bytes: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            visibility_timeout: Duration::from_secs(300),
            max_attempts: 3,
            alert_history_cap: 1000,
            enqueue_batch_bytes: 8 << 20,
        }
    }
}

/// Queue and store on one Redis server. Cheap to share behind an `Arc`; every method may be
/// called concurrently.
pub struct RedisBackend {
    client: ::redis::Client,
    commands: ConnectionManager,
    /// Idle connections for blocking reads, reused so a waiting lease does not reconnect.
    blocking_pool: Mutex<Vec<MultiplexedConnection>>,
    scripts: Scripts,
    options: RedisOptions,
    /// What every result is checked against before it is stored.
    result_check: Option<super::SharedResultCheck>,
    /// Worker id claims (id, claim value) this process gave up: never renewed again.
    given_up_claims: Mutex<HashSet<(String, String)>>,
    /// Workers of this process that run command tasks: their leases read the command streams.
    command_slots: Mutex<HashMap<String, u32>>,
    /// Tokens of this process's deliveries that sent an output tail, deleted when they end.
    live_sent: Mutex<HashSet<String>>,
    /// How the stored objects this process read are kept, so a read needs one round trip.
    layouts: genome_read::Layouts,
}

impl RedisBackend {
    /// Connects to the Redis server at `url` (`redis://HOST:PORT/DB`) and creates the consumer
    /// groups if they are missing. Fails with [`BackendError::Unavailable`] if the server cannot
    /// be reached after a few tries.
    pub async fn connect(url: &str, options: RedisOptions) -> BackendResult<Self> {
        // Only the redacted form of the URL is ever shown: it may carry a password.
        let shown = RedisUrl::parse(url, None)
            .map(|parsed| parsed.to_string())
            .unwrap_or_else(|_| "the redis URL".to_string());
        let client = ::redis::Client::open(url).map_err(|e| {
            BackendError::Other(format!("{shown}: {e}; expected redis://HOST:PORT/DB"))
        })?;
        Self::connect_client(client, &shown, options).await
    }

    /// Connects to `url`; a `rediss://` address runs over TLS, checking the server's
    /// certificate against the address's CA when it has one, else against the system's.
    pub async fn connect_to(url: &RedisUrl, options: RedisOptions) -> BackendResult<Self> {
        let shown = url.to_string();
        let client = match url.ca_pem() {
            Some(pem) => ::redis::Client::build_with_tls(
                url.connection_url(),
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
            None => ::redis::Client::open(url.connection_url()),
        }
        .map_err(|e| BackendError::Other(format!("{shown}: {e}")))?;
        Self::connect_client(client, &shown, options).await
    }

    async fn connect_client(
        client: ::redis::Client,
        shown: &str,
        options: RedisOptions,
    ) -> BackendResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(4)
            .set_max_delay(1000)
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(30));
        let commands = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| unavailable(shown, e))?;
        let backend = RedisBackend {
            client,
            commands,
            blocking_pool: Mutex::new(Vec::new()),
            scripts: Scripts::new(),
            options,
            result_check: None,
            given_up_claims: Mutex::new(HashSet::new()),
            command_slots: Mutex::new(HashMap::new()),
            live_sent: Mutex::new(HashSet::new()),
            layouts: Default::default(),
        };
        backend.ensure_groups().await?;
        Ok(backend)
    }

    /// Like [`RedisBackend::connect`], but while Redis is unreachable keeps trying, with
    /// exponential backoff up to [`MAX_CONNECT_BACKOFF`], logging each failure.
    pub async fn connect_patiently(url: &RedisUrl, options: RedisOptions) -> BackendResult<Self> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match Self::connect_to(url, options.clone()).await {
                Err(BackendError::Unavailable(reason)) => {
                    tracing::warn!(component = "backend", redis = %url, error = %reason, retry_in_ms = backoff.as_millis() as u64, "redis unreachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
                }
                other => return other,
            }
        }
    }

    /// The options this backend runs with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Checks every result this process stores against its task's kind with `check`. A process
    /// that reaches Redis directly stores its own results, so the check runs on its side.
    pub fn with_result_check(mut self, check: super::SharedResultCheck) -> Self {
        self.result_check = Some(check);
        self
    }

    /// Why `result` is not a result of `lease`'s task's kind, if a check is installed and it is
    /// not. The task's kind and spec are the lease's, or read from its stream entry when the
    /// lease is a handle rebuilt from a worker's message; a payload in `parts` is read back from
    /// its staging list.
    async fn payload_verdict(
        &self,
        lease: &super::Lease,
        result: &super::ChunkResult,
        parts: u32,
    ) -> BackendResult<Option<String>> {
        let Some(check) = &self.result_check else {
            return Ok(None);
        };
        let Some((kind, spec)) = self.task_kind_spec(lease).await? else {
            // No such delivery: the store script's fence refuses it.
            return Ok(None);
        };
        let verdict = if parts == 0 {
            check.check(&kind, &spec, result.matches, &result.payload_text()?)
        } else {
            let staging = keys::job_result_staging(
                &lease.id.job,
                lease.id.chunk,
                token::parse_token(&lease.token).entry_id,
            );
            let staged: Vec<Vec<u8>> = self
                .request(|mut conn| {
                    let staging = staging.clone();
                    async move { conn.lrange(staging, 0, -1).await }
                })
                .await?;
            check.check(&kind, &spec, result.matches, &staged.concat())
        };
        Ok(verdict.err())
    }

    /// Whether storing `result` would take its job past the job's cap on matches; if so the
    /// job is failed (nothing more of it is worth storing) and the result is to be dropped.
    /// `stored_matches` keeps each job's stored total as read once for a batch, whose results
    /// are all checked before any of them is stored: one read per job, not per result.
    async fn passes_job_cap(
        &self,
        lease: &super::Lease,
        result: &super::ChunkResult,
        stored_matches: &mut HashMap<String, u64>,
    ) -> BackendResult<bool> {
        // Only a process holding the lease it names decides this: a handle rebuilt from another
        // process's message is not fenced yet, and must not fail a job it may not hold.
        let (Some(check), false) = (&self.result_check, lease.spec.is_null()) else {
            return Ok(false);
        };
        let Some((kind, spec)) = self.task_kind_spec(lease).await? else {
            return Ok(false);
        };
        let Some((cap, error)) = check.job_cap(&kind, &spec) else {
            return Ok(false);
        };
        let stored = match stored_matches.get(&lease.id.job) {
            Some(stored) => *stored,
            None => {
                let stats = keys::job_stats(&lease.id.job);
                let stored: Option<u64> = self
                    .request(|mut conn| {
                        let stats = stats.clone();
                        async move { conn.hget(stats, "total_matches").await }
                    })
                    .await?;
                *stored_matches
                    .entry(lease.id.job.clone())
                    .or_insert(stored.unwrap_or(0))
            }
        };
        if stored.saturating_add(result.matches) <= cap {
            return Ok(false);
        }
        use super::JobStore;
        self.set_status(&lease.id.job, super::JobStatus::Failed, Some(&error))
            .await?;
        Ok(true)
    }

    /// The kind and spec of `lease`'s task: the lease's own, or read from its stream entry when
    /// the lease is a handle rebuilt from a worker's message; `None` if no such entry.
    async fn task_kind_spec(
        &self,
        lease: &super::Lease,
    ) -> BackendResult<Option<(String, serde_json::Value)>> {
        let (kind, spec) = if lease.spec.is_null() {
            let token = token::parse_token(&lease.token);
            let stream = keys::ALL_STREAMS[token.stream_index - 1];
            let entry = token.entry_id.to_string();
            let reply: ::redis::streams::StreamRangeReply = self
                .request(|mut conn| {
                    let entry = entry.clone();
                    async move { conn.xrange(stream, &entry, &entry).await }
                })
                .await?;
            let Some(found) = reply.ids.into_iter().next() else {
                return Ok(None);
            };
            let kind: String = found.get("kind").unwrap_or_default();
            let spec: String = found.get("spec").unwrap_or_default();
            let spec = serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null);
            (kind, spec)
        } else {
            (lease.kind.clone(), lease.spec.clone())
        };
        let kind = match kind.as_str() {
            "" => super::DEFAULT_TASK_KIND.to_string(),
            _ => kind,
        };
        Ok(Some((kind, spec)))
    }

    /// Creates the consumer group on every task stream (and the streams) if missing. Needed at
    /// start and again if Redis lost its data (restarted without persistence).
    async fn ensure_groups(&self) -> BackendResult<()> {
        for stream in keys::ALL_STREAMS {
            let mut create = ::redis::cmd("XGROUP");
            create
                .arg("CREATE")
                .arg(stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM");
            let created: RedisResult<()> = self
                .send(|mut conn| {
                    let create = &create;
                    async move { create.query_async(&mut conn).await }
                })
                .await;
            match created {
                Err(e) if e.code() != Some("BUSYGROUP") => return Err(backend_error(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs a script on the shared connection. A script that finds a consumer group missing
    /// (Redis lost its data) gets the groups recreated and runs once more.
    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> BackendResult<T> {
        let run = |mut conn: ConnectionManager| async move {
            invocation.invoke_async::<T>(&mut conn).await
        };
        match self.send(run).await {
            Err(e) if is_missing_group(&e) => {
                self.ensure_groups().await?;
                self.send(run).await.map_err(backend_error)
            }
            result => result.map_err(backend_error),
        }
    }

    /// Runs a script that must run at most once per call: a lease. Its reply may be lost with
    /// the connection after the script has leased tasks, and a second run would lease others
    /// while the first ones stay pending under the worker's id until their visibility timeout.
    /// So a lost connection is reported (as `Unavailable`), never answered by running the
    /// script again: the caller first returns what the backend counts as its own but it does
    /// not hold ([`crate::backend::Leases::release_unheld`]), then leases again.
    async fn invoke_once<T: ::redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> BackendResult<T> {
        match invocation
            .invoke_async::<T>(&mut self.commands.clone())
            .await
        {
            // The script stopped at its first stream read: nothing was leased.
            Err(e) if is_missing_group(&e) => {
                self.ensure_groups().await?;
                let mut conn = self.commands.clone();
                invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(backend_error)
            }
            result => result.map_err(backend_error),
        }
    }

    /// Runs one request (command, pipeline or script) on the shared connection, as [`send`]
    /// does, mapping errors to the backend's.
    ///
    /// [`send`]: RedisBackend::send
    async fn request<T, F, Fut>(&self, request: F) -> BackendResult<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.send(request).await.map_err(backend_error)
    }

    /// Runs one request on the shared connection. If the connection turns out to be dead (Redis
    /// restarted since the last request), the manager reconnects and the request runs once more.
    /// Every request sent this way is safe to repeat: reads are reads, and each script is
    /// idempotent or first-write-wins. Leases are not: they go through [`invoke_once`].
    ///
    /// [`invoke_once`]: RedisBackend::invoke_once
    async fn send<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match request(self.commands.clone()).await {
            Err(e) if is_connection_lost(&e) => {
                tracing::debug!(component = "backend", error = %e, "redis connection lost; reconnecting");
                request(self.commands.clone()).await
            }
            result => result,
        }
    }

    /// A connection for one blocking read: an idle pooled one, or a new one.
    async fn blocking_connection(&self) -> BackendResult<MultiplexedConnection> {
        let pooled = self.lock_pool().pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => self
                .client
                .get_multiplexed_async_connection()
                .await
                .map_err(backend_error),
        }
    }

    /// Returns a connection that finished its blocking read cleanly.
    fn return_blocking_connection(&self, conn: MultiplexedConnection) {
        self.lock_pool().push(conn);
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Vec<MultiplexedConnection>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.blocking_pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn is_connection_lost(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn is_missing_group(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

fn unavailable(url: &str, e: RedisError) -> BackendError {
    BackendError::Unavailable(format!("redis at {url}: {e}"))
}

/// Maps a Redis error to the backend's: anything that a retry after a pause may cure (connection
/// lost or refused, timeout, server still loading its data) is `Unavailable`.
fn backend_error(e: RedisError) -> BackendError {
    let transient = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError | ErrorKind::TryAgain | ErrorKind::MasterDown
        );
    if transient {
        BackendError::Unavailable(format!("redis: {e}"))
    } else {
        BackendError::Other(format!("redis: {e}"))
    }
}
