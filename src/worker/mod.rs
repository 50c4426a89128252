//! The worker: leases tasks, runs each with its job kind's kernel, stores the result, then acks ("ack
//! late": a crash before the ack means the task is delivered again, and the first stored result
//! wins). `--threads N` runs N task slots. One feeder leases tasks in batches, keeping up to
//! `--prefetch` of them waiting beside the running ones (`prefetch`); one flusher stores results
//! and acks them in batches (`flush`). While the master is away every call backs off and
//! retries; on SIGTERM the worker stops leasing, finishes the tasks it holds, settles their
//! results, then stops. A running task's lease is checked every `--lease-check`: once it is
//! lost (reclaimed, expired, or its job cancelled) a kernel that checks a stop flag (Julia per
//! row, particles per step) stops at once, any other finishes its short task, the result is
//! dropped and the slot takes the next task. A task that takes N slots (a command task's
//! `--cpus N`) waits until it holds N of the worker's slots, so no more tasks run at once than the
//! worker has slots; the backend never leases it to a worker with fewer.

mod command;
pub mod command_cgroup;
pub mod command_limits;
mod command_live;
mod command_outputs;
mod command_run;
mod flush;
mod heartbeat;
pub mod input_cache;
mod prefetch;
mod slot;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::backend::config::BackendArgs;
use crate::backend::{Leases, ResultSink, WorkerOffer};
use crate::protocol::{Greeting, Role};

pub use command::CommandPolicy;
pub use heartbeat::{HeartbeatClient, RunningMark, HEARTBEAT_INTERVAL};

/// Default of --lease-check: a cancelled task stops within half a second, for one small
/// request per running task twice a second.
pub const DEFAULT_LEASE_CHECK_SECS: f64 = 0.5;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// `gridwatch worker` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// This worker's id, unique among live workers (a second live worker with the same id is
    /// refused) [default: HOST-PID].
    #[arg(long, env = "WORKER_ID")]
    pub id: Option<String>,
    /// The master's protocol address (HOST:PORT) [default: $MASTER_HOST:$MASTER_PORT, or
    /// 127.0.0.1:5000].
    #[arg(long, env = "GRIDWATCH_MASTER")]
    pub master: Option<String>,
    /// Tasks processed at once (one kernel thread each).
    #[arg(long, env = "GRIDWATCH_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Tasks leased ahead, waiting for a free slot [default: --threads]. With many small tasks
    /// a finished slot then finds its next task at hand instead of waiting a round trip for it,
    /// and leases travel in batches. Only tasks that recently ran under 100 ms are leased ahead:
    /// a task waiting behind a long one is withheld from other workers for nothing. Leases of
    /// waiting tasks are kept extended; on SIGTERM the worker finishes them before it stops.
    #[arg(long, env = "GRIDWATCH_PREFETCH")]
    pub prefetch: Option<usize>,
    /// Seconds between lease extensions of tasks waiting in the prefetch buffer (and at most
    /// between those of a running task, see --lease-check).
    #[arg(long, env = "GRIDWATCH_EXTEND_INTERVAL", default_value_t = 20.0)]
    pub extend_interval: f64,
    /// Seconds between checks that a running task's lease is still held, each of which also
    /// extends it. A task whose job was cancelled, or whose lease was lost (reclaimed from a
    /// worker presumed dead, or expired), stops within about this long, its result dropped and
    /// its slot freed.
    #[arg(long, env = "GRIDWATCH_LEASE_CHECK", default_value_t = DEFAULT_LEASE_CHECK_SECS)]
    pub lease_check: f64,
    /// Unix socket of this worker's agent [default: $XDG_RUNTIME_DIR/gridwatch/ID.sock, or
    /// /tmp/gridwatch-UID/ID.sock]. Without an agent the worker keeps working and retries. The
    /// cluster token is never sent there.
    #[arg(long, env = "IPC_SOCKET_PATH")]
    pub agent_socket: Option<std::path::PathBuf>,
    /// Run command tasks: any program a job names, as this worker's user. Whoever can submit
    /// jobs to the master can then run programs here; without this flag (or --allow-command)
    /// the worker never leases a command task.
    #[arg(long, env = "GRIDWATCH_ALLOW_COMMANDS")]
    pub allow_commands: bool,
    /// Run command tasks of this program only (repeatable): a name on the search path or an
    /// absolute path, matched on the resolved executable.
    #[arg(long, value_name = "PROGRAM")]
    pub allow_command: Vec<String>,
    /// Pass this variable of the worker's environment to command tasks (repeatable). A task
    /// otherwise sees only PATH, HOME, TMPDIR and GRIDWATCH_TASK_INDEX, GRIDWATCH_JOB_ID and
    /// GRIDWATCH_CPUS; the cluster token and the Redis password are never passed.
    #[arg(long, value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Most bytes of command inputs this worker keeps fetched (`8GiB`, `500MiB`): each input is
    /// fetched once and reused by every task that names it; past the size the least recently
    /// used inputs no running task holds are dropped.
    #[arg(long, env = "GRIDWATCH_INPUT_CACHE_SIZE", value_name = "SIZE", default_value_t = input_cache::DEFAULT_INPUT_CACHE_BYTES, value_parser = crate::search::generate::parse_size)]
    pub input_cache_size: u64,
    /// Where the input cache lives (a directory `gridwatch-inputs-ID` is made in it; default: the
    /// system's temporary directory, where task directories are made too, so inputs are hard
    /// linked rather than copied).
    #[arg(long, env = "GRIDWATCH_INPUT_CACHE_DIR", value_name = "DIR")]
    pub input_cache_dir: Option<std::path::PathBuf>,
    /// A delegated cgroup v2 directory (memory controller available) in which each command
    /// task with --memory gets a cgroup of its own, limiting what the whole task uses [default:
    /// a directory under the worker's own cgroup, when that is cgroup v2 and delegated]. Where
    /// none can be used, --memory limits each process's address space (RLIMIT_AS) instead; a
    /// task's result says which limit applied.
    #[arg(long, env = "GRIDWATCH_CGROUP_DIR", value_name = "DIR")]
    pub cgroup_dir: Option<std::path::PathBuf>,
    /// A file whose first line, if the file exists when the worker stops, is the reason it
    /// gives its agent for leaving, shown by `workers`: `up --autoscale` writes `scaled down`
    /// there before it stops a worker the queue no longer needs.
    #[arg(long, value_name = "FILE")]
    pub leave_reason_file: Option<std::path::PathBuf>,
    /// The embedded master's stored genomes (its DATA_DIR/spool/genomes), when this worker runs
    /// on the master's host: the worker reads the ranges its search tasks need from those files
    /// itself, a quarter of the bytes, instead of receiving them decoded over the connection.
    /// The master checks the directory's id, so a wrong directory only loses the shortcut.
    /// `up` and `demo` pass it to their workers.
    #[arg(long, env = "GRIDWATCH_GENOME_DIR", value_name = "DIR")]
    pub genome_dir: Option<std::path::PathBuf>,
    /// The cluster token for the master's hello, when the cluster has one.
    #[command(flatten)]
    pub auth: crate::protocol::TokenArgs,
    /// TLS towards the master, when it serves TLS (the embedded backend's leases travel there).
    #[command(flatten)]
    pub tls: crate::protocol::TlsArgs,
    /// Where tasks come from: `embedded` leases through the master (--master); with
    /// redis://HOST:PORT/DB the worker reads tasks from Redis directly and keeps working while
    /// the master is away.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The first line of `path` (at most 80 characters), if it exists: the worker's reason for
/// leaving.
fn leave_reason(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.chars().take(80).collect())
}

/// Where command tasks' memory cgroups go: `dir` if given (an error if it cannot be used: the
/// operator asked for it), else under the worker's own cgroup when that works, else none.
fn memory_cgroups(
    dir: Option<&std::path::Path>,
    id: &str,
) -> Result<Option<Arc<command_cgroup::CgroupParent>>, WorkerError> {
    match command_cgroup::CgroupParent::find(dir, id) {
        Ok(parent) => {
            tracing::info!(component = "worker", cgroup = ?parent, "command tasks' --memory uses cgroup v2 memory limits");
            Ok(Some(Arc::new(parent)))
        }
        Err(reason) if dir.is_some() => Err(WorkerError::Config(format!("--cgroup-dir: {reason}"))),
        Err(reason) => {
            tracing::info!(component = "worker", %reason, "command tasks' --memory limits each process's address space (RLIMIT_AS): no usable cgroup v2");
            Ok(None)
        }
    }
}

/// Why a worker stopped with an error.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// Bad flags.
    #[error("{0}")]
    Config(String),
}

impl WorkerError {
    /// Process exit code: bad flags are the user's to fix.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// Settings shared by a worker's slots.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The worker's id.
    pub id: String,
    /// How long one lease request waits for a task.
    pub lease_wait: Duration,
    /// How often a prefetched task's lease is extended.
    pub extend_interval: Duration,
    /// How often a running task's lease is checked (and extended): a lost lease or a cancelled
    /// job stops the task within about this long.
    pub lease_check: Duration,
    /// Most tasks leased ahead of the slots.
    pub prefetch: usize,
    /// Heartbeats to the agent, and its advice to pause leasing (a firing resource warning).
    pub heartbeat: Option<HeartbeatClient>,
    /// The programs this worker runs as command tasks; `None`: it leases none.
    pub commands: Option<Arc<CommandPolicy>>,
    /// Where command tasks' inputs are fetched to; `None` before the backend is reached.
    pub inputs: Option<Arc<input_cache::InputCache>>,
    /// Where command tasks' memory cgroups are made; `None`: --memory uses RLIMIT_AS.
    pub cgroups: Option<Arc<command_cgroup::CgroupParent>>,
}

/// Live counters, for the heartbeat to the agent and for logs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Tasks whose result was stored and acked.
    pub tasks_completed: AtomicU64,
    /// Tasks that failed and were nacked.
    pub tasks_failed: AtomicU64,
}

/// Runs `threads` slots on `leases` until `shutdown` completes and every task the worker has
/// leased is finished and settled, storing results in `results`. The feeder, the slots and the
/// flusher share the backend handles: each of their calls runs on a connection of its own, so a
/// waiting lease never holds up an ack.
pub async fn run(
    config: WorkerConfig,
    leases: Arc<dyn Leases>,
    results: Arc<dyn ResultSink>,
    threads: usize,
    stats: Arc<WorkerStats>,
    shutdown: impl Future,
) {
    let threads = threads.max(1);
    let offer = WorkerOffer {
        commands: config.commands.is_some(),
        slots: u32::try_from(threads).unwrap_or(u32::MAX),
        genome_files: None,
        genome_partials: false,
    };
    // Recorded before the first lease, so no lease can miss it.
    let _ = leases.set_offer(&config.id, offer).await;
    // One permit per slot: a task taking N slots (a command task's --cpus) runs once it holds N.
    let free_slots = Arc::new(slot::SlotPool::new(offer.slots));
    let (stop_tx, stop_rx) = watch::channel(false);
    let buffer = Arc::new(prefetch::Buffer::new(threads + config.prefetch));
    let (finished_tx, finished_rx) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(prefetch::feed(
        config.clone(),
        leases.clone(),
        buffer.clone(),
        stop_rx.clone(),
    ));
    let keeper = tokio::spawn(prefetch::keep_extended(
        config.clone(),
        leases.clone(),
        buffer.clone(),
    ));
    let flusher = tokio::spawn(flush::flush(
        config.clone(),
        leases.clone(),
        results.clone(),
        buffer.clone(),
        stats.clone(),
        finished_rx,
        stop_rx.clone(),
    ));
    let mut slots = tokio::task::JoinSet::new();
    for index in 0..threads {
        slots.spawn(slot::run_slot(
            index,
            config.clone(),
            leases.clone(),
            buffer.clone(),
            free_slots.clone(),
            finished_tx.clone(),
            stats.clone(),
            stop_rx.clone(),
        ));
    }
    drop(finished_tx);
    tokio::select! {
        _ = shutdown => {
            tracing::info!(component = "worker", prefetched = buffer.waiting(), "stopping: finishing the tasks in hand");
            let _ = stop_tx.send(true);
        }
        _ = async { while slots.join_next().await.is_some() {} } => {}
    }
    while slots.join_next().await.is_some() {}
    let _ = feeder.await;
    keeper.abort();
    // Every slot has handed over its last result: the flusher settles them, then ends.
    let _ = flusher.await;
}

/// The id a worker takes without `--id`: `HOST-PID`, unique among live processes, so the same
/// command can be run on many hosts.
pub fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Runs a worker from the command line until Ctrl-C or SIGTERM.
pub async fn serve(mut args: WorkerArgs) -> Result<(), WorkerError> {
    let id = args.id.take().unwrap_or_else(default_worker_id);
    crate::protocol::check_worker_id(&id).map_err(|e| WorkerError::Config(e.to_string()))?;
    let token = args
        .auth
        .resolve()
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    let commands =
        CommandPolicy::from_flags(args.allow_commands, &args.allow_command, &args.pass_env)
            .map_err(WorkerError::Config)?;
    let threads = args.threads.max(1);
    let prefetch = args.prefetch.unwrap_or(threads);
    let mut config = WorkerConfig {
        id: id.clone(),
        lease_wait: Duration::from_secs(2),
        extend_interval: Duration::from_secs_f64(args.extend_interval.max(0.05)),
        // `max` first: a NaN flag becomes the floor instead of a panic.
        lease_check: Duration::from_secs_f64(
            args.lease_check
                .max(0.05)
                .min(args.extend_interval.max(0.05)),
        ),
        prefetch,
        heartbeat: Some(HeartbeatClient::spawn(
            &id,
            args.agent_socket
                .clone()
                .unwrap_or_else(|| crate::protocol::default_agent_socket(&id)),
            HEARTBEAT_INTERVAL,
        )),
        commands,
        inputs: None,
        cgroups: None,
    };
    let heartbeat = config.heartbeat.clone();
    let backend_config = args
        .backend
        .resolve()
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    let master = args
        .master
        .clone()
        .unwrap_or_else(crate::protocol::default_master_address);
    let greeting = Greeting::new(Role::Worker)
        .with_id(id.clone())
        .with_token(token)
        .with_new_instance();
    let instance = greeting.instance.clone();
    let tls = args
        .tls
        .client()
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    let genome_dir = match &args.genome_dir {
        Some(_) if backend_config.is_shared() => {
            return Err(WorkerError::Config(
                "--genome-dir reads an embedded master's files; with a shared backend workers \
                 read genomes from it directly"
                    .into(),
            ))
        }
        Some(dir) => {
            Some(crate::backend::embedded::GenomeDir::open(dir).map_err(WorkerError::Config)?)
        }
        None => None,
    };
    let backend = backend_config
        .connect_peer(master.clone(), greeting, tls, crate::jobs::result_check())
        .await
        .map_err(|e| WorkerError::Config(format!("{backend_config}: {e}")))?;
    let leases: Arc<dyn Leases> = match genome_dir {
        Some(dir) => Arc::new(crate::backend::genome::GenomeQueue::reading_files(
            backend.leases.clone(),
            Arc::new(dir),
        )),
        None => backend.leases.clone(),
    };
    let source = if backend_config.is_shared() {
        backend_config.to_string()
    } else {
        master
    };
    if config.commands.is_some() {
        let base = args
            .input_cache_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let cache = input_cache::InputCache::open(
            &base,
            &id,
            args.input_cache_size,
            backend.inputs.clone(),
        )
        .map_err(|e| WorkerError::Config(format!("the input cache in {}: {e}", base.display())))?;
        config.inputs = Some(Arc::new(cache));
        config.cgroups = memory_cgroups(args.cgroup_dir.as_deref(), &id)?;
    }
    tracing::info!(component = "worker", worker = %id, tasks_from = %source, threads, prefetch, "worker started");
    let ids = backend.ids.clone();
    run(
        config,
        leases,
        backend.results,
        threads,
        Arc::new(WorkerStats::default()),
        crate::shutdown::signal(),
    )
    .await;
    if let Some(heartbeat) = heartbeat {
        // A clean exit, so the agent reports STOPPED rather than DEAD.
        let reason = args.leave_reason_file.as_deref().and_then(leave_reason);
        heartbeat.goodbye(reason).await;
    }
    if let (Some(ids), Some(instance)) = (ids, instance) {
        // A clean exit frees the id at once, so a restart elsewhere need not wait for the
        // claim to lapse.
        let holder = crate::backend::redis::own_claim_value(&instance);
        if let Err(err) = ids.release_worker_id(&id, &holder).await {
            tracing::warn!(component = "worker", worker = %id, error = %err, "giving up the worker id failed; it lapses on its own");
        }
    }
    tracing::info!(component = "worker", worker = %id, "worker stopped");
    Ok(())
}
