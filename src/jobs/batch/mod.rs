//! Batch task files: a CSV of Julia renders (`algoritmo,width,height,iteraciones,prioridad`) or a
//! JSON document (`metadata` + `tasks`) of particle simulations, Julia renders and searches. Each
//! task becomes one job whose id is the task's id, so loading a file twice creates nothing new.
//!
//! Parsing is pure (bytes in, tasks out) and checks the whole file before anything is created:
//! the first error names its line (CSV) or JSON path and field. The grid re-checks each job.

mod csv;
mod json;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::Priority;
use crate::jobs::julia::JuliaSubmission;
use crate::jobs::particles::ParticlesSubmission;

pub use csv::csv_task_id;

/// Default most tasks one file may hold: each becomes a job, and a file's tasks are checked
/// together in memory before any job is created (100,000 parsed tasks take about 150 MiB).
pub const MAX_TASKS: usize = 100_000;

/// Default largest batch file, in bytes: far above any hand-written batch (100,000 tasks take
/// 17 MiB of JSON), while a file of this size is refused or parsed in a few hundred MiB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Longest piece of a file's text quoted in an error: enough to recognise a value, never a
/// copy of the file.
const MAX_QUOTED_CHARS: usize = 64;

/// `text` as a quoted string for an error message, cut to [`MAX_QUOTED_CHARS`] characters.
pub(crate) fn quoted(text: &str) -> String {
    let cut = truncated(text);
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// `text` cut to [`MAX_QUOTED_CHARS`] characters.
pub(crate) fn truncated(text: &str) -> &str {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text,
        Some((cut, _)) => &text[..cut],
    }
}

/// A JSON value for an error message, cut like [`quoted`].
pub(crate) fn shown(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text,
        Some((cut, _)) => format!("{}...", &text[..cut]),
    }
}

/// One task of a batch file, ready to submit as a job.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchTask {
    /// The job id: the file's `task_id`, or for a CSV row an id derived from the file and row.
    pub task_id: String,
    /// Where the task is in the file (`line 4`, `tasks[1]`), for messages.
    pub location: String,
    /// The job kind's tag.
    pub kind: &'static str,
    /// The algorithm as the file names it (`Secuencial`, `python`, ...).
    pub algorithm: String,
    /// The kind's submission (its spec fields).
    pub submission: serde_json::Value,
    /// Queue priority.
    pub priority: Priority,
    /// The task's description, if the file gives one.
    pub description: Option<String>,
    /// For a search: the sequence file to upload, as written (relative to the batch file).
    pub upload: Option<PathBuf>,
    /// For a command: its input files, as written (relative to the batch file); the submission
    /// names none until they are stored and named by hash.
    pub inputs: Vec<PathBuf>,
}

/// A parsed batch file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Its tasks, in file order.
    pub tasks: Vec<BatchTask>,
    /// The JSON `metadata` object, if any (kept as written; nothing in it is required).
    pub metadata: Option<serde_json::Value>,
}

/// Why a batch file is refused: where, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{location}{}: {message}", field.as_ref().map(|f| format!(", field {f:?}")).unwrap_or_default())]
pub struct BatchError {
    /// `line 4`, `tasks[1]`, `JSON line 3, column 7`, or `file`.
    pub location: String,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl BatchError {
    pub(crate) fn at(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn field(
        location: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            location: location.into(),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// Parses a batch file of at most [`MAX_TASKS`] tasks; see [`parse_limited`].
pub fn parse(bytes: &[u8]) -> Result<Batch, BatchError> {
    parse_limited(bytes, MAX_TASKS)
}

/// Parses a batch file: JSON when its first non-blank byte is `{`, else CSV (the file name does
/// not decide: the CSV format is traditionally kept in a `.txt` file). Parsing stops at the first
/// task past `max_tasks`, so a file of millions of rows is refused without building them.
pub fn parse_limited(bytes: &[u8], max_tasks: usize) -> Result<Batch, BatchError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        BatchError::at(
            "file",
            format!(
                "not UTF-8 text (byte {}); save it as UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let batch = match text.trim_start().chars().next() {
        None => {
            return Err(BatchError::at(
                "file",
                "the file is empty: no tasks to load",
            ))
        }
        Some('{') | Some('[') => json::parse(text, max_tasks)?,
        Some(_) => csv::parse(text, max_tasks)?,
    };
    if batch.tasks.is_empty() {
        return Err(BatchError::at("file", "the file holds no tasks"));
    }
    Ok(batch)
}

/// The refusal of the task at `location`, one past `max_tasks`.
pub(crate) fn too_many_tasks(location: String, max_tasks: usize) -> BatchError {
    BatchError::at(
        location,
        format!(
            "more than {max_tasks} tasks in one file: split it (the master's limit is --max-batch-tasks)"
        ),
    )
}

/// What an algorithm name runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Julia,
    Particles,
    Search,
    Command,
}

/// Algorithm names a file may use: the Julia benchmark's three implementations, the particle
/// simulation's two, and `search`.
pub const ALGORITHMS: &str = "Secuencial, Numpy, juliaCython or julia (Julia renders); python or \
     cython (particles); search; command (any program, on workers that allow it)";

pub(crate) fn algorithm(name: &str) -> Option<Algorithm> {
    match name.trim().to_ascii_lowercase().as_str() {
        "secuencial" | "sequential" | "numpy" | "juliacython" | "julia" => Some(Algorithm::Julia),
        "python" | "cython" | "particles" => Some(Algorithm::Particles),
        "search" => Some(Algorithm::Search),
        "command" => Some(Algorithm::Command),
        _ => None,
    }
}

/// Reads a priority: 1/2/3, high/medium/low, or alta/media/baja.
pub(crate) fn priority(word: &str) -> Option<Priority> {
    match word.trim().to_ascii_lowercase().as_str() {
        "1" | "high" | "alta" => Some(Priority::High),
        "2" | "medium" | "media" => Some(Priority::Medium),
        "3" | "low" | "baja" => Some(Priority::Low),
        _ => None,
    }
}

pub(crate) const PRIORITIES: &str = "1, 2 or 3 (high, medium, low)";

/// Checks a Julia render's parameters as the master will; returns its submission.
pub(crate) fn julia_submission(
    width: u32,
    height: u32,
    iterations: u32,
) -> Result<serde_json::Value, String> {
    let submission = JuliaSubmission {
        width,
        height: Some(height),
        iterations: Some(iterations),
        c: None,
        region: None,
        bands: None,
    };
    submission
        .check(crate::protocol::DEFAULT_MAX_FRAME, u64::MAX)
        .map_err(|e| e.to_string())?;
    serde_json::to_value(&submission).map_err(|e| e.to_string())
}

/// Checks a particle simulation's parameters; returns its submission.
pub(crate) fn particles_submission(
    submission: ParticlesSubmission,
) -> Result<serde_json::Value, String> {
    // The master checks the work against its own caps.
    submission.check(u64::MAX).map_err(|e| e.to_string())?;
    serde_json::to_value(submission).map_err(|e| e.to_string())
}

/// A job id the master accepts: 1 to [`MAX_JOB_ID_LEN`](super::MAX_JOB_ID_LEN) letters, digits,
/// '-', '_', '.' or ':'. Every way in (a submit, a batch file, the drop directory) checks here.
pub fn valid_job_id(id: &str) -> bool {
    crate::protocol::valid_id(id)
}

/// What the grid keeps of a job beyond its kind's spec: its queue priority and, for a job loaded
/// from a batch file, the task's algorithm, description and file. Stored under
/// [`JobMeta::KEY`] inside the job's spec object, which kinds' decoders ignore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobMeta {
    /// Queue priority.
    pub priority: Priority,
    /// The algorithm as the batch file named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// The task's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The batch file the job came from (its name only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl JobMeta {
    /// The key inside a stored spec.
    pub const KEY: &'static str = "job_meta";

    /// Writes `self` into `spec` (an object; other specs are left alone).
    pub fn attach(&self, spec: &mut serde_json::Value) {
        if let (Some(fields), Ok(meta)) = (spec.as_object_mut(), serde_json::to_value(self)) {
            fields.insert(Self::KEY.to_string(), meta);
        }
    }

    /// The metadata stored in `spec`, if any.
    pub fn of(spec: &serde_json::Value) -> Option<JobMeta> {
        spec.get(Self::KEY)
            .and_then(|meta| JobMeta::deserialize(meta).ok())
    }
}

#[cfg(test)]
mod tests;
