//! `gridwatch up`: the whole grid on one machine as child processes (a master, a collector, and
//! N workers each with its agent). A child that dies is restarted with backoff; all stop together
//! on Ctrl-C or SIGTERM. `Cluster` is also what `demo` and `bench grid` start.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::connect::ClientError;

use super::autoscale::Autoscaler;
use super::elastic::ElasticArgs;
use super::spawner::os_args;
pub(super) use super::spawner::Spawner;
use super::supervise::{last_words, Supervised};

/// How long the master may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor looks for children that exited.
const SUPERVISE_TICK: Duration = Duration::from_millis(100);

/// `gridwatch up` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// Worker processes to start.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Task slots (kernel threads) per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Start the workers with --allow-commands: they run any program a command job names, as
    /// your user. Only for a grid whose master nobody else can write to.
    #[arg(long)]
    pub allow_commands: bool,
    /// Master listen address (port 0 picks a free port).
    #[arg(long, env = "GRIDWATCH_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Data directory of the master (database, spooled uploads, logs).
    #[arg(long, env = "GRIDWATCH_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The master's drop directory for batch files (default: DATA_DIR/task_queues), or `off`.
    #[arg(long, env = "GRIDWATCH_DROP_DIR")]
    pub drop_dir: Option<String>,
    /// Extra flags passed to the master (e.g. --chunk-size 65536), space-separated.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub master_flags: String,
    /// The master's HTTP API and dashboard address (port 0 picks a free port), or `off`.
    #[arg(long, env = "GRIDWATCH_HTTP", default_value = gridwatch::master::DEFAULT_HTTP)]
    pub http: String,
    /// Where tasks and job state live, for the master and every worker (embedded or
    /// redis://HOST:PORT/DB).
    #[command(flatten)]
    pub backend: gridwatch::backend::config::BackendArgs,
    /// Alert receivers and autoscaling.
    #[command(flatten)]
    pub elastic: ElasticArgs,
}

/// A running local grid.
pub struct Cluster {
    /// The master's bound address.
    pub master_addr: String,
    /// The dashboard's URL, unless the master's HTTP server is off.
    pub dashboard: Option<String>,
    /// Where each process logs.
    pub log_dir: PathBuf,
    /// The collector's bound address.
    pub collector_addr: String,
    /// The collector's JSON-lines alert log.
    pub alert_log: PathBuf,
    master: Supervised,
    collector: Supervised,
    /// Agents and workers, in the same order; each worker's agent listens on `sockets[i]`.
    pub(super) agents: Vec<Supervised>,
    pub(super) workers: Vec<Supervised>,
    pub(super) sockets: Vec<PathBuf>,
    /// Starts one more worker with its agent.
    pub(super) spawner: Spawner,
    /// Follows the queue with the number of workers, under `--autoscale`.
    pub(super) scaler: Option<Autoscaler>,
    /// Workers stopped by a scale-down, finishing their tasks, and their agents.
    pub(super) retiring: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// Starts the master, waits until it listens, then the collector, the agents and the workers.
    pub async fn start(args: &UpArgs) -> Result<Self, ClientError> {
        let exe = std::env::current_exe()
            .map_err(|e| ClientError::Usage(format!("cannot find the gridwatch binary: {e}")))?;
        // Checked before anything starts or any address file is touched, so the grid that
        // holds the directory keeps running undisturbed.
        if let Some(pid) = gridwatch::master::data_dir_holder(&args.data_dir) {
            return Err(ClientError::Usage(format!(
                "the data directory {} is in use by another master (pid {pid}); stop that grid, \
                 or give this one its own --data-dir",
                args.data_dir.display()
            )));
        }
        check_ports_free(args)?;
        let log_dir = args.data_dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| ClientError::Usage(format!("{}: {e}", log_dir.display())))?;
        let addr_file = args.data_dir.join("master.addr");
        let _ = std::fs::remove_file(&addr_file);
        let http_addr_file = args.data_dir.join("http.addr");
        let _ = std::fs::remove_file(&http_addr_file);
        let mut master = Supervised::start(
            "master",
            &exe,
            master_args(args, &args.listen, &args.http),
            log_dir.join("master.log"),
        )?;
        let master_addr = match wait_for_addr(&addr_file, &mut master).await {
            Ok(addr) => addr,
            Err(err) => {
                master.kill().await;
                return Err(err);
            }
        };
        // The master writes the HTTP address before the protocol one, so it is there by now.
        let http_addr = std::fs::read_to_string(&http_addr_file)
            .ok()
            .map(|addr| addr.trim().to_string());
        let dashboard = http_addr.as_ref().map(|addr| format!("http://{addr}/"));
        // A restarted master takes the ports the first one bound, so every client keeps its address.
        master.restart_with(master_args(
            args,
            &master_addr,
            http_addr.as_deref().unwrap_or(&args.http),
        ));
        let alert_log = args.data_dir.join("alerts.log");
        let (collector, collector_addr) =
            match start_collector(&exe, args, &master_addr, &alert_log).await {
                Ok(started) => started,
                Err(err) => {
                    master.kill().await;
                    return Err(err);
                }
            };
        let socket_dir = args.data_dir.join("sockets");
        // The agents' sockets need a private directory: only this user may reach them.
        std::fs::create_dir_all(&socket_dir)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| ClientError::Usage(format!("{}: {e}", socket_dir.display())))?;
        let spawner = Spawner {
            exe,
            log_dir: log_dir.clone(),
            socket_dir,
            master_addr: master_addr.clone(),
            collector_port: collector_addr
                .rsplit(':')
                .next()
                .unwrap_or("6000")
                .to_string(),
            threads: args.threads,
            backend: backend_flag(args),
            allow_commands: args.allow_commands,
            // An embedded master keeps genomes as files on this host: its workers read them.
            genome_dir: args
                .backend
                .resolve()
                .is_ok_and(|backend| !backend.is_shared())
                .then(|| gridwatch::backend::embedded::genome_dir(&args.data_dir)),
        };
        let scaler = args.elastic.autoscaler();
        let count = scaler.as_ref().map_or(args.workers, |s| s.policy().min);
        let ids: Vec<String> = (1..=count).map(|n| format!("w{n}")).collect();
        let mut agents = Vec::new();
        for id in &ids {
            agents.push(spawner.agent(id)?);
        }
        // A worker that starts before its agent listens works unwatched until its next retry:
        // killed meanwhile, it would never be reported dead. So every agent listens first.
        for (id, agent) in ids.iter().zip(&mut agents) {
            wait_for_agent(&spawner.socket(id), id, agent).await?;
        }
        let mut workers = Vec::new();
        for id in &ids {
            workers.push(spawner.worker(id)?);
        }
        let sockets = ids.iter().map(|id| spawner.socket(id)).collect();
        Ok(Self {
            master_addr,
            dashboard,
            log_dir,
            collector_addr,
            alert_log,
            master,
            collector,
            agents,
            workers,
            sockets,
            spawner,
            scaler,
            retiring: Vec::new(),
        })
    }

    /// Worker ids and process ids.
    pub fn worker_pids(&self) -> Vec<(String, Option<u32>)> {
        self.workers
            .iter()
            .map(|worker| {
                let id = worker.name.trim_start_matches("worker ").to_string();
                (id, worker.pid())
            })
            .collect()
    }

    /// The master's process id, while it runs (the benchmarks sample its memory).
    #[cfg(feature = "bench")]
    pub fn master_pid(&self) -> Option<u32> {
        self.master.pid()
    }

    /// Prints where everything runs.
    pub fn describe(&self) {
        eprintln!("master   listening on {}", self.master_addr);
        if let Some(url) = &self.dashboard {
            eprintln!("dashboard {url} (JSON API and /metrics there too)");
        }
        eprintln!(
            "collector listening on {} (alerts in {})",
            self.collector_addr,
            self.alert_log.display()
        );
        for (id, pid) in self.worker_pids() {
            eprintln!("worker   {id} (pid {})", pid.unwrap_or(0));
        }
        eprintln!("logs     {}", self.log_dir.display());
    }

    /// Restarts every child that exits on its own, with backoff, until `shutdown` completes. A
    /// worker is restarted only once its agent accepts connections, as at start.
    pub async fn supervise(&mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(SUPERVISE_TICK) => {}
            }
            let now = Instant::now();
            let children = std::iter::once(&mut self.master)
                .chain(std::iter::once(&mut self.collector))
                .chain(self.agents.iter_mut());
            for child in children {
                if let Some(line) = child.check_exit() {
                    eprintln!("{line}");
                }
                if child.restart_due(now) {
                    eprintln!("{}", child.restart());
                }
            }
            for ((worker, agent), socket) in
                self.workers.iter_mut().zip(&self.agents).zip(&self.sockets)
            {
                if let Some(line) = worker.check_exit() {
                    eprintln!("{line}");
                }
                if worker.restart_due(now)
                    && agent.is_running()
                    && tokio::net::UnixStream::connect(socket).await.is_ok()
                {
                    eprintln!("{}", worker.restart());
                }
            }
            self.autoscale().await;
        }
    }

    /// SIGTERM to workers, then their agents and the collector, then the master; SIGKILL to any
    /// still running after the timeout. Workers go first so their agents see a clean goodbye.
    pub async fn stop(mut self) {
        for retiring in std::mem::take(&mut self.retiring) {
            let _ = retiring.await;
        }
        for child in &mut self.workers {
            child.terminate();
        }
        for child in &mut self.workers {
            child.reap().await;
        }
        for child in &mut self.agents {
            child.terminate();
        }
        self.collector.terminate();
        for child in &mut self.agents {
            child.reap().await;
        }
        self.collector.reap().await;
        self.master.terminate();
        self.master.reap().await;
    }
}

/// Refuses to start anything while a port the grid must listen on is taken, naming the flag
/// that moves each busy one: otherwise the master would die at once and be restarted in a
/// loop. (The collector listens on a port the system picks, which is never busy.)
fn check_ports_free(args: &UpArgs) -> Result<(), ClientError> {
    let ports = [
        (
            &args.listen,
            "the master's port: choose another with --listen or GRIDWATCH_LISTEN",
        ),
        (
            &args.http,
            "the dashboard's port: choose another with --http or GRIDWATCH_HTTP, or --http off",
        ),
    ];
    let busy: Vec<String> = ports
        .into_iter()
        .filter(|(address, _)| *address != "off" && !address.ends_with(":0"))
        .filter(|(address, _)| {
            matches!(
                std::net::TcpListener::bind(address.as_str()),
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse
            )
        })
        .map(|(address, what)| format!("{address} is in use ({what})"))
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    Err(ClientError::Usage(format!(
        "nothing started: {}; or stop what holds it (another `gridwatch up`?)",
        busy.join("; ")
    )))
}

/// The master's command line, listening on `listen` and serving HTTP on `http`.
fn master_args(args: &UpArgs, listen: &str, http: &str) -> Vec<OsString> {
    let data_dir = args.data_dir.as_os_str().to_owned();
    let addr_file = args.data_dir.join("master.addr").into_os_string();
    let http_addr_file = args.data_dir.join("http.addr").into_os_string();
    os_args(["master", "--listen", listen, "--data-dir"])
        .chain([data_dir])
        .chain(os_args(["--addr-file"]))
        .chain([addr_file])
        .chain(os_args(["--http", http, "--http-addr-file"]))
        .chain([http_addr_file])
        .chain(os_args(backend_flag(args).iter().map(String::as_str)))
        .chain(drop_dir_flag(args))
        .chain(os_args(args.master_flags.split_whitespace()))
        .collect()
}

/// Starts the collector (telling the master of dead workers) and waits until it listens; its
/// restarts listen on the address bound now, which the agents were given.
async fn start_collector(
    exe: &Path,
    args: &UpArgs,
    master_addr: &str,
    alert_log: &Path,
) -> Result<(Supervised, String), ClientError> {
    let addr_file = args.data_dir.join("collector.addr");
    let _ = std::fs::remove_file(&addr_file);
    let collector_args = |listen: &str| -> Vec<OsString> {
        os_args([
            "collector",
            "--listen",
            listen,
            "--master",
            master_addr,
            "--alert-log",
        ])
        .chain([alert_log.as_os_str().to_owned()])
        .chain(os_args(["--addr-file"]))
        .chain([addr_file.as_os_str().to_owned()])
        .chain(os_args(backend_flag(args).iter().map(String::as_str)))
        .chain(os_args(
            args.elastic.delivery_flags().iter().map(String::as_str),
        ))
        .collect()
    };
    let log = args.data_dir.join("logs").join("collector.log");
    let mut collector = Supervised::start("collector", exe, collector_args("127.0.0.1:0"), log)?;
    match wait_for_addr(&addr_file, &mut collector).await {
        Ok(addr) => {
            collector.restart_with(collector_args(&addr));
            Ok((collector, addr))
        }
        Err(err) => {
            collector.kill().await;
            Err(err)
        }
    }
}

/// `--backend X` for the children, when `up` was given one.
fn backend_flag(args: &UpArgs) -> Vec<String> {
    match &args.backend.backend {
        Some(backend) => vec!["--backend".into(), backend.clone()],
        None => Vec::new(),
    }
}

/// Waits until the agent of `worker` accepts connections on `socket` (a socket file left by an
/// earlier run does not count: only a connection does).
pub(super) async fn wait_for_agent(
    socket: &Path,
    worker: &str,
    agent: &mut Supervised,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = agent.try_exit() {
            return Err(exited_at_start(agent, status).await);
        }
        if Instant::now() > deadline {
            return Err(ClientError::Usage(format!(
                "the agent of {worker} did not start listening in time"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `child` writes its bound address to `path`.
async fn wait_for_addr(path: &Path, child: &mut Supervised) -> Result<String, ClientError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(addr) = std::fs::read_to_string(path) {
            return Ok(addr.trim().to_string());
        }
        if let Some(status) = child.try_exit() {
            return Err(exited_at_start(child, status).await);
        }
        if Instant::now() > deadline {
            return Err(ClientError::Usage(format!(
                "the {} did not start listening in time; see {}",
                child.name,
                child.log().display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child that died before it listened, with its own last words (`cannot listen on …`).
async fn exited_at_start(child: &mut Supervised, status: std::process::ExitStatus) -> ClientError {
    child.log_drained().await;
    let log = child.log().display();
    ClientError::Usage(match last_words(child.log()) {
        Some(reason) => format!(
            "the {} could not start: {reason} ({status}; log: {log})",
            child.name
        ),
        None => format!("the {} exited at start ({status}); see {log}", child.name),
    })
}

/// Runs `gridwatch up` until Ctrl-C / SIGTERM, restarting any child that dies, then stops
/// everything.
pub async fn up(args: UpArgs) -> Result<(), ClientError> {
    let mut cluster = Cluster::start(&args).await?;
    cluster.describe();
    eprintln!(
        "submit with: gridwatch submit FILE --pattern ACGT --wait --master {}",
        cluster.master_addr
    );
    eprintln!("press Ctrl-C to stop");
    cluster.supervise(gridwatch::shutdown::signal()).await;
    eprintln!("stopping...");
    cluster.stop().await;
    eprintln!("stopped");
    Ok(())
}

/// The master's `--drop-dir`: on by default, at `DATA_DIR/task_queues`.
fn drop_dir_flag(args: &UpArgs) -> Vec<std::ffi::OsString> {
    let dir = match args.drop_dir.as_deref().map(str::trim) {
        Some(value) if value.is_empty() || value.eq_ignore_ascii_case("off") => return Vec::new(),
        Some(value) => PathBuf::from(value),
        None => args.data_dir.join("task_queues"),
    };
    vec!["--drop-dir".into(), dir.into_os_string()]
}
