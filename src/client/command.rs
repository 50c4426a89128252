//! `gridwatch submit command …`: the flags that build a command job. The args file is read here
//! (bounded), so a typo in it fails before anything is sent.

use std::path::PathBuf;

use super::connect::ClientError;
use super::job_request::{JobRequest, SubmitCommon};
use gridwatch::backend::ChunkResult;
use gridwatch::jobs::command::{check_relative, CommandResult};
use gridwatch::jobs::command::{CommandSubmission, COMMAND_KIND, MAX_COMMAND_TASKS};

/// Largest args file read: its lines travel in the job's spec.
const MAX_ARGS_FILE_BYTES: u64 = 4 << 20;

/// What to run.
#[derive(Clone, Debug, clap::Args)]
pub struct CommandSpecArgs {
    /// A job array, FIRST-LAST (e.g. 1-100): one task per index, `{i}` in the arguments and
    /// GRIDWATCH_TASK_INDEX in the environment.
    #[arg(long, conflicts_with = "args_file")]
    pub array: Option<String>,
    /// One task per line: `{}` is the line, `{1}`, `{2}`, … its tab-separated fields; with no
    /// placeholder the line is appended as one argument, as GNU parallel does.
    #[arg(long, value_name = "FILE")]
    pub args_file: Option<PathBuf>,
    /// Kill a task's whole process group after this long (`30s`, `10m`, `2h`): SIGTERM, then
    /// SIGKILL a few seconds later.
    #[arg(long, value_parser = gridwatch::time::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Run a failed task (non-zero exit, killed) again up to N times. A deterministic failure
    /// is not worth repeating, hence 0.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Worker slots one task takes; the task sees it as GRIDWATCH_CPUS.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Keep at most this many bytes of each task's stdout and of its stderr; the rest is
    /// counted and the result marked truncated.
    #[arg(long, value_name = "BYTES")]
    pub output_cap: Option<u64>,
    /// Limit a task's memory (`512MiB`, `2GiB`): on a worker with a delegated cgroup v2
    /// hierarchy, what the whole task uses (the kernel kills it past the limit); elsewhere each
    /// of its processes' address space (an allocation past it fails). A task that hits the
    /// limit is reported `killed (memory)`; its result's `memory_limit` says which applied.
    #[arg(long, value_name = "SIZE", value_parser = super::generate::parse_size)]
    pub memory: Option<u64>,
    /// Limit each of a task's processes to N open files.
    #[arg(long, value_name = "N")]
    pub max_open_files: Option<u64>,
    /// Let a task's processes bring the worker's user to at most N processes (the kernel's
    /// per-user count, not applied to root): a fork past it fails.
    #[arg(long, value_name = "N")]
    pub max_processes: Option<u64>,
    /// Store the files in a task's working directory matching GLOB with its result (`*` and `?`
    /// within one path component, e.g. `out/*.csv`); repeatable. `results --out DIR` writes them
    /// as DIR/TASK/FILE. A symbolic link is never followed.
    #[arg(long = "output", value_name = "GLOB")]
    pub outputs: Vec<String>,
    /// Put FILE, read-only, in every task's working directory under its base name (repeatable).
    /// It is uploaded once, stored on the master under its BLAKE3 hash and fetched once by
    /// each worker; a later job with the same file uploads nothing.
    #[arg(long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM ARG")]
    pub argv: Vec<String>,
}

impl CommandSpecArgs {
    /// The submission, checked before anything is sent.
    pub fn request(&self) -> Result<JobRequest, ClientError> {
        let args_lines = match &self.args_file {
            Some(path) => Some(read_args_file(path)?),
            None => None,
        };
        let submission = CommandSubmission {
            argv: self.argv.clone(),
            array: self.array.clone(),
            args_lines,
            timeout_secs: self.timeout.map(|t| t.as_secs_f64()),
            retries: self.retries,
            cpus: self.cpus,
            output_cap: self.output_cap,
            memory_bytes: self.memory,
            max_open_files: self.max_open_files,
            max_processes: self.max_processes,
            outputs: self.outputs.clone(),
            inputs: super::inputs::describe(&self.inputs)?,
        };
        submission
            .clone()
            .check()
            .map_err(|e| ClientError::Usage(format!("command: {e}")))?;
        Ok(JobRequest {
            kind: COMMAND_KIND,
            spec: serde_json::to_value(submission)
                .map_err(|e| ClientError::Usage(format!("command spec: {e}")))?,
            upload: None,
            inputs: self.inputs.clone(),
        })
    }
}

/// The args file's lines (a final newline ends the last line rather than adding an empty one).
fn read_args_file(path: &std::path::Path) -> Result<Vec<String>, ClientError> {
    use std::io::Read;
    let name = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| ClientError::Usage(format!("args file {name}: {e}")))?;
    let mut text = String::new();
    file.take(MAX_ARGS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            ClientError::Usage(format!("args file {name}: {e} (it must be UTF-8 text)"))
        })?;
    if text.len() as u64 > MAX_ARGS_FILE_BYTES {
        return Err(ClientError::Usage(format!(
            "args file {name} is over {MAX_ARGS_FILE_BYTES} bytes: split it into several jobs"
        )));
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() > MAX_COMMAND_TASKS as usize {
        return Err(ClientError::Usage(format!(
            "args file {name} has {} lines; at most {MAX_COMMAND_TASKS} per job",
            lines.len()
        )));
    }
    Ok(lines)
}

/// `gridwatch submit command … -- PROGRAM ARG…`.
#[derive(Clone, Debug, clap::Args)]
pub struct CommandSubmitArgs {
    /// What to run.
    #[command(flatten)]
    pub spec: CommandSpecArgs,
    /// Flags of every submit.
    #[command(flatten)]
    pub common: SubmitCommon,
}

/// Writes each task's stdout and stderr as `DIR/TASK/stdout` and `DIR/TASK/stderr` (TASK: the
/// array index or args-file line number), exactly as stored, and its output files as
/// `DIR/TASK/FILE`.
pub fn write_task_files(dir: &std::path::Path, results: &[ChunkResult]) -> Result<(), ClientError> {
    let fail = |path: &std::path::Path, e: std::io::Error| {
        ClientError::Usage(format!("{}: cannot write: {e}", path.display()))
    };
    for stored in results {
        let result: CommandResult = serde_json::from_value(stored.payload.clone())
            .map_err(|e| ClientError::JobFailed(format!("task {} result: {e}", stored.chunk)))?;
        let task_dir = dir.join(result.index.to_string());
        std::fs::create_dir_all(&task_dir).map_err(|e| fail(&task_dir, e))?;
        for (name, text) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
            let path = task_dir.join(name);
            std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
        }
        for file in &result.outputs {
            // The name comes from a worker: it must stay inside the task's directory.
            check_relative(&file.name).map_err(|e| {
                ClientError::JobFailed(format!("task {} output file: {e}", result.index))
            })?;
            let Some(bytes) = file.bytes().map_err(ClientError::JobFailed)? else {
                eprintln!(
                    "task {}: output file {} ({} bytes) was past the result's cap and not stored",
                    result.index, file.name, file.size
                );
                continue;
            };
            let path = task_dir.join(&file.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| fail(&path, e))?;
        }
    }
    Ok(())
}
