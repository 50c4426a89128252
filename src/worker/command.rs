//! Command tasks on a worker: which programs this worker agrees to run (`--allow-commands`, or an
//! allow-list of resolved executable paths), the clean environment a task gets, and the slot's
//! path for a leased command task: resolve, run (see `command_run`) while the lease is checked,
//! then a result to store, or a nack while the job's retries last.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use super::command_cgroup::{self, TaskCgroup};
use super::command_live::LiveCursor;
use super::command_run::{self, Captures, Launch, WorkDir};
use super::heartbeat::RunningMark;
use super::WorkerConfig;
use super::{command_limits, command_outputs};
use crate::backend::{ChunkResult, Lease, Leases, TaskRun};
use crate::jobs::command::{CommandResult, CommandTaskSpec};

/// The search path a task gets unless the worker passes its own (`--pass-env PATH`).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Variables a worker refuses to pass on, whatever `--pass-env` says: the grid's secrets.
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "PASSWORD",
    "SECRET",
    "REDIS_URL",
    "GRIDWATCH_BACKEND",
];

/// What a worker agrees to run.
#[derive(Clone, Debug)]
pub struct CommandPolicy {
    /// Any program (`--allow-commands`).
    any: bool,
    /// Resolved executables allowed (`--allow-command`).
    allowed: Vec<PathBuf>,
    /// Variables copied from the worker's environment into every task's.
    pass_env: Vec<(String, String)>,
}

impl CommandPolicy {
    /// The policy the flags describe; `None` when the worker runs no command task.
    pub fn from_flags(
        any: bool,
        programs: &[String],
        pass_env: &[String],
    ) -> Result<Option<Arc<CommandPolicy>>, String> {
        if !any && programs.is_empty() {
            return Ok(None);
        }
        let allowed = programs
            .iter()
            .map(|program| resolve(program, &search_path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--allow-command: {e}"))?;
        let mut passed = Vec::new();
        for name in pass_env {
            let upper = name.to_ascii_uppercase();
            if SECRET_WORDS.iter().any(|word| upper.contains(word)) {
                return Err(format!(
                    "--pass-env {name}: the grid's secrets are never passed to a task"
                ));
            }
            if let Ok(value) = std::env::var(name) {
                passed.push((name.clone(), value));
            }
        }
        Ok(Some(Arc::new(CommandPolicy {
            any,
            allowed,
            pass_env: passed,
        })))
    }

    /// The executable `program` names, if this worker runs it.
    pub fn permit(&self, program: &str) -> Result<PathBuf, String> {
        let path = resolve(program, &self.task_path())?;
        if self.any || self.allowed.contains(&path) {
            return Ok(path);
        }
        Err(format!(
            "{} is not among the programs this worker allows (--allow-command)",
            path.display()
        ))
    }

    fn task_path(&self) -> String {
        self.pass_env
            .iter()
            .find(|(name, _)| name == "PATH")
            .map_or_else(|| DEFAULT_PATH.to_string(), |(_, value)| value.clone())
    }

    /// A task's whole environment: a search path, its directory as HOME and TMPDIR, the
    /// variables the worker passes, and the task's own GRIDWATCH_* figures.
    fn environment(
        &self,
        dir: &Path,
        lease: &Lease,
        task: &CommandTaskSpec,
    ) -> Vec<(String, String)> {
        let dir = dir.display().to_string();
        let mut env = vec![
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ("HOME".to_string(), dir.clone()),
            ("TMPDIR".to_string(), dir),
        ];
        env.extend(self.pass_env.iter().cloned());
        env.push(("GRIDWATCH_TASK_INDEX".into(), task.index.to_string()));
        env.push(("GRIDWATCH_JOB_ID".into(), lease.id.job.clone()));
        env.push(("GRIDWATCH_CPUS".into(), task.cpus.to_string()));
        env
    }
}

/// The worker's own search path, for resolving `--allow-command` names.
fn search_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string())
}

/// The canonical path of the executable `program` names: an absolute path, or a bare name looked
/// up in `path`.
fn resolve(program: &str, path: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if program.contains('/') {
        if !program.starts_with('/') {
            return Err(format!(
                "program {program:?}: give an absolute path or a name found on the search path"
            ));
        }
        vec![PathBuf::from(program)]
    } else {
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(dir).join(program))
            .collect()
    };
    for candidate in candidates {
        let Ok(real) = std::fs::canonicalize(&candidate) else {
            continue;
        };
        let executable = std::fs::metadata(&real)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
        if executable {
            return Ok(real);
        }
    }
    Err(format!("program {program:?} not found (searched {path})"))
}

/// Runs a leased command task, checking (and extending) its lease meanwhile: `Ok(None)` when
/// the lease was lost or its job cancelled (the task's group is killed at once); `Err` to nack
/// (the worker runs no commands, the program is not allowed here, or it failed with retries
/// left). `running`, when the worker heartbeats to an agent, is told the child's pid.
pub(super) async fn run_leased(
    config: &WorkerConfig,
    queue: &dyn Leases,
    lease: &Lease,
    running: Option<&RunningMark>,
) -> Result<Option<ChunkResult>, String> {
    let policy = config
        .commands
        .as_ref()
        .ok_or("this worker runs no command task: start it with --allow-commands")?;
    let task = CommandTaskSpec::deserialize(&lease.spec)
        .map_err(|e| format!("bad command task spec: {e}"))?;
    let program = task.argv.first().ok_or("a command task with no program")?;
    let program = policy.permit(program)?;
    let dir = WorkDir::create().map_err(|e| format!("a working directory for the task: {e}"))?;
    let _inputs = match (&config.inputs, task.inputs.is_empty()) {
        (_, true) => None,
        (Some(cache), false) => Some(cache.place(&task.inputs, dir.path()).await?),
        (None, false) => return Err("this worker has no input cache".into()),
    };
    let cgroup = memory_cgroup(config, &task).await;
    let memory_limit = task.limits.memory_bytes.map(|_| match cgroup {
        Some(_) => command_cgroup::LIMIT_CGROUP,
        None => command_cgroup::LIMIT_ADDRESS_SPACE,
    });
    let launch = Launch {
        program: &program,
        args: &task.argv[1..],
        env: policy.environment(dir.path(), lease, &task),
        timeout: task.timeout_secs.map(Duration::from_secs_f64),
        output_cap: task.output_cap,
        limits: task.limits,
        spawned: running.map(|mark| Box::new(move |pid| mark.set_pid(pid)) as _),
        captures: Captures::default(),
        cgroup: cgroup.as_ref(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let ran = run_checking_lease(config, queue, lease, launch, dir.path(), &stop_tx, stop_rx)
        .await
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let outputs = match task.outputs.is_empty() || *stop_tx.borrow() {
        true => Vec::new(),
        false => {
            let (path, patterns) = (dir.path().to_path_buf(), task.outputs.clone());
            tokio::task::spawn_blocking(move || command_outputs::collect(&path, &patterns))
                .await
                .map_err(|e| format!("collecting the task's output files: {e}"))?
        }
    };
    drop(dir);
    if *stop_tx.borrow() {
        return Ok(None);
    }
    let mut killed = ran.killed.clone();
    let mut max_rss_kib = ran.max_rss_kib;
    let failed = ran.exit_code != Some(0);
    if let Some(cgroup) = cgroup {
        // The kernel's own count: the cgroup's limit was hit and a process killed for it.
        if killed.is_none() && cgroup.oom_kills() > 0 {
            killed = Some("memory".into());
        }
        max_rss_kib = max_rss_kib.max(cgroup.peak_kib());
        // Removing it waits for its killed processes to be reaped.
        let _ = tokio::task::spawn_blocking(move || drop(cgroup)).await;
    } else if killed.is_none()
        && failed
        && task.limits.memory_bytes.is_some()
        && command_limits::reported_out_of_memory(&ran.stderr.bytes)
    {
        killed = Some("memory".into());
    }
    let result = CommandResult {
        index: task.index,
        exit_code: ran.exit_code,
        signal: ran.signal,
        killed,
        stdout_truncated: ran.stdout.truncated(),
        stderr_truncated: ran.stderr.truncated(),
        stdout_bytes: ran.stdout.total,
        stderr_bytes: ran.stderr.total,
        stdout: String::from_utf8_lossy(&ran.stdout.bytes).into_owned(),
        stderr: String::from_utf8_lossy(&ran.stderr.bytes).into_owned(),
        wall_secs: ran.wall.as_secs_f64(),
        cpu_secs: ran.cpu.as_secs_f64(),
        max_rss_kib,
        memory_limit: memory_limit.map(str::to_string),
        worker: config.id.clone(),
        attempt: lease.attempt,
        outputs,
    };
    if !result.succeeded() && lease.attempt <= task.retries {
        return Err(format!(
            "task {} ended {} (attempt {}; retried up to {} times): {}",
            task.index,
            result.ending(),
            lease.attempt,
            task.retries,
            tail(&result.stderr, 400)
        ));
    }
    let failed = u64::from(!result.succeeded());
    let payload = serde_json::to_value(&result).map_err(|e| format!("command result: {e}"))?;
    let run = TaskRun {
        elapsed_secs: Some(result.wall_secs),
        metrics: result.figures(),
        ..TaskRun::default()
    };
    Ok(Some(ChunkResult {
        chunk: lease.id.chunk,
        matches: failed,
        payload,
        encoded: None,
        worker: config.id.clone(),
        run: Box::new(run),
    }))
}

/// A memory cgroup for the task when it has a memory limit and the worker limits memory with
/// cgroups; `None` (RLIMIT_AS applies) otherwise, or when the cgroup cannot be made.
async fn memory_cgroup(config: &WorkerConfig, task: &CommandTaskSpec) -> Option<TaskCgroup> {
    let (Some(bytes), Some(parent)) = (task.limits.memory_bytes, config.cgroups.clone()) else {
        return None;
    };
    match tokio::task::spawn_blocking(move || parent.task(bytes)).await {
        Ok(Ok(cgroup)) => Some(cgroup),
        Ok(Err(err)) => {
            tracing::warn!(component = "worker", error = %err, "a task's memory cgroup could not be made: its memory is limited with RLIMIT_AS");
            None
        }
        Err(_) => None,
    }
}

/// Runs the task while checking (and extending) its lease every `lease_check`, each extension
/// carrying the output captured since the last; a lost lease sets `stop`, which kills the
/// task's group.
async fn run_checking_lease(
    config: &WorkerConfig,
    queue: &dyn Leases,
    lease: &Lease,
    launch: Launch<'_>,
    dir: &Path,
    stop: &watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<command_run::Ran> {
    let captures = launch.captures.clone();
    let mut cursor = LiveCursor::default();
    let running = command_run::run(launch, dir, stopped);
    tokio::pin!(running);
    let mut ticker = tokio::time::interval(config.lease_check);
    ticker.tick().await;
    loop {
        tokio::select! {
            ran = &mut running => return ran,
            _ = ticker.tick(), if !*stop.borrow() => {
                // Every check carries the output since the last one, so `logs` shows a running
                // task's output within a check's time.
                let piece = cursor.next_piece(&captures);
                if let Ok(false) = queue.extend_with_output(lease, &piece).await {
                    tracing::warn!(component = "worker", job = %lease.id.job, chunk = lease.id.chunk, "lease lost or job cancelled: killing the task's processes");
                    let _ = stop.send(true);
                }
            }
        }
    }
}

/// The last `max` bytes of `text` (cut at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
