//! `gridwatch submit command …`: the flags that build a command job. The args file is read here
//! (bounded), so a typo in it fails before anything is sent.

use std::path::PathBuf;

use super::connect::ClientError;
use super::submit::{JobRequest, SubmitCommon};
use crate::jobs::command::{CommandSubmission, COMMAND_KIND, MAX_COMMAND_TASKS};

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
    #[arg(long, value_parser = crate::time::parse_duration)]
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
