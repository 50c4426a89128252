//! Dead-worker recovery with real processes (DESIGN "The watchman"): a master with a long
//! visibility timeout, a collector, and an agent + worker per id. A worker killed with -9 is in
//! the alert log as DEAD within a second and its chunks are re-run at once; a SIGSTOPped worker is
//! DEAD after the heartbeat timeout, and after SIGCONT its late results are counted once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::procs::{gridwatch, read_addr_file, wait_for, Proc};
use nix::sys::signal::Signal;

const PATTERN: &str = "AGGTCC";
/// Far longer than any test: recovery must come from `worker_down`, not from lease expiry.
const VISIBILITY_TIMEOUT: &str = "600";

/// A one-record FASTA of `len` pseudo-random bases in 60-column lines, and how many times
/// `PATTERN` occurs in it (overlaps included), counted naively.
fn genome(dir: &Path, len: usize) -> (PathBuf, u64) {
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

struct Grid {
    dir: tempfile::TempDir,
    master: Proc,
    master_addr: String,
    collector: Proc,
    collector_addr: String,
    agents: Vec<Proc>,
    workers: Vec<(String, Proc)>,
}

/// Starts a collector on `listen` telling `master`; returns it and its bound address.
fn spawn_collector(dir: &Path, listen: &str, master: &str, flags: &[&str]) -> (Proc, String) {
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
    let collector = Proc::spawn("collector", dir, &args, &[]);
    let addr = read_addr_file(&dir.join("collector.addr"));
    (collector, addr)
}

impl Grid {
    fn start(worker_ids: &[&str], heartbeat_timeout: &str) -> Grid {
        Grid::start_with(worker_ids, heartbeat_timeout, &[])
    }

    /// Starts the grid with extra collector flags.
    fn start_with(worker_ids: &[&str], heartbeat_timeout: &str, collector_flags: &[&str]) -> Grid {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let path = |name: &str| root.join(name).to_str().expect("utf-8").to_string();
        let master = Proc::spawn(
            "master",
            dir.path(),
            &[
                "master",
                "--listen",
                "127.0.0.1:0",
                "--addr-file",
                &path("master.addr"),
                "--data-dir",
                &path("data"),
                "--visibility-timeout",
                VISIBILITY_TIMEOUT,
            ],
            &[],
        );
        let master_addr = read_addr_file(&dir.path().join("master.addr"));
        let (collector, collector_addr) =
            spawn_collector(dir.path(), "127.0.0.1:0", &master_addr, collector_flags);
        let (host, port) = collector_addr.rsplit_once(':').expect("host:port");
        let mut grid = Grid {
            dir,
            master,
            master_addr,
            collector,
            collector_addr: collector_addr.clone(),
            agents: vec![],
            workers: vec![],
        };
        for id in worker_ids {
            let socket = path(&format!("{id}.sock"));
            grid.agents.push(Proc::spawn(
                &format!("agent-{id}"),
                grid.dir.path(),
                &[
                    "agent",
                    "--worker-id",
                    id,
                    "--socket",
                    &socket,
                    "--collector-host",
                    host,
                    "--collector-port",
                    port,
                    "--report-interval",
                    "1s",
                    "--heartbeat-timeout",
                    heartbeat_timeout,
                ],
                &[],
            ));
            let worker = Proc::spawn(
                &format!("worker-{id}"),
                grid.dir.path(),
                &[
                    "worker",
                    "--id",
                    id,
                    "--master",
                    &grid.master_addr,
                    "--agent-socket",
                    &socket,
                    "--threads",
                    "2",
                ],
                &[("LOG_LEVEL", "debug")],
            );
            grid.workers.push((id.to_string(), worker));
        }
        grid
    }

    fn worker(&mut self, id: &str) -> &mut Proc {
        &mut self
            .workers
            .iter_mut()
            .find(|(w, _)| w == id)
            .expect("known worker")
            .1
    }

    fn alerts(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("alerts.log")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("alert log line is JSON"))
            .collect()
    }

    fn alert(&self, worker: &str, state: &str) -> Option<serde_json::Value> {
        self.alerts()
            .into_iter()
            .find(|a| a["rule"] == "worker_dead" && a["worker_id"] == worker && a["state"] == state)
    }

    fn client(&self, args: &[&str]) -> Option<String> {
        let output = gridwatch()
            .args(args)
            .args(["--master", &self.master_addr])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits until every worker is ALIVE in the liveness view.
    fn wait_alive(&self, count: usize) {
        wait_for("every worker alive", Duration::from_secs(30), || {
            let text = self.client(&["workers", "--json"])?;
            let workers: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
            (workers.iter().filter(|w| w["status"] == "ALIVE").count() == count).then_some(())
        });
    }

    fn submit(&self, genome: &Path, chunk_size: &str) -> String {
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

    fn progress(&self, job: &str) -> Option<(String, u64, u64)> {
        let text = self.client(&["status", job, "--json"])?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        let job = &value["job"];
        Some((
            job["status"].as_str()?.to_string(),
            job["progress"]["processed_chunks"].as_u64()?,
            job["progress"]["total_chunks"].as_u64()?,
        ))
    }

    fn wait_completed(&self, job: &str, limit: Duration) {
        wait_for("job completed", limit, || {
            self.progress(job)
                .filter(|(status, _, _)| status == "completed")
                .map(|_| ())
        });
    }

    fn total_matches(&self, job: &str) -> u64 {
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

    /// How many leases the master re-queued for `worker` on `worker_down`.
    fn reclaimed(&self, worker: &str) -> Option<u64> {
        self.master.log_json().iter().find_map(|line| {
            let fields = &line["fields"];
            (fields["message"] == "re-queued the dead worker's tasks" && fields["worker"] == worker)
                .then(|| fields["reclaimed"].as_u64())
                .flatten()
        })
    }
}

/// Tasks a worker logged as done (stored and acked), late duplicates included.
fn tasks_done(worker: &Proc) -> usize {
    let lines = worker.log_json();
    lines
        .iter()
        .filter(|line| line["fields"]["message"] == "task done")
        .count()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

#[test]
fn a_killed_worker_is_dead_within_a_second_and_its_chunks_run_elsewhere() {
    let mut grid = Grid::start(&["w1", "w2"], "15s");
    let (genome, expected) = genome(grid.dir.path(), 12_000_000);
    grid.wait_alive(2);
    let job = grid.submit(&genome, "4000");
    wait_for("the job under way", Duration::from_secs(60), || {
        grid.progress(&job)
            .filter(|(_, done, total)| *done * 20 >= *total && *total > 0)
    });

    let killed_at = unix_now();
    grid.worker("w1").kill9();

    let dead = wait_for("DEAD alert for w1", Duration::from_secs(10), || {
        grid.alert("w1", "firing")
    });
    let latency = dead["timestamp"].as_f64().expect("timestamp") - killed_at;
    assert!(latency < 1.0, "DEAD alert {latency:.3} s after kill -9");
    assert_eq!(dead["severity"], "critical");
    let reclaimed = wait_for(
        "worker_down handled by the master",
        Duration::from_secs(10),
        || grid.reclaimed("w1"),
    );
    assert!(
        reclaimed >= 1,
        "w1 held leases when killed; the master re-queued {reclaimed}"
    );

    // The visibility timeout is 600 s: completing within two minutes proves the re-queue.
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
}

#[test]
fn a_hung_worker_is_dead_after_the_timeout_and_its_late_results_count_once() {
    let mut grid = Grid::start(&["w1", "w2"], "2s");
    let (genome, expected) = genome(grid.dir.path(), 6_000_000);
    grid.wait_alive(2);
    let job = grid.submit(&genome, "4000");
    wait_for("the job under way", Duration::from_secs(60), || {
        grid.progress(&job)
            .filter(|(_, done, total)| *done * 20 >= *total && *total > 0)
    });

    let stopped_at = Instant::now();
    let stopped_unix = unix_now();
    grid.worker("w1").signal(Signal::SIGSTOP);
    let dead = wait_for("DEAD alert for w1", Duration::from_secs(20), || {
        grid.alert("w1", "firing")
    });
    let latency = dead["timestamp"].as_f64().expect("timestamp") - stopped_unix;
    // The timeout runs from the last heartbeat, which came up to one interval (1 s) before.
    assert!(
        (0.95..3.0).contains(&latency),
        "hang detected {latency:.3} s after SIGSTOP (timeout 2 s)"
    );
    let reclaimed = wait_for("worker_down handled", Duration::from_secs(10), || {
        grid.reclaimed("w1")
    });
    assert!(
        reclaimed >= 1,
        "w1 held leases when stopped; the master re-queued {reclaimed}"
    );

    // w1 is still stopped: only the re-queue lets the job finish.
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    assert!(stopped_at.elapsed() < Duration::from_secs(120));

    let done_before = tasks_done(grid.worker("w1"));
    grid.worker("w1").signal(Signal::SIGCONT);
    wait_for("DEAD alert resolved", Duration::from_secs(20), || {
        grid.alert("w1", "resolved")
    });
    // It finishes the tasks it held when stopped; the store keeps the first result of each chunk.
    wait_for("w1's late results", Duration::from_secs(20), || {
        (tasks_done(grid.worker("w1")) > done_before).then_some(())
    });
    assert_eq!(
        grid.total_matches(&job),
        expected,
        "late results counted once"
    );
    let firings = grid
        .alerts()
        .into_iter()
        .filter(|a| a["worker_id"] == "w1" && a["state"] == "firing");
    assert_eq!(firings.count(), 1, "one DEAD alert, not one per report");
}

#[test]
fn a_firing_resource_warning_pauses_leasing_until_it_clears() {
    // Memory above 0 % is always true: the warning fires on the first report of every worker.
    let mut grid = Grid::start_with(&["w1", "w2"], "15s", &["--memory-threshold", "0"]);
    let (genome, expected) = genome(grid.dir.path(), 2_000_000);
    wait_for(
        "both workers told to pause",
        Duration::from_secs(30),
        || {
            let workers = ["w1", "w2"].map(|id| grid.worker(id).log());
            workers
                .iter()
                .all(|log| log.contains("leasing paused by the collector"))
                .then_some(())
        },
    );
    let job = grid.submit(&genome, "4000");
    // Paused workers lease nothing: the job stays untouched for several report intervals.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let (status, done, _) = grid.progress(&job).expect("status");
        assert_eq!(
            (status.as_str(), done),
            ("pending", 0),
            "a paused worker leased a task"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let warnings = grid
        .alerts()
        .into_iter()
        .filter(|a| a["rule"] == "memory_high")
        .count();
    assert_eq!(
        warnings, 2,
        "one memory warning per worker, not one per report"
    );

    // A collector with the default thresholds: the warning clears and leasing resumes.
    grid.collector.kill9();
    let (collector, _) = spawn_collector(
        grid.dir.path(),
        &grid.collector_addr,
        &grid.master_addr,
        &[],
    );
    grid.collector = collector;
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
}

#[test]
fn the_job_completes_without_the_collector_and_reports_wait_for_its_return() {
    let mut grid = Grid::start(&["w1", "w2"], "15s");
    let (genome, expected) = genome(grid.dir.path(), 12_000_000);
    grid.wait_alive(2);
    let job = grid.submit(&genome, "4000");
    wait_for("the job under way", Duration::from_secs(60), || {
        grid.progress(&job)
            .filter(|(_, done, total)| *done * 20 >= *total && *total > 0)
    });
    grid.collector.kill9();
    let down_at = unix_now();
    grid.wait_completed(&job, Duration::from_secs(120));
    assert_eq!(grid.total_matches(&job), expected);
    // Reports made meanwhile (every second, and on each worker's status) wait in the agents.
    wait_for(
        "a report made while the collector was down",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(grid.dir.path().join("agent-w1.log")).ok()?;
            text.contains("lost the collector").then_some(())
        },
    );
    let up_at = unix_now();
    let (collector, addr) = spawn_collector(
        grid.dir.path(),
        &grid.collector_addr,
        &grid.master_addr,
        &[],
    );
    grid.collector = collector;
    assert_eq!(addr, grid.collector_addr);
    wait_for(
        "buffered reports delivered",
        Duration::from_secs(30),
        || {
            let output = gridwatch()
                .args(["workers", "--collector", &addr, "--json"])
                .output()
                .ok()?;
            let workers: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
            let delivered = workers.iter().all(|worker| {
                let history = worker["history"].as_array().cloned().unwrap_or_default();
                history
                    .iter()
                    .filter_map(|p| p["timestamp"].as_f64())
                    .any(|t| t > down_at && t < up_at)
            });
            (workers.len() == 2 && delivered).then_some(())
        },
    );
}
