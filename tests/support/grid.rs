//! A real grid for tests: a `gridwatch master` on a free port in a temporary data directory and
//! `gridwatch worker` processes, all killed on drop; plus FASTA fixtures and a naive matcher that
//! the grid's answers are checked against.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::procs::gridwatch;
use super::{wait_for, Proc};

/// How long a master may take to start listening.
const START: Duration = Duration::from_secs(30);

/// A master, its workers and their data directory.
pub struct Grid {
    /// Temporary directory holding the data dir, logs and fixtures.
    pub dir: TempDir,
    /// The master's HOST:PORT.
    pub addr: String,
    /// The master process (None while stopped).
    pub master: Option<Proc>,
    /// Worker processes by id.
    pub workers: Vec<(String, Proc)>,
    /// Extra flags for every worker started from now on (e.g. `--backend redis://...`).
    pub worker_flags: Vec<String>,
    /// Where workers started from now on reach the master (default: its address), e.g. a proxy.
    pub worker_master: Option<String>,
    /// Extra flags for every client command run through [`Grid::cli`] (e.g. `--token-file`).
    pub client_flags: Vec<String>,
    /// Extra environment for every worker started from now on (e.g. `LOG_LEVEL=debug`).
    pub worker_env: Vec<(String, String)>,
    master_flags: Vec<String>,
    restarts: u32,
}

impl Grid {
    /// Starts a master with extra flags (e.g. `--visibility-timeout 1`).
    pub fn start(master_flags: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), master_flags)
    }

    /// A master with `flags` on the Redis at `redis_url`, or on the embedded backend when it is
    /// `None`; the workers the grid starts then read their tasks from that Redis too.
    pub fn start_on(redis_url: Option<&str>, flags: &[&str]) -> Self {
        let Some(url) = redis_url else {
            return Grid::start(flags);
        };
        let mut all = vec!["--backend", url];
        all.extend_from_slice(flags);
        let mut grid = Grid::start(&all);
        grid.worker_flags = vec!["--backend".into(), url.to_string()];
        grid
    }

    /// As [`Grid::start`], in `dir`, which the grid owns from now on and removes on drop: for
    /// flags that name paths inside it (a drop directory), fixed before the master starts.
    pub fn start_in(dir: TempDir, master_flags: &[&str]) -> Self {
        let mut grid = Self {
            dir,
            addr: "127.0.0.1:0".into(),
            master: None,
            workers: Vec::new(),
            worker_flags: Vec::new(),
            worker_master: None,
            client_flags: Vec::new(),
            worker_env: Vec::new(),
            master_flags: master_flags.iter().map(|s| s.to_string()).collect(),
            restarts: 0,
        };
        grid.start_master();
        grid
    }

    /// The master's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A path inside the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// (Re)starts the master on the same data directory and address.
    pub fn start_master(&mut self) {
        let addr_file = self.path("master.addr");
        let _ = std::fs::remove_file(&addr_file);
        let _ = std::fs::remove_file(self.path("http.addr"));
        let mut args: Vec<String> = vec![
            "master".into(),
            "--listen".into(),
            self.addr.clone(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--addr-file".into(),
            addr_file.display().to_string(),
            "--http-addr-file".into(),
            self.path("http.addr").display().to_string(),
        ];
        args.extend(self.master_flags.iter().cloned());
        let log = self.path(&format!("master-{}.log", self.restarts));
        self.restarts += 1;
        let master = Proc::spawn_logged("master", &args, &log);
        self.addr = wait_for("the master to listen", START, || {
            std::fs::read_to_string(&addr_file).ok()
        })
        .trim()
        .to_string();
        self.master = Some(master);
    }

    /// The master's HTTP API address (written before its protocol address).
    pub fn http_addr(&self) -> String {
        std::fs::read_to_string(self.path("http.addr"))
            .expect("the master writes its HTTP address file")
            .trim()
            .to_string()
    }

    /// Starts a worker with `--threads threads`.
    pub fn start_worker(&mut self, id: &str, threads: usize) {
        self.start_worker_with(id, threads, &[]);
    }

    /// Starts a worker with `--threads threads` and `extra` flags after the grid's own. A worker
    /// started again under an id keeps the earlier one's log beside its own.
    pub fn start_worker_with(&mut self, id: &str, threads: usize, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            "worker".into(),
            "--id".into(),
            id.into(),
            "--master".into(),
            self.worker_master
                .clone()
                .unwrap_or_else(|| self.addr.clone()),
            "--threads".into(),
            threads.to_string(),
        ];
        args.extend(self.worker_flags.iter().cloned());
        args.extend(extra.iter().map(|flag| flag.to_string()));
        let log = (0..)
            .map(|n| match n {
                0 => self.path(&format!("{id}.log")),
                n => self.path(&format!("{id}-{n}.log")),
            })
            .find(|log| !log.exists())
            .expect("a free log name");
        let envs: Vec<(&str, &str)> = self
            .worker_env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let worker = Proc::spawn_logged_with(id, &args, &log, &envs);
        self.workers.push((id.to_string(), worker));
    }

    /// The worker with this id (the last one started under it).
    pub fn worker(&mut self, id: &str) -> &mut Proc {
        &mut self
            .workers
            .iter_mut()
            .rev()
            .find(|(w, _)| w == id)
            .expect("no such worker")
            .1
    }

    /// Runs a client command against this grid's master.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.client_command(args)
            .output()
            .expect("running the gridwatch client")
    }

    /// A client command aimed at this grid's master, with the grid's client flags.
    fn client_command(&self, args: &[&str]) -> std::process::Command {
        let mut command = gridwatch();
        command
            .args(args)
            .args(&self.client_flags)
            .arg("--master")
            .arg(&self.addr);
        command
    }

    /// Runs a client command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "gridwatch {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Submits with `submit` while `w1` alone runs, kill -9s `w1` once a first task's result is
    /// stored (the job must not have completed by then), starts `w2` and waits: the job must
    /// complete. Returns its status.
    pub fn finish_after_killing_w1(
        &mut self,
        job: &str,
        submit: &[&str],
        timeout: Duration,
    ) -> serde_json::Value {
        self.start_worker("w1", 2);
        self.cli_ok(submit);
        wait_for("w1 to store a first task's result", timeout, || {
            let status = self.status(job);
            (status["job"]["progress"]["processed_chunks"].as_u64() > Some(0)).then_some(())
        });
        self.worker("w1").kill9();
        let status = self.status(job);
        assert_ne!(
            status["job"]["status"], "completed",
            "the kill came too late to prove anything"
        );
        self.start_worker("w2", 2);
        let status = self.wait_finished(job, timeout);
        assert_eq!(status["job"]["status"], "completed", "{status}");
        status
    }

    /// Runs a client command that must fail; returns what it printed on stderr.
    pub fn cli_refused(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            !output.status.success(),
            "gridwatch {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// A job's status as JSON.
    pub fn status(&self, job: &str) -> serde_json::Value {
        let out = self.cli_ok(&["status", job, "--json"]);
        serde_json::from_str(&out).expect("status --json prints JSON")
    }

    /// Waits until the job is finished; returns its final status JSON. One `status --wait
    /// --json` follows the job on one connection, instead of a new client process every few
    /// milliseconds; it is started again if it ends without a finished job (the job is not
    /// created yet, a busy master refused it).
    pub fn wait_finished(&self, job: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        wait_for("the job to finish", timeout, || {
            let left = deadline.saturating_duration_since(Instant::now());
            let output = self.cli_within(&["status", job, "--wait", "--json"], left)?;
            let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
            let state = status["job"]["status"].as_str().unwrap_or("").to_string();
            matches!(state.as_str(), "completed" | "failed" | "cancelled").then_some(status)
        })
    }

    /// Runs a client command, killed if it has not ended within `limit`; its output if it ended.
    pub fn cli_within(&self, args: &[&str], limit: Duration) -> Option<Output> {
        let child = self
            .client_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the gridwatch client");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (sender, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(child.wait_with_output()));
        match ended.recv_timeout(limit) {
            Ok(output) => Some(output.expect("waiting for the gridwatch client")),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = ended.recv();
                None
            }
        }
    }

    /// Sends each `(kind, spec)` as a raw `submit_job`, as a client that skips the CLI's own
    /// checks would, and returns the messages of the error frames the master answers with;
    /// fails unless every spec is refused as a bad message.
    pub fn raw_refusals(&self, specs: &[(&str, serde_json::Value)]) -> Vec<String> {
        self.raw_errors(specs)
            .into_iter()
            .zip(specs)
            .map(|((code, message), (_, spec))| {
                assert_eq!(
                    code,
                    gridwatch::protocol::ErrorCode::BadMessage,
                    "{spec}: {message}"
                );
                message
            })
            .collect()
    }

    /// A raw protocol connection to the master, greeted as `role` (with worker id `id`) and
    /// welcomed: a test plays a peer message by message.
    pub async fn greeted(
        &self,
        role: gridwatch::protocol::Role,
        id: Option<&str>,
    ) -> gridwatch::protocol::Connection<tokio::net::TcpStream> {
        use gridwatch::protocol::{Connection, Message, PROTOCOL_VERSION};
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("connecting to the master");
        let mut conn = Connection::new(stream);
        let hello = Message::Hello {
            role,
            version: PROTOCOL_VERSION,
            token: None,
            id: id.map(str::to_string),
            instance: None,
        };
        conn.write_message(&hello).await.expect("hello");
        conn.expect_message().await.expect("welcome");
        conn
    }

    /// Sends each `(kind, spec)` as a raw `submit_job` and returns the code and message of the
    /// error frame the master answers each with; fails if one is accepted.
    pub fn raw_errors(
        &self,
        specs: &[(&str, serde_json::Value)],
    ) -> Vec<(gridwatch::protocol::ErrorCode, String)> {
        use gridwatch::protocol::{Message, Role};
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async {
            let mut conn = self.greeted(Role::Client, None).await;
            let mut messages = Vec::new();
            for (i, (kind, spec)) in specs.iter().enumerate() {
                let submit = Message::SubmitJob {
                    job_id: format!("raw-{i}"),
                    kind: kind.to_string(),
                    spec: Some(spec.clone()),
                    file_size: None,
                    priority: Default::default(),
                    top_level: Default::default(),
                };
                conn.write_message(&submit).await.expect("submit_job");
                match conn.expect_message().await.expect("a reply") {
                    Message::Error { code, message, .. } => messages.push((code, message)),
                    other => panic!("{spec}: expected an error frame, got {other:?}"),
                }
            }
            messages
        })
    }

    /// Text of all master logs so far.
    pub fn master_logs(&self) -> String {
        (0..self.restarts)
            .map(|n| {
                std::fs::read_to_string(self.path(&format!("master-{n}.log"))).unwrap_or_default()
            })
            .collect()
    }
}

/// A FASTA fixture's records: (name, bases).
pub type Records = Vec<(String, Vec<u8>)>;

/// A tiny deterministic generator (xorshift), so fixtures need no extra crates.
pub struct Bases(u64);

impl Bases {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// `len` random bases.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                b"ACGT"[(self.0 >> 32) as usize % 4]
            })
            .collect()
    }
}

/// Writes records as FASTA with `width`-column lines and the given line ending.
pub fn write_fasta(path: &Path, records: &[(String, Vec<u8>)], width: usize, eol: &str) {
    let mut text = Vec::new();
    for (name, seq) in records {
        text.extend_from_slice(format!(">{name} test record{eol}").as_bytes());
        for line in seq.chunks(width) {
            text.extend_from_slice(line);
            text.extend_from_slice(eol.as_bytes());
        }
    }
    std::fs::write(path, text).expect("writing a FASTA fixture");
}

/// Reverse complement of an A/C/G/T pattern.
pub fn reverse_complement(pattern: &str) -> String {
    pattern
        .bytes()
        .rev()
        .map(|b| match b {
            b'A' => 'T',
            b'C' => 'G',
            b'G' => 'C',
            _ => 'A',
        })
        .collect()
}

/// Every (record, 0-based start, strand) where `pattern` (A/C/G/T only) occurs, overlaps included,
/// by brute force; `both` adds the reverse complement on strand `-`.
pub fn naive_hits(
    records: &[(String, Vec<u8>)],
    pattern: &str,
    both: bool,
) -> Vec<(String, u64, char)> {
    let mut hits = Vec::new();
    let forward = pattern.as_bytes().to_vec();
    let reverse = reverse_complement(pattern).into_bytes();
    for (name, seq) in records {
        let upper: Vec<u8> = seq.iter().map(|b| b.to_ascii_uppercase()).collect();
        for start in 0..upper.len().saturating_sub(forward.len() - 1) {
            let window = &upper[start..start + forward.len()];
            if window == forward.as_slice() {
                hits.push((name.clone(), start as u64, '+'));
            }
            if both && window == reverse.as_slice() {
                hits.push((name.clone(), start as u64, '-'));
            }
        }
    }
    hits.sort();
    hits
}

/// Parses `results --format tsv` into (seqID, 0-based start, strand), sorted.
pub fn parse_tsv(tsv: &str) -> Vec<(String, u64, char)> {
    let mut hits: Vec<(String, u64, char)> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let start: u64 = cols[4].parse().expect("1-based start column");
            (
                cols[0].to_string(),
                start - 1,
                cols[3].chars().next().unwrap_or('?'),
            )
        })
        .collect();
    hits.sort();
    hits
}

/// The `total` line of `results --format count`.
pub fn parse_total(count_output: &str) -> u64 {
    count_output
        .lines()
        .find(|l| l.starts_with("total"))
        .and_then(|l| l.split('\t').next_back())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total line in {count_output:?}"))
}
