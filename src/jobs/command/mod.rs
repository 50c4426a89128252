//! The `command` kind: any program as a task, run by workers that allow it (see the worker's
//! command runner). The kind plans the tasks and prints their results; it never runs a program
//! itself. A task's result holds its exit status, its capped stdout and stderr, and its times; its
//! progress count is 1 when it failed, so a job whose count is not 0 at the end has failed tasks.

mod files;
mod spec;

use std::io::{self, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use files::{
    check_relative, decode_base64, encode_base64, glob_matches, glob_may_descend, OutputFile,
    MAX_OUTPUT_FILES, MAX_OUTPUT_FILE_BYTES,
};
pub use spec::{
    check_input_name, check_inputs, parse_array, substitute, CommandJobSpec, CommandSubmission,
    CommandTaskSpec, InputFile, TaskLimits, TaskList, DEFAULT_OUTPUT_CAP, MAX_COMMAND_TASKS,
    MAX_INPUTS, MAX_OUTPUT_CAP,
};

use super::{JobContext, JobKind, PlannedTask, Refusal, SubmitLimits, TaskError, TaskSource};
use crate::protocol::{ErrorCode, ProgressFigure};

/// The kind's tag.
pub const COMMAND_KIND: &str = "command";

/// What one run of a command task left behind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The array index or args-file line number.
    pub index: u64,
    /// The exit code, when the program exited (not killed by a signal).
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Why it was stopped, when it was: `timeout` (the worker killed its group), `memory` (it
    /// hit its memory limit: see `memory_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<String>,
    /// Standard output, up to the cap (invalid UTF-8 replaced).
    pub stdout: String,
    /// Standard error, up to the cap (invalid UTF-8 replaced).
    pub stderr: String,
    /// Bytes the task wrote to stdout, counted past the cap too.
    pub stdout_bytes: u64,
    /// Bytes the task wrote to stderr, counted past the cap too.
    pub stderr_bytes: u64,
    /// Whether stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the cap.
    pub stderr_truncated: bool,
    /// Wall time, seconds.
    pub wall_secs: f64,
    /// User plus system CPU time of the program and its reaped children, seconds.
    pub cpu_secs: f64,
    /// Peak resident set size, KiB, when known (under a memory cgroup: the whole task's peak).
    pub max_rss_kib: Option<u64>,
    /// How `--memory` was enforced, when the task had it: `cgroup` (a cgroup v2 memory limit
    /// on the whole task; `killed` is `memory` when the kernel killed it for exceeding it) or
    /// `rlimit_as` (each process's address space; `killed` is `memory` when the task failed
    /// reporting an allocation the limit refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// The worker that ran it.
    pub worker: String,
    /// Which delivery this was (1 = first).
    pub attempt: u32,
    /// The files in its working directory that matched the job's `--output` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputFile>,
}

impl CommandResult {
    /// Whether the run succeeded: exit code 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.killed.is_none()
    }

    /// `exit 3`, `signal 9`, `timeout`: how the run ended, in a word or two.
    pub fn ending(&self) -> String {
        match (&self.killed, self.exit_code, self.signal) {
            (Some(why), ..) => format!("killed ({why})"),
            (None, Some(code), _) => code.to_string(),
            (None, None, Some(signal)) => format!("signal {signal}"),
            (None, None, None) => "?".into(),
        }
    }

    /// The run's small figures for its task record (what task listings and the job page show
    /// without reading the result): how it ended, and its times.
    pub fn figures(&self) -> serde_json::Value {
        let mut figures = serde_json::Map::new();
        if let Some(code) = self.exit_code {
            figures.insert("exit_code".into(), code.into());
        }
        if let Some(signal) = self.signal {
            figures.insert("signal".into(), signal.into());
        }
        if let Some(why) = &self.killed {
            figures.insert("killed".into(), why.clone().into());
        }
        figures.insert("cpu_secs".into(), self.cpu_secs.into());
        if let Some(rss) = self.max_rss_kib {
            figures.insert("max_rss_kib".into(), rss.into());
        }
        serde_json::Value::Object(figures)
    }

    /// How the run ended, in one of the few classes metrics count by: `ok`, `exit_nonzero`,
    /// `signal`, `timeout` or `memory`.
    pub fn outcome_class(&self) -> &'static str {
        outcome_class(self.killed.as_deref(), self.exit_code)
    }

    /// The exit class metrics count failures by: `exit_N`, `signal`, `timeout`, `memory`.
    pub fn exit_class(&self) -> String {
        match (&self.killed, self.exit_code) {
            (Some(why), _) => why.clone(),
            (None, Some(code)) => format!("exit_{code}"),
            (None, None) => "signal".into(),
        }
    }
}

/// How a run ended, in one of the few classes metrics count by (see [`COMMAND_OUTCOMES`]):
/// why the worker killed it if it did, else its exit code, else a signal ended it.
pub fn outcome_class(killed: Option<&str>, exit_code: Option<i32>) -> &'static str {
    match (killed, exit_code) {
        (Some("timeout"), _) => "timeout",
        (Some("memory"), _) => "memory",
        (Some(_), _) | (None, None) => "signal",
        (None, Some(0)) => "ok",
        (None, Some(_)) => "exit_nonzero",
    }
}

/// Every class [`outcome_class`] gives, the order metrics list them in.
pub const COMMAND_OUTCOMES: [&str; 5] = ["ok", "exit_nonzero", "signal", "timeout", "memory"];

/// How a stored task ended, read from its task record's figures ([`CommandResult::figures`]),
/// so an ending is classed without reading the task's output.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RecordedEnding {
    /// The exit code, when the program exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the worker killed it, if it did.
    #[serde(default)]
    pub killed: Option<String>,
}

impl RecordedEnding {
    /// The ending recorded in a task record's figures; `None` for a record without them.
    pub fn from_figures(figures: &serde_json::Value) -> Option<Self> {
        figures.as_object()?;
        Self::deserialize(figures).ok()
    }

    /// Its class, as [`outcome_class`] gives it.
    pub fn outcome_class(&self) -> &'static str {
        outcome_class(self.killed.as_deref(), self.exit_code)
    }
}

/// Every task's result, in task order.
pub struct CommandOutput {
    /// The job's spec.
    pub spec: CommandJobSpec,
    /// Results by task index (from 0).
    pub results: Vec<(u32, CommandResult)>,
}

/// The `command` kind.
pub struct CommandKind;

impl JobKind for CommandKind {
    const NAME: &'static str = COMMAND_KIND;
    const FORMATS: &'static [&'static str] = &["table", "json"];
    const PROGRESS_FIGURE: ProgressFigure = ProgressFigure::Failures;
    /// An args file is carried in the spec.
    const MAX_SPEC_BYTES: usize = 4 << 20;
    type Submission = CommandSubmission;
    type Spec = CommandJobSpec;
    type TaskSpec = CommandTaskSpec;
    type Prepared = ();
    type TaskResult = CommandResult;
    type Output = CommandOutput;

    fn accept(
        &self,
        submission: CommandSubmission,
        upload: Option<u64>,
        _limits: &SubmitLimits,
    ) -> Result<CommandJobSpec, Refusal> {
        super::refuse_upload(COMMAND_KIND, upload)?;
        submission
            .check()
            .map_err(|e| Refusal::new(ErrorCode::BadMessage, format!("command: {e}")))
    }

    fn tasks(&self, spec: &CommandJobSpec) -> Result<TaskSource, Refusal> {
        let count = spec.tasks.len().min(u64::from(MAX_COMMAND_TASKS)) as u32;
        let tasks = (0..count)
            .map(|n| PlannedTask::new(n, &spec.task(n), Bytes::new()))
            .collect::<Result<_, _>>()?;
        Ok(TaskSource::Planned(tasks))
    }

    fn prepare(&self, _task: &CommandTaskSpec) -> Result<(), TaskError> {
        Err(TaskError(
            "command tasks run only through a worker's command runner".into(),
        ))
    }

    fn run(&self, _prepared: &(), task: &CommandTaskSpec, _input: &[u8]) -> CommandResult {
        CommandResult {
            index: task.index,
            ..CommandResult::default()
        }
    }

    fn matches(&self, result: &CommandResult) -> u64 {
        u64::from(!result.succeeded())
    }

    fn max_matches(&self, _task: &CommandTaskSpec, _input_len: usize) -> u64 {
        1
    }

    fn slots(&self, task: &CommandTaskSpec) -> u32 {
        task.cpus.max(1)
    }

    fn check_result(
        &self,
        task: &CommandTaskSpec,
        matches: u64,
        result: &CommandResult,
    ) -> Result<(), String> {
        super::agree(matches, self.matches(result))?;
        if result.index != task.index {
            return Err(format!(
                "the result is of task {} but the lease is of task {}",
                result.index, task.index
            ));
        }
        let cap = task.output_cap as usize;
        if result.stdout.len() > cap * 3 || result.stderr.len() > cap * 3 {
            return Err(format!("stdout or stderr is past the cap of {cap} bytes"));
        }
        if result.outputs.len() > MAX_OUTPUT_FILES {
            return Err(format!("more than {MAX_OUTPUT_FILES} output files"));
        }
        let mut carried = 0;
        for file in &result.outputs {
            check_relative(&file.name).map_err(|e| format!("output file: {e}"))?;
            if !task.outputs.iter().any(|p| glob_matches(p, &file.name)) {
                return Err(format!(
                    "output file {:?} matches no --output pattern",
                    file.name
                ));
            }
            carried += file.base64.as_ref().map_or(0, String::len) as u64;
        }
        if carried > MAX_OUTPUT_FILE_BYTES.div_ceil(3) * 4 {
            return Err(format!(
                "output files carry more than {MAX_OUTPUT_FILE_BYTES} bytes"
            ));
        }
        Ok(())
    }

    fn combine(&self, spec: &CommandJobSpec, results: Vec<(u32, CommandResult)>) -> CommandOutput {
        CommandOutput {
            spec: spec.clone(),
            results,
        }
    }

    fn render(
        &self,
        output: &CommandOutput,
        _job: &JobContext,
        format: &str,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        match format {
            "json" => {
                let tasks: Vec<&CommandResult> = output.results.iter().map(|(_, r)| r).collect();
                serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "tasks": tasks }))?;
                writeln!(out)
            }
            _ => write_table(&output.results, out),
        }
    }

    fn summary(&self, spec: &CommandJobSpec) -> String {
        let tasks = match &spec.tasks {
            TaskList::Array { first, last } => format!("array {first}-{last}"),
            TaskList::Lines(lines) => super::count_of(lines.len() as u64, "line"),
        };
        let program = spec.argv.first().map_or("", String::as_str);
        format!("{program} ({tasks})")
    }
}

/// Bytes as `812 B`, `4.0 KiB`, `1.2 MiB`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

/// One row per task: task, exit, seconds, worker, output sizes (`+` when cut at the cap).
fn write_table(results: &[(u32, CommandResult)], out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>7}  {:>14}  {:>9}  {:<20}  {:>11}  {:>11}",
        "TASK", "EXIT", "SECONDS", "WORKER", "STDOUT", "STDERR"
    )?;
    let mut failed = Vec::new();
    for (_, result) in results {
        let cut = |truncated: bool| if truncated { "+" } else { "" };
        writeln!(
            out,
            "{:>7}  {:>14}  {:>9.3}  {:<20}  {:>11}  {:>11}",
            result.index,
            result.ending(),
            result.wall_secs,
            result.worker,
            format!(
                "{}{}",
                size(result.stdout_bytes),
                cut(result.stdout_truncated)
            ),
            format!(
                "{}{}",
                size(result.stderr_bytes),
                cut(result.stderr_truncated)
            ),
        )?;
        if !result.succeeded() {
            failed.push(result.index.to_string());
        }
    }
    if !failed.is_empty() {
        writeln!(out, "failed tasks: {}", failed.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_task_counts_one_and_is_named_in_the_table() {
        let ok = CommandResult {
            index: 1,
            exit_code: Some(0),
            worker: "w1".into(),
            ..Default::default()
        };
        let bad = CommandResult {
            index: 2,
            exit_code: Some(3),
            stdout_bytes: 5000,
            stdout_truncated: true,
            worker: "w2".into(),
            ..Default::default()
        };
        assert_eq!(CommandKind.matches(&ok), 0);
        assert_eq!(CommandKind.matches(&bad), 1);
        let mut out = Vec::new();
        write_table(&[(0, ok), (1, bad)], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("4.9 KiB+"), "{text}");
        assert!(text.ends_with("failed tasks: 2\n"), "{text}");
    }

    #[test]
    fn a_task_records_figures_give_the_class_of_its_ending() {
        let ended = |exit_code, signal, killed: Option<&str>| CommandResult {
            exit_code,
            signal,
            killed: killed.map(str::to_string),
            ..Default::default()
        };
        // Each ending with its class written out by hand.
        let cases = [
            (ended(Some(0), None, None), "ok"),
            (ended(Some(3), None, None), "exit_nonzero"),
            (ended(None, Some(9), None), "signal"),
            (ended(None, Some(15), Some("timeout")), "timeout"),
            (ended(Some(137), None, Some("memory")), "memory"),
        ];
        for (result, class) in cases {
            let recorded = RecordedEnding::from_figures(&result.figures()).expect("figures");
            assert_eq!(recorded.outcome_class(), class, "{result:?}");
            assert_eq!(result.outcome_class(), class, "{result:?}");
        }
        assert!(RecordedEnding::from_figures(&serde_json::Value::Null).is_none());
    }
}
