//! What a command job asks: the program and its arguments, how many tasks (a job array or the
//! lines of an args file), and the limits each task runs under. Placeholders are GNU parallel's:
//! `{i}` the array index, `{}` the whole line (or the index), `{1}`, `{2}`, … a line's
//! tab-separated fields; an args-file job whose arguments name no placeholder gets the line
//! appended, as `parallel CMD :::: FILE` does.

use serde::{Deserialize, Serialize};

use super::files::{check_relative, MAX_OUTPUT_GLOBS};

/// Most tasks one command job may have.
pub const MAX_COMMAND_TASKS: u32 = 100_000;
/// Most arguments (program included) a command may have.
pub const MAX_ARGS: usize = 1024;
/// Default cap on each of a task's stdout and stderr, in bytes.
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 20;
/// Largest cap a job may set on a task's stdout or stderr: results travel in frames.
pub const MAX_OUTPUT_CAP: u64 = 4 << 20;
/// Longest timeout a task may ask for: a week.
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// Least memory limit a task may ask for: below it no dynamically linked program starts.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

/// Most input files one command job may name.
pub const MAX_INPUTS: usize = 64;
/// Longest input file name, in bytes (a file name's usual limit).
const MAX_INPUT_NAME_BYTES: usize = 255;

/// A file every task of a command job finds, read-only, in its working directory: uploaded
/// once, stored on the master under the BLAKE3 of its bytes, fetched once by each worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// The file's name in the working directory (a base name: no `/`, not `.` or `..`).
    pub name: String,
    /// BLAKE3 of its bytes, 64 lowercase hex digits.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Checks an input file's name: a plain base name, so it can only name a file directly inside
/// the task's working directory.
pub fn check_input_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(80).collect();
    if name.is_empty() {
        return Err("an input with an empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "input name {shown:?}: give a file name, not a directory"
        ));
    }
    if name.contains('/') || name.contains('\\') || name.contains('\0') {
        return Err(format!(
            "input name {shown:?} contains a `/`, a backslash or a NUL byte: inputs are placed \
             directly in the task's working directory under their base name"
        ));
    }
    if name.len() > MAX_INPUT_NAME_BYTES {
        return Err(format!(
            "input name {shown:?}…: longer than {MAX_INPUT_NAME_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Checks a job's (or a task's) input list: at most [`MAX_INPUTS`], each a base name with a
/// well-formed hash, no name twice.
pub fn check_inputs(inputs: &[InputFile]) -> Result<(), String> {
    if inputs.len() > MAX_INPUTS {
        return Err(format!("more than {MAX_INPUTS} inputs"));
    }
    let mut names = std::collections::HashSet::new();
    for input in inputs {
        check_input_name(&input.name)?;
        if !crate::backend::genome::is_genome_hash(&input.hash) {
            return Err(format!(
                "input {:?}: its hash {:?} is not a BLAKE3 hash (64 lowercase hex digits)",
                input.name,
                input.hash.chars().take(80).collect::<String>()
            ));
        }
        if !names.insert(input.name.as_str()) {
            return Err(format!(
                "two inputs are named {:?}: each task's directory holds one file per name",
                input.name
            ));
        }
    }
    Ok(())
}

/// The kernel limits a task's processes run under, set before the program starts (each process
/// it starts inherits them). `None` leaves the worker's own limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLimits {
    /// Address space of each process, bytes (RLIMIT_AS): an allocation past it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Open files of each process (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Processes of the worker's user, as the kernel counts them (RLIMIT_NPROC): a fork past it
    /// fails. The kernel does not apply it to root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
}

impl TaskLimits {
    /// Whether no limit is set.
    pub fn is_unset(&self) -> bool {
        *self == TaskLimits::default()
    }

    fn check(&self) -> Result<(), String> {
        if let Some(bytes) = self.memory_bytes {
            if bytes < MIN_MEMORY_BYTES {
                return Err(format!(
                    "memory {bytes} bytes: give at least {} MiB",
                    MIN_MEMORY_BYTES >> 20
                ));
            }
        }
        if self.open_files.is_some_and(|n| !(3..=1 << 20).contains(&n)) {
            return Err("max open files: give 3 to 1048576".into());
        }
        if self.processes.is_some_and(|n| !(1..=1 << 22).contains(&n)) {
            return Err("max processes: give 1 to 4194304".into());
        }
        Ok(())
    }
}

/// A command job as a client submits it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSubmission {
    /// The program and its arguments, with placeholders.
    pub argv: Vec<String>,
    /// A job array, `A-B` or `N` (one task per index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// The lines of an args file (one task per line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_lines: Option<Vec<String>>,
    /// Seconds a task may run before its process group is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Times a failed task is run again (0: a deterministic failure is not repeated).
    #[serde(default)]
    pub retries: u32,
    /// Worker slots one task takes (and `GRIDWATCH_CPUS` in its environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Cap on each of a task's stdout and stderr, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cap: Option<u64>,
    /// Address space of each of a task's processes, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Open files of each of a task's processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_files: Option<u64>,
    /// Processes of the worker's user a task may bring to (the kernel's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<u64>,
    /// Glob patterns of the files in a task's working directory stored with its result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Files linked read-only into every task's working directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputFile>,
}

/// One task as the worker runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandTaskSpec {
    /// The program and its arguments, placeholders replaced.
    pub argv: Vec<String>,
    /// The array index, or the args file's line number (from 1).
    pub index: u64,
    /// Seconds before the task's process group is killed.
    pub timeout_secs: Option<f64>,
    /// Times a failed task is run again.
    pub retries: u32,
    /// Worker slots the task takes.
    pub cpus: u32,
    /// Cap on each of stdout and stderr, in bytes.
    pub output_cap: u64,
    /// Memory, open-file and process limits.
    #[serde(default, skip_serializing_if = "TaskLimits::is_unset")]
    pub limits: TaskLimits,
    /// Glob patterns of the output files stored with the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Files linked read-only into every task's working directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputFile>,
}

/// Where a job's tasks come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskList {
    /// Indexes `first..=last`.
    Array {
        /// The first index.
        first: u64,
        /// The last index.
        last: u64,
    },
    /// One task per line.
    Lines(Vec<String>),
}

impl TaskList {
    /// How many tasks.
    pub fn len(&self) -> u64 {
        match self {
            TaskList::Array { first, last } => last - first + 1,
            TaskList::Lines(lines) => lines.len() as u64,
        }
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A checked command job, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandJobSpec {
    /// The program and its arguments, with placeholders.
    pub argv: Vec<String>,
    /// The tasks.
    pub tasks: TaskList,
    /// Seconds before a task's process group is killed.
    pub timeout_secs: Option<f64>,
    /// Times a failed task is run again.
    pub retries: u32,
    /// Worker slots one task takes.
    pub cpus: u32,
    /// Cap on each of stdout and stderr, in bytes.
    pub output_cap: u64,
    /// Memory, open-file and process limits of each task.
    #[serde(default, skip_serializing_if = "TaskLimits::is_unset")]
    pub limits: TaskLimits,
    /// Glob patterns of each task's output files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Files linked read-only into every task's working directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputFile>,
}

/// Parses `A-B` or `N` into the first and last index.
pub fn parse_array(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("array {text:?}: write FIRST-LAST (e.g. 1-100) or one index");
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u64>(), b.trim().parse::<u64>()),
        None => (text.trim().parse::<u64>(), text.trim().parse::<u64>()),
    };
    let (first, last) = (first.map_err(|_| bad())?, last.map_err(|_| bad())?);
    if last < first {
        return Err(format!("array {text:?}: the last index is below the first"));
    }
    if last - first >= u64::from(MAX_COMMAND_TASKS) {
        return Err(format!(
            "array {text:?}: more than {MAX_COMMAND_TASKS} tasks; split it into several jobs"
        ));
    }
    Ok((first, last))
}

impl CommandSubmission {
    /// Checks the submission and returns the spec to store, or what is wrong.
    pub fn check(self) -> Result<CommandJobSpec, String> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("no program: put it after `--` (submit command -- PROGRAM ARG…)".into());
        }
        if self.argv.len() > MAX_ARGS {
            return Err(format!("more than {MAX_ARGS} arguments"));
        }
        if self.argv.iter().any(|arg| arg.contains('\0')) {
            return Err("an argument contains a NUL byte".into());
        }
        let tasks = match (self.array, self.args_lines) {
            (Some(_), Some(_)) => return Err("give --array or --args-file, not both".into()),
            (Some(array), None) => {
                let (first, last) = parse_array(&array)?;
                TaskList::Array { first, last }
            }
            (None, Some(lines)) => TaskList::Lines(lines),
            (None, None) => TaskList::Array { first: 1, last: 1 },
        };
        if tasks.is_empty() {
            return Err("the args file has no line: nothing to run".into());
        }
        if tasks.len() > u64::from(MAX_COMMAND_TASKS) {
            return Err(format!(
                "{} tasks; at most {MAX_COMMAND_TASKS} per job",
                tasks.len()
            ));
        }
        if let Some(secs) = self.timeout_secs {
            if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
                return Err(format!(
                    "timeout {secs} s: give a duration above 0 and at most a week"
                ));
            }
        }
        let cpus = self.cpus.unwrap_or(1);
        if !(1..=1024).contains(&cpus) {
            return Err(format!("cpus {cpus}: give 1 to 1024"));
        }
        let limits = TaskLimits {
            memory_bytes: self.memory_bytes,
            open_files: self.max_open_files,
            processes: self.max_processes,
        };
        limits.check()?;
        if self.outputs.len() > MAX_OUTPUT_GLOBS {
            return Err(format!("more than {MAX_OUTPUT_GLOBS} --output patterns"));
        }
        for pattern in &self.outputs {
            check_relative(pattern).map_err(|e| format!("--output {e}"))?;
        }
        check_inputs(&self.inputs)?;
        let output_cap = self.output_cap.unwrap_or(DEFAULT_OUTPUT_CAP);
        if output_cap > MAX_OUTPUT_CAP {
            return Err(format!(
                "output cap {output_cap} bytes is above the most a result carries, \
                 {MAX_OUTPUT_CAP}: write large output to a file"
            ));
        }
        Ok(CommandJobSpec {
            argv: self.argv,
            tasks,
            timeout_secs: self.timeout_secs,
            retries: self.retries.min(100),
            cpus,
            output_cap,
            limits,
            outputs: self.outputs,
            inputs: self.inputs,
        })
    }
}

impl CommandJobSpec {
    /// Task `n` (from 0) of the job, placeholders replaced.
    pub fn task(&self, n: u32) -> CommandTaskSpec {
        let (index, argv) = match &self.tasks {
            TaskList::Array { first, .. } => {
                let index = first + u64::from(n);
                let text = index.to_string();
                let argv = self
                    .argv
                    .iter()
                    .map(|arg| substitute(arg, &text, &[text.as_str()], index))
                    .collect();
                (index, argv)
            }
            TaskList::Lines(lines) => {
                let line = lines[n as usize].as_str();
                let fields: Vec<&str> = line.split('\t').collect();
                let index = u64::from(n) + 1;
                let mut argv: Vec<String> = self
                    .argv
                    .iter()
                    .map(|arg| substitute(arg, line, &fields, index))
                    .collect();
                if !self.argv.iter().any(|arg| has_placeholder(arg)) {
                    argv.push(line.to_string());
                }
                (index, argv)
            }
        };
        CommandTaskSpec {
            argv,
            index,
            timeout_secs: self.timeout_secs,
            retries: self.retries,
            cpus: self.cpus,
            output_cap: self.output_cap,
            limits: self.limits,
            outputs: self.outputs.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

/// Whether `arg` names a placeholder this module replaces.
fn has_placeholder(arg: &str) -> bool {
    arg.contains("{}") || arg.contains("{i}") || placeholders(arg).next().is_some()
}

/// The `{N}` field placeholders in `arg`, as (start, end, N).
fn placeholders(arg: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    arg.match_indices('{').filter_map(move |(start, _)| {
        let rest = &arg[start + 1..];
        let close = rest.find('}')?;
        let number: usize = rest[..close].parse().ok()?;
        (number >= 1 && !rest[..close].starts_with('+')).then_some((
            start,
            start + close + 2,
            number,
        ))
    })
}

/// `arg` with `{}` → `line`, `{i}` → the index, `{N}` → field N (empty past the last field).
pub fn substitute(arg: &str, line: &str, fields: &[&str], index: u64) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix("{}") {
            out.push_str(line);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{i}") {
            out.push_str(&index.to_string());
            rest = after;
        } else if let Some((_, end, number)) = placeholders(tail).find(|(start, ..)| *start == 0) {
            out.push_str(fields.get(number - 1).copied().unwrap_or(""));
            rest = &tail[end..];
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_as_gnu_parallel_does() {
        let fields = ["a", "b c"];
        assert_eq!(substitute("x{}y", "a\tb c", &fields, 7), "xa\tb cy");
        assert_eq!(substitute("{2}-{1}-{3}", "a\tb c", &fields, 7), "b c-a-");
        assert_eq!(substitute("seed={i}", "", &[], 42), "seed=42");
        assert_eq!(substitute("{x} {", "", &[], 1), "{x} {");
    }

    #[test]
    fn an_args_file_line_is_appended_when_no_placeholder_is_named() {
        let spec = CommandSubmission {
            argv: vec!["echo".into()],
            args_lines: Some(vec!["one".into(), "two".into()]),
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(spec.task(1).argv, ["echo", "two"]);
        assert_eq!(spec.task(1).index, 2);
    }

    #[test]
    fn arrays_are_checked() {
        assert_eq!(parse_array("1-100"), Ok((1, 100)));
        assert_eq!(parse_array("5"), Ok((5, 5)));
        assert!(parse_array("9-1").is_err());
        assert!(parse_array("0-100000").is_err());
        assert!(parse_array("a-b").is_err());
    }
}
