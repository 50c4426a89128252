//! `gridwatch up`: the whole grid on one machine as child processes (a master, a collector, and
//! N workers each with its agent), stopped together on Ctrl-C or SIGTERM. `Cluster` is also what `demo` and `bench grid` start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::client::connect::ClientError;

/// How long the master may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long children get to exit after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `gridwatch up` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// Worker processes to start.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Task slots (kernel threads) per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
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
    #[arg(long, env = "GRIDWATCH_HTTP", default_value = crate::master::DEFAULT_HTTP)]
    pub http: String,
    /// Where tasks and job state live, for the master and every worker (embedded or
    /// redis://HOST:PORT/DB).
    #[command(flatten)]
    pub backend: crate::backend::config::BackendArgs,
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
    master: Child,
    collector: Child,
    agents: Vec<(String, Child)>,
    workers: Vec<(String, Child)>,
}

impl Cluster {
    /// Starts the master, waits until it listens, then starts the workers.
    pub async fn start(args: &UpArgs) -> Result<Self, ClientError> {
        let exe = std::env::current_exe()
            .map_err(|e| ClientError::Usage(format!("cannot find the gridwatch binary: {e}")))?;
        let log_dir = args.data_dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| ClientError::Usage(format!("{}: {e}", log_dir.display())))?;
        let addr_file = args.data_dir.join("master.addr");
        let _ = std::fs::remove_file(&addr_file);
        let http_addr_file = args.data_dir.join("http.addr");
        let _ = std::fs::remove_file(&http_addr_file);
        let mut master_cmd = Command::new(&exe);
        master_cmd
            .arg("master")
            .arg("--listen")
            .arg(&args.listen)
            .arg("--data-dir")
            .arg(&args.data_dir)
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--http")
            .arg(&args.http)
            .arg("--http-addr-file")
            .arg(&http_addr_file)
            .args(backend_flag(args))
            .args(drop_dir_flag(args))
            .args(args.master_flags.split_whitespace());
        let mut master = spawn(master_cmd, &log_dir.join("master.log"))?;
        let master_addr = match wait_for_addr(&addr_file, &mut master).await {
            Ok(addr) => addr,
            Err(err) => {
                let _ = master.kill().await;
                return Err(err);
            }
        };
        // The master writes the HTTP address before the protocol one, so it is there by now.
        let dashboard = std::fs::read_to_string(&http_addr_file)
            .ok()
            .map(|addr| format!("http://{}/", addr.trim()));
        let alert_log = args.data_dir.join("alerts.log");
        let (collector, collector_addr) =
            match start_collector(&exe, args, &master_addr, &alert_log).await {
                Ok(started) => started,
                Err(err) => {
                    let _ = master.kill().await;
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
        let (mut agents, mut workers) = (Vec::new(), Vec::new());
        let worker_socket = |id: &str| socket_dir.join(format!("{id}.sock"));
        for n in 1..=args.workers {
            let id = format!("w{n}");
            let socket = worker_socket(&id);
            let mut agent = Command::new(&exe);
            agent
                .args(["agent", "--worker-id", &id, "--socket"])
                .arg(&socket)
                .args(["--collector-host", "127.0.0.1", "--collector-port"])
                .arg(collector_addr.rsplit(':').next().unwrap_or("6000"));
            agents.push((
                id.clone(),
                spawn(agent, &log_dir.join(format!("agent-{id}.log")))?,
            ));
        }
        // A worker that starts before its agent listens works unwatched until its next retry:
        // killed meanwhile, it would never be reported dead. So every agent listens first.
        for (id, agent) in &mut agents {
            wait_for_agent(&worker_socket(id), id, agent).await?;
        }
        for n in 1..=args.workers {
            let id = format!("w{n}");
            let socket = worker_socket(&id);
            let mut cmd = Command::new(&exe);
            cmd.arg("worker")
                .arg("--id")
                .arg(&id)
                .arg("--master")
                .arg(&master_addr)
                .arg("--agent-socket")
                .arg(&socket)
                .arg("--threads")
                .arg(args.threads.to_string())
                .args(backend_flag(args));
            let child = spawn(cmd, &log_dir.join(format!("{id}.log")))?;
            workers.push((id, child));
        }
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
        })
    }

    /// Worker ids and process ids.
    pub fn worker_pids(&self) -> Vec<(String, Option<u32>)> {
        self.workers
            .iter()
            .map(|(id, child)| (id.clone(), child.id()))
            .collect()
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

    /// Waits until any child exits on its own; returns its description.
    pub async fn wait_any_exit(&mut self) -> String {
        loop {
            if let Ok(Some(status)) = self.master.try_wait() {
                return format!("master exited ({status})");
            }
            if let Ok(Some(status)) = self.collector.try_wait() {
                return format!("collector exited ({status})");
            }
            for (id, child) in &mut self.workers {
                if let Ok(Some(status)) = child.try_wait() {
                    return format!("worker {id} exited ({status})");
                }
            }
            for (id, child) in &mut self.agents {
                if let Ok(Some(status)) = child.try_wait() {
                    return format!("agent of {id} exited ({status})");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to workers, then their agents and the collector, then the master; SIGKILL to any
    /// still running after the timeout. Workers go first so their agents see a clean goodbye.
    pub async fn stop(mut self) {
        for (_, child) in &mut self.workers {
            terminate(child);
        }
        for (_, child) in &mut self.workers {
            reap(child).await;
        }
        for (_, child) in &mut self.agents {
            terminate(child);
        }
        terminate(&mut self.collector);
        for (_, child) in &mut self.agents {
            reap(child).await;
        }
        reap(&mut self.collector).await;
        terminate(&mut self.master);
        reap(&mut self.master).await;
    }
}

/// Starts the collector (telling the master of dead workers) and waits until it listens.
async fn start_collector(
    exe: &Path,
    args: &UpArgs,
    master_addr: &str,
    alert_log: &Path,
) -> Result<(Child, String), ClientError> {
    let addr_file = args.data_dir.join("collector.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut cmd = Command::new(exe);
    cmd.args([
        "collector",
        "--listen",
        "127.0.0.1:0",
        "--master",
        master_addr,
        "--alert-log",
    ])
    .arg(alert_log)
    .arg("--addr-file")
    .arg(&addr_file)
    .args(backend_flag(args));
    let log_dir = args.data_dir.join("logs");
    let mut collector = spawn(cmd, &log_dir.join("collector.log"))?;
    match wait_for_addr(&addr_file, &mut collector).await {
        Ok(addr) => Ok((collector, addr)),
        Err(err) => {
            let _ = collector.kill().await;
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

fn spawn(mut cmd: Command, log: &Path) -> Result<Child, ClientError> {
    let file = std::fs::File::create(log)
        .map_err(|e| ClientError::Usage(format!("{}: {e}", log.display())))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
    cmd.spawn()
        .map_err(|e| ClientError::Usage(format!("cannot start a gridwatch process: {e}")))
}

/// Waits until the agent of `worker` accepts connections on `socket` (a socket file left by an
/// earlier run does not count: only a connection does).
async fn wait_for_agent(socket: &Path, worker: &str, agent: &mut Child) -> Result<(), ClientError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = agent.try_wait() {
            return Err(ClientError::Usage(format!(
                "the agent of {worker} exited at start ({status}); see its log in the data directory's logs/"
            )));
        }
        if Instant::now() > deadline {
            return Err(ClientError::Usage(format!(
                "the agent of {worker} did not start listening in time"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_addr(path: &Path, master: &mut Child) -> Result<String, ClientError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(addr) = std::fs::read_to_string(path) {
            return Ok(addr.trim().to_string());
        }
        if let Ok(Some(status)) = master.try_wait() {
            return Err(ClientError::Usage(format!(
                "the master exited at start ({status}); see its log in the data directory's logs/"
            )));
        }
        if Instant::now() > deadline {
            return Err(ClientError::Usage(
                "the master did not start listening in time".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
}

async fn reap(child: &mut Child) {
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Runs `gridwatch up` until Ctrl-C / SIGTERM (or a child dies), then stops everything.
pub async fn up(args: UpArgs) -> Result<(), ClientError> {
    let mut cluster = Cluster::start(&args).await?;
    cluster.describe();
    eprintln!(
        "submit with: gridwatch submit FILE --pattern ACGT --wait --master {}",
        cluster.master_addr
    );
    eprintln!("press Ctrl-C to stop");
    tokio::select! {
        _ = crate::shutdown::signal() => eprintln!("stopping..."),
        reason = cluster.wait_any_exit() => eprintln!("{reason}; stopping the rest..."),
    }
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
