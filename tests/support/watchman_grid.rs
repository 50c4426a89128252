//! A whole grid of real processes for the watchman's tests: master, collector, and an agent +
//! worker per id, on the embedded backend or Redis; plus a genome with a naively counted answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::grid::Grid;
use super::procs::{read_addr_file, wait_for, Proc};

pub const PATTERN: &str = "AGGTCC";
/// Far longer than any test: recovery must come from `worker_down`, not from lease expiry.
const VISIBILITY_TIMEOUT: &str = "600";

/// A one-record FASTA of `len` pseudo-random bases in 60-column lines, and how many times
/// `PATTERN` occurs in it (overlaps included), counted naively.
pub fn genome(dir: &Path, len: usize) -> (PathBuf, u64) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let bases: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b"ACGT"[(state >> 33) as usize % 4]
        })
        .collect();
    let expected = bases
        .windows(PATTERN.len())
        .filter(|w| *w == PATTERN.as_bytes())
        .count();
    let mut text = b">chr1 test genome\n".to_vec();
    for line in bases.chunks(60) {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let path = dir.join("genome.fa");
    std::fs::write(&path, text).expect("write genome");
    (path, expected as u64)
}

/// A [`Grid`] watched by the monitoring system: a collector, and an agent beside each worker
/// (the worker reports to it over its Unix socket). Everything of the plain grid is reachable
/// through it (`grid.addr`, `grid.dir`, `grid.worker(id)`).
pub struct WatchedGrid {
    /// The master and the workers.
    pub grid: Grid,
    pub collector: Proc,
    pub collector_addr: String,
    /// Agents by worker id.
    pub agents: Vec<(String, Proc)>,
    /// `embedded` or a `redis://` URL.
    pub backend: String,
}

impl std::ops::Deref for WatchedGrid {
    type Target = Grid;

    fn deref(&self) -> &Grid {
        &self.grid
    }
}

impl std::ops::DerefMut for WatchedGrid {
    fn deref_mut(&mut self) -> &mut Grid {
        &mut self.grid
    }
}

/// Starts a collector on `listen` telling `master`; returns it and its bound address.
pub fn spawn_collector(
    dir: &Path,
    listen: &str,
    master: &str,
    flags: &[&str],
    backend: &str,
) -> (Proc, String) {
    let path = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();
    let _ = std::fs::remove_file(dir.join("collector.addr"));
    let mut args = vec![
        "collector".to_string(),
        "--listen".into(),
        listen.into(),
        "--addr-file".into(),
        path("collector.addr"),
        "--master".into(),
        master.into(),
        "--alert-log".into(),
        path("alerts.log"),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collector = Proc::spawn("collector", dir, &args, &[("GRIDWATCH_BACKEND", backend)]);
    let addr = read_addr_file(&dir.join("collector.addr"));
    (collector, addr)
}

impl WatchedGrid {
    pub fn start(worker_ids: &[&str], heartbeat_timeout: &str) -> WatchedGrid {
        WatchedGrid::start_with(worker_ids, heartbeat_timeout, &[])
    }

    /// Starts the grid with extra collector flags.
    pub fn start_with(
        worker_ids: &[&str],
        heartbeat_timeout: &str,
        collector_flags: &[&str],
    ) -> WatchedGrid {
        WatchedGrid::start_on("embedded", worker_ids, heartbeat_timeout, collector_flags)
    }

    /// Starts the grid on `backend` (`embedded` or a redis:// URL) for every role.
    pub fn start_on(
        backend: &str,
        worker_ids: &[&str],
        heartbeat_timeout: &str,
        collector_flags: &[&str],
    ) -> WatchedGrid {
        WatchedGrid::start_reporting(
            backend,
            worker_ids,
            heartbeat_timeout,
            collector_flags,
            "1s",
        )
    }

    /// Starts the grid with agents sending full reports every `report_interval` (and their
    /// heartbeats every second, the default).
    pub fn start_reporting(
        backend: &str,
        worker_ids: &[&str],
        heartbeat_timeout: &str,
        collector_flags: &[&str],
        report_interval: &str,
    ) -> WatchedGrid {
        WatchedGrid::start_with_workers(
            backend,
            worker_ids,
            heartbeat_timeout,
            collector_flags,
            report_interval,
            &[],
        )
    }

    /// As [`WatchedGrid::start_reporting`], with extra flags for every worker
    /// (`--allow-commands`).
    pub fn start_with_workers(
        backend: &str,
        worker_ids: &[&str],
        heartbeat_timeout: &str,
        collector_flags: &[&str],
        report_interval: &str,
        worker_flags: &[&str],
    ) -> WatchedGrid {
        let mut grid = Grid::start(&[
            "--backend",
            backend,
            "--visibility-timeout",
            VISIBILITY_TIMEOUT,
        ]);
        grid.worker_flags = ["--backend", backend]
            .iter()
            .chain(worker_flags)
            .map(|flag| flag.to_string())
            .collect();
        // Workers log each task they finish at debug level; tests count those lines.
        grid.worker_env = vec![("LOG_LEVEL".into(), "debug".into())];
        let (collector, collector_addr) = spawn_collector(
            grid.dir.path(),
            "127.0.0.1:0",
            &grid.addr,
            collector_flags,
            backend,
        );
        let mut watched = WatchedGrid {
            grid,
            collector,
            collector_addr,
            agents: vec![],
            backend: backend.to_string(),
        };
        for id in worker_ids {
            watched.start_agent(id, report_interval, heartbeat_timeout);
            watched.start_watched_worker(id);
        }
        watched
    }

    /// The master process.
    pub fn master(&self) -> &Proc {
        self.grid.master.as_ref().expect("the master runs")
    }

    /// The Unix socket between `worker` and its agent.
    fn socket(&self, worker: &str) -> String {
        self.grid
            .path(&format!("{worker}.sock"))
            .to_str()
            .expect("utf-8")
            .to_string()
    }

    /// Starts the agent of `worker`, replacing one started before (killed).
    fn start_agent(&mut self, worker: &str, report_interval: &str, heartbeat_timeout: &str) {
        let socket = self.socket(worker);
        let (host, port) = self.collector_addr.rsplit_once(':').expect("host:port");
        let again = if self.agents.iter().any(|(w, _)| w == worker) {
            "-again"
        } else {
            ""
        };
        let agent = Proc::spawn(
            &format!("agent-{worker}{again}"),
            self.grid.dir.path(),
            &[
                "agent",
                "--worker-id",
                worker,
                "--socket",
                &socket,
                "--collector-host",
                host,
                "--collector-port",
                port,
                "--report-interval",
                report_interval,
                "--heartbeat-timeout",
                heartbeat_timeout,
            ],
            &[],
        );
        self.agents.retain(|(w, _)| w != worker);
        self.agents.push((worker.to_string(), agent));
    }

    /// Starts `worker` reporting to its agent's socket.
    fn start_watched_worker(&mut self, worker: &str) {
        let socket = self.socket(worker);
        self.grid
            .start_worker_with(worker, 2, &["--agent-socket", &socket]);
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("alerts.log")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("alert log line is JSON"))
            .collect()
    }

    pub fn alert(&self, worker: &str, state: &str) -> Option<serde_json::Value> {
        self.rule_alert("worker_dead", worker, state)
    }

    /// The first event of `rule` for `worker` in state `state` in the alert log.
    pub fn rule_alert(&self, rule: &str, worker: &str, state: &str) -> Option<serde_json::Value> {
        self.alerts()
            .into_iter()
            .find(|a| a["rule"] == rule && a["worker_id"] == worker && a["state"] == state)
    }

    /// The liveness view of `worker` as `gridwatch workers --json` shows it.
    pub fn worker_view(&self, worker: &str) -> Option<serde_json::Value> {
        let text = self.client(&["workers", "--json"])?;
        let workers: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
        workers.into_iter().find(|w| w["worker_id"] == worker)
    }

    /// Starts `worker` again (after it was killed), under the same id and agent socket.
    pub fn restart_worker(&mut self, worker: &str) {
        self.start_watched_worker(worker);
    }

    /// Starts the agent of `worker` again (after it was killed), alone: no worker is started.
    pub fn restart_agent(&mut self, worker: &str, heartbeat_timeout: &str) {
        self.start_agent(worker, "10s", heartbeat_timeout);
    }

    /// Starts the collector again (after it was killed) on the same address, alert log and
    /// backend.
    pub fn start_collector_again(&mut self) {
        let (collector, addr) = spawn_collector(
            self.grid.dir.path(),
            &self.collector_addr,
            &self.grid.addr,
            &[],
            &self.backend,
        );
        self.collector = collector;
        assert_eq!(
            addr, self.collector_addr,
            "the collector came back where it was"
        );
    }

    /// The agent of `worker`.
    pub fn agent(&mut self, worker: &str) -> &mut Proc {
        &mut self
            .agents
            .iter_mut()
            .find(|(w, _)| w == worker)
            .expect("known worker")
            .1
    }

    /// A client command's stdout, if it succeeded.
    pub fn client(&self, args: &[&str]) -> Option<String> {
        let output = self.grid.cli(args);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits until every worker is ALIVE in the liveness view.
    pub fn wait_alive(&self, count: usize) {
        wait_for("every worker alive", Duration::from_secs(30), || {
            let text = self.client(&["workers", "--json"])?;
            let workers: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
            (workers.iter().filter(|w| w["status"] == "ALIVE").count() == count).then_some(())
        });
    }

    pub fn submit(&self, genome: &Path, chunk_size: &str) -> String {
        let text = self
            .client(&[
                "submit",
                genome.to_str().expect("utf-8"),
                "--pattern",
                PATTERN,
                "--chunk-size",
                chunk_size,
                "--json",
            ])
            .expect("submit succeeds");
        let value: serde_json::Value = serde_json::from_str(text.trim()).expect("submit --json");
        value["job_id"].as_str().expect("job id").to_string()
    }

    pub fn progress(&self, job: &str) -> Option<(String, u64, u64)> {
        let text = self.client(&["status", job, "--json"])?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        let job = &value["job"];
        Some((
            job["status"].as_str()?.to_string(),
            job["progress"]["processed_chunks"].as_u64()?,
            job["progress"]["total_chunks"].as_u64()?,
        ))
    }

    pub fn wait_completed(&self, job: &str, limit: Duration) {
        let status = self.grid.wait_finished(job, limit);
        assert_eq!(status["job"]["status"], "completed", "{status}");
    }

    pub fn total_matches(&self, job: &str) -> u64 {
        let text = self.client(&["results", job]).expect("results");
        let total = text
            .lines()
            .find(|l| l.starts_with("total"))
            .expect("a total line");
        total
            .split_whitespace()
            .last()
            .expect("count")
            .parse()
            .expect("a number")
    }

    /// How many leases were re-queued for `worker` on its DEAD alert (by the master, or by the
    /// collector itself with a shared backend).
    /// Submits a search of a generated genome of `bases` bases in 4000-base chunks once two
    /// workers are alive, and waits until 5 % of it is done. Returns the job and its naive count.
    pub fn start_job_under_way(&mut self, bases: usize) -> (String, u64) {
        let (genome, expected) = genome(self.dir.path(), bases);
        self.wait_alive(2);
        let job = self.submit(&genome, "4000");
        wait_for("the job under way", Duration::from_secs(60), || {
            self.progress(&job)
                .filter(|(_, done, total)| *done * 20 >= *total && *total > 0)
        });
        (job, expected)
    }

    /// Tasks leased to `worker` right now: rows of the master's database (embedded), or entries
    /// pending for its consumer in the task streams' consumer group (Redis).
    pub fn leases_held(&self, worker: &str) -> u64 {
        if self.backend == "embedded" {
            let db = rusqlite::Connection::open_with_flags(
                self.dir.path().join("data").join("gridwatch.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .expect("open the master's database");
            return db
                .query_row(
                    "SELECT COUNT(*) FROM tasks WHERE state = 'leased' AND worker = ?1",
                    [worker],
                    |row| row.get(0),
                )
                .expect("count leases");
        }
        let client = redis::Client::open(self.backend.as_str()).expect("redis url");
        let mut conn = client.get_connection().expect("redis connection");
        ["tasks:high", "tasks:medium", "tasks:low"]
            .iter()
            .filter_map(|stream| {
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(stream)
                    .arg("workers")
                    .query::<redis::streams::StreamInfoConsumersReply>(&mut conn)
                    .ok()
            })
            .flat_map(|reply| reply.consumers)
            .filter(|consumer| consumer.name == worker)
            .map(|consumer| consumer.pending as u64)
            .sum()
    }

    /// SIGSTOPs `worker` at a moment it holds a lease, so that its recovery has tasks to
    /// re-queue: tiny tasks leave a worker between an ack and its next lease now and then, and a
    /// stop there would prove nothing. Retries with SIGCONT until the stop catches a lease.
    pub fn stop_while_leasing(&mut self, worker: &str) {
        for _ in 0..200 {
            self.grid
                .worker(worker)
                .signal(nix::sys::signal::Signal::SIGSTOP);
            // A lease granted just before the stop lands in the database a moment later.
            std::thread::sleep(Duration::from_millis(30));
            if self.leases_held(worker) > 0 {
                return;
            }
            self.grid
                .worker(worker)
                .signal(nix::sys::signal::Signal::SIGCONT);
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{worker} never held a lease when stopped");
    }

    pub fn reclaimed(&self, worker: &str) -> Option<u64> {
        let mut lines = self.master().log_json();
        lines.extend(self.collector.log_json());
        // With Redis the collector re-queues first and the master, told after, finds nothing.
        lines
            .iter()
            .filter(|line| {
                let fields = &line["fields"];
                fields["message"] == "re-queued the dead worker's tasks"
                    && fields["worker"] == worker
            })
            .filter_map(|line| line["fields"]["reclaimed"].as_u64())
            .max()
    }
}

/// Tasks a worker logged as done (stored and acked), late duplicates included.
pub fn tasks_done(worker: &Proc) -> usize {
    let lines = worker.log_json();
    lines
        .iter()
        .filter(|line| line["fields"]["message"] == "task done")
        .count()
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}
