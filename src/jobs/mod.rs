//! Job kinds. Each kind owns, in its own module: its spec and validation, how a job is cut into
//! tasks, how one task runs on a worker (pure: it calls a kernel such as `search`), how task
//! results combine into the job's result, and how that result is printed. The master, the workers
//! and the clients look a kind up by its tag ([`kind`]) and call it through [`Kind`]; none of them
//! names a kind's own types.
//!
//! Adding a kind touches:
//! - `src/jobs/NAME.rs` (or `NAME/`): a type implementing [`JobKind`];
//! - `src/jobs/mod.rs`: one line in [`KINDS`];
//! - `src/client/submit.rs`: its `gridwatch submit NAME` subcommand (the flags that build its
//!   submission);
//! - `src/main.rs`: only if the kind also has a local command (as `gridwatch search` does).
//!
//! Results are rendered with a [`JobContext`] (the job's id, wall time and task count), which the
//! kinds whose output is a summary print beside their own figures.

use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::{ChunkResult, ResultCheck, SharedResultCheck, DEFAULT_TASK_KIND};
use crate::protocol::{ErrorCode, ProgressFigure};

pub mod batch;
pub mod command;
pub mod julia;
mod outcome;
pub mod particles;
pub mod records;
pub mod search;

pub use outcome::TaskOutcome;

/// Every kind the grid runs, looked up by tag. A new kind is one more line here.
pub static KINDS: &[&dyn Kind] = &[
    &search::SearchKind,
    &julia::JuliaKind,
    &particles::ParticlesKind,
    &command::CommandKind,
];

/// `1 chunk`, `2 chunks`: a count with its noun in the right number (every text output says
/// "1 task", never "1 tasks").
pub fn count_of(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The kind registered under `name`.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|kind| kind.name() == name)
}

/// What a job of kind `name` counts as progress; `matches` for a kind this build does not know.
pub fn progress_figure(name: &str) -> ProgressFigure {
    kind(name).map_or(ProgressFigure::Matches, |kind| kind.progress_figure())
}

/// The kind registered under `name`, or an error listing the kinds there are.
pub fn require(name: &str) -> Result<&'static dyn Kind, UnknownKind> {
    kind(name).ok_or_else(|| UnknownKind(name.to_string()))
}

/// A tag no registered kind carries.
#[derive(Clone, Debug, Error)]
#[error("unknown job kind {0:?} (known: {known})", known = known_kinds())]
pub struct UnknownKind(pub String);

fn known_kinds() -> String {
    KINDS
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest job id, in bytes: the id rule shared with worker ids.
pub const MAX_JOB_ID_LEN: usize = crate::protocol::MAX_ID_LEN;

/// Largest submitted job spec, as JSON bytes, unless a kind sets its own
/// [`JobKind::MAX_SPEC_BYTES`]: a spec may be copied into every task, so it must stay small.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// The master's limits a submission is checked against.
#[derive(Clone, Copy, Debug)]
pub struct SubmitLimits {
    /// Largest upload accepted, in bytes.
    pub max_upload: u64,
    /// Largest frame, in bytes: one task's input must fit in it.
    pub max_frame: usize,
    /// Bases per search chunk when the client does not say.
    pub default_chunk_size: u64,
    /// Most match positions one job may store (`--max-positions`).
    pub max_positions: u64,
    /// Most work one job may ask for, per kind.
    pub work: WorkCaps,
}

/// Most work one job may ask for: a job over its kind's cap is refused before any task exists,
/// so one submission cannot occupy every worker for days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkCaps {
    /// Most Julia iterations a job may ask for: real pixels × the iteration limit.
    pub julia_iterations: u64,
    /// Most particle disc-steps a job may ask for: replicas × discs × steps.
    pub particle_disc_steps: u64,
}

impl WorkCaps {
    /// Default Julia cap, 10¹¹ iterations: an 8192² image at 1,490 iterations, or ten thousand
    /// times the classic 1000² benchmark at 300, and in the worst case (every pixel running to
    /// the limit) a few core-minutes.
    pub const DEFAULT_JULIA_ITERATIONS: u64 = 100_000_000_000;
    /// Default particle cap, 10¹² disc-steps: fifty replicas of the largest task (2·10¹⁰
    /// disc-steps, about ten minutes of one core), about eight core-hours, and 60,000 times the
    /// largest documented example (2000 discs × 1000 steps × 8 replicas).
    pub const DEFAULT_PARTICLE_DISC_STEPS: u64 = 1_000_000_000_000;
    /// The defaults.
    pub const DEFAULT: WorkCaps = WorkCaps {
        julia_iterations: Self::DEFAULT_JULIA_ITERATIONS,
        particle_disc_steps: Self::DEFAULT_PARTICLE_DISC_STEPS,
    };
}

/// Why the master refuses a submission: a protocol error code and a message for the user.
#[derive(Clone, Debug, Error)]
#[error("{message}")]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// What is wrong and what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A submission whose fields are missing or ill-typed.
    pub fn bad_spec(kind: &str, err: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::BadMessage, format!("bad {kind} job spec: {err}"))
    }
}

/// Why one task could not run (the worker nacks with this message).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct TaskError(pub String);

/// Why stored results could not be turned into the job's result.
#[derive(Debug, Error)]
pub enum ResultError {
    /// The stored spec or a stored task result does not decode.
    #[error("unreadable stored result: {0}")]
    Corrupt(String),
    /// The kind has no such output format.
    #[error("{kind} results have no format {format:?} (formats: {known})")]
    UnknownFormat {
        /// The kind.
        kind: &'static str,
        /// What was asked.
        format: String,
        /// The kind's formats, comma-separated.
        known: String,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a rendering knows of the job beyond its results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobContext {
    /// The job's id; `None` for a local run.
    pub job_id: Option<String>,
    /// Wall time from submission to the last result (or of the local run), in seconds.
    pub seconds: f64,
    /// Tasks the job was cut into.
    pub tasks: u32,
}

impl JobContext {
    /// The context of a grid job, from its view.
    pub fn of_view(view: &crate::protocol::JobView) -> Self {
        Self {
            job_id: Some(view.job_id.clone()),
            seconds: view
                .finished_at
                .map_or(0.0, |finished| (finished - view.created_at).max(0.0)),
            tasks: view.progress.total_chunks,
        }
    }
}

/// Refuses an upload for a kind whose tasks are planned from the spec alone.
pub fn refuse_upload(kind: &str, upload: Option<u64>) -> Result<(), Refusal> {
    match upload {
        Some(_) => Err(Refusal::new(
            ErrorCode::BadMessage,
            format!("a {kind} job uploads nothing; send no file_size"),
        )),
        None => Ok(()),
    }
}

/// One task as planned by the master: its index, its kind-specific spec and its input bytes.
#[derive(Clone, Debug)]
pub struct PlannedTask {
    /// Index within the job, from 0.
    pub chunk: u32,
    /// The kind's task spec, as JSON.
    pub spec: serde_json::Value,
    /// Input bytes (empty for kinds whose tasks are parameter ranges).
    pub data: Bytes,
}

impl PlannedTask {
    /// A task with a typed spec.
    pub fn new(chunk: u32, spec: &impl Serialize, data: Bytes) -> Result<Self, Refusal> {
        let spec = serde_json::to_value(spec)
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("task spec: {e}")))?;
        Ok(Self { chunk, spec, data })
    }
}

/// Cuts an upload into tasks as it streams in, so nobody holds the whole input.
pub trait InputCutter: Send {
    /// Takes the next upload bytes; hands every task cut so far to `emit`.
    fn push(&mut self, bytes: &[u8], emit: &mut dyn FnMut(PlannedTask)) -> Result<(), Refusal>;
    /// The upload ended: emits the last tasks and returns the job spec to store, completed with
    /// what only the end of the input tells.
    fn finish(
        self: Box<Self>,
        emit: &mut dyn FnMut(PlannedTask),
    ) -> Result<serde_json::Value, Refusal>;
    /// Asks the cutter to append the decoded input it cuts, in input order, to `sink`, so it can
    /// be kept as a stored genome that later jobs need not upload again. False for kinds whose
    /// input is not kept (the default).
    fn keep_decoded(&mut self, _sink: DecodedSink) -> bool {
        false
    }
    /// Asks a cutter that keeps its decoded input (see [`InputCutter::keep_decoded`]) to cut
    /// tasks that carry no bytes but a reference to their range of that input as stored under
    /// `storage` (see `backend::genome::GenomeRef`), so the input is stored once. False when the
    /// cutter cannot (the default).
    fn refer_to_kept(&mut self, _storage: &str) -> bool {
        false
    }
}

/// Where a cutter appends the decoded input it cuts (see [`InputCutter::keep_decoded`]); the
/// master drains it after every push.
pub type DecodedSink = std::sync::Arc<std::sync::Mutex<Vec<Bytes>>>;

/// Where a job's tasks come from.
pub enum TaskSource {
    /// Streamed input, cut as it arrives (search).
    Upload(Box<dyn InputCutter>),
    /// Known from the spec alone, no upload (parameter ranges: row bands, replicas, ...).
    Planned(Vec<PlannedTask>),
}

/// A job kind, with its own types. Implement this; the grid uses it through [`Kind`].
pub trait JobKind: Send + Sync + 'static {
    /// The tag stored with jobs and tasks and typed on the command line.
    const NAME: &'static str;
    /// Output formats of `gridwatch results`; the first is the default.
    const FORMATS: &'static [&'static str];
    /// A format that prints a small summary of the result, shown beside the job by the HTTP API
    /// and the dashboard; `None` when the result has no such summary.
    const SUMMARY_FORMAT: Option<&'static str> = None;
    /// The format that draws the result as a PNG image, if the kind has one.
    const IMAGE_FORMAT: Option<&'static str> = None;
    /// What the job's progress count ([`JobKind::matches`] summed) counts, as every view names
    /// it: `matches` for a search, `iterations` for a Julia set, `collisions` for particles.
    const PROGRESS_FIGURE: ProgressFigure = ProgressFigure::Matches;
    /// Largest submitted spec, as JSON bytes.
    const MAX_SPEC_BYTES: usize = MAX_SPEC_BYTES;
    /// What a client submits.
    type Submission: DeserializeOwned;
    /// What the store keeps for the job.
    type Spec: Serialize + DeserializeOwned;
    /// What one task carries (besides its input bytes).
    type TaskSpec: DeserializeOwned;
    /// Per-job state a worker prepares once and reuses for the job's consecutive tasks.
    type Prepared: Send + Sync + 'static;
    /// What one task stores.
    type TaskResult: Serialize + DeserializeOwned;
    /// The job's combined result.
    type Output;

    /// Checks a submission against the master's limits; `upload` is the announced upload size.
    fn accept(
        &self,
        submission: Self::Submission,
        upload: Option<u64>,
        limits: &SubmitLimits,
    ) -> Result<Self::Spec, Refusal>;
    /// How the job is cut into tasks.
    fn tasks(&self, spec: &Self::Spec) -> Result<TaskSource, Refusal>;
    /// Builds the per-job state from the first task of a job a worker sees.
    fn prepare(&self, task: &Self::TaskSpec) -> Result<Self::Prepared, TaskError>;
    /// Whether `prepared` (built from an earlier task of the same job) can run `task`; when not,
    /// the task is run with state prepared from itself. Kinds whose tasks all share one state
    /// keep the default.
    fn prepared_fits(&self, _prepared: &Self::Prepared, _task: &Self::TaskSpec) -> bool {
        true
    }
    /// Runs one task. Pure: no I/O, no clock.
    fn run(
        &self,
        prepared: &Self::Prepared,
        task: &Self::TaskSpec,
        input: &[u8],
    ) -> Self::TaskResult;
    /// Runs one task like [`JobKind::run`], giving up with `None` soon after `stop` is set (its
    /// lease was lost or its job cancelled). Kinds whose kernels check a flag override it; the
    /// default runs to the end.
    fn run_until(
        &self,
        prepared: &Self::Prepared,
        task: &Self::TaskSpec,
        input: &[u8],
        _stop: &AtomicBool,
    ) -> Option<Self::TaskResult> {
        Some(self.run(prepared, task, input))
    }

    /// Why a task's result must fail the task rather than be stored (an output past a cap the
    /// job carries); the worker nacks with it. Most kinds keep the default.
    fn check_output(
        &self,
        _task: &Self::TaskSpec,
        _result: &Self::TaskResult,
    ) -> Result<(), TaskError> {
        Ok(())
    }
    /// The task's contribution to the job's progress count.
    fn matches(&self, result: &Self::TaskResult) -> u64;
    /// The largest contribution an honest result of this task can make, from its spec and input
    /// size: a stored result claiming more is refused. Kinds without matches keep the default.
    fn max_matches(&self, _task: &Self::TaskSpec, _input_len: usize) -> u64 {
        0
    }
    /// How many of a worker's slots the task takes: it is leased only to a worker with at least
    /// that many. Kinds whose tasks run on one thread keep the default.
    fn slots(&self, _task: &Self::TaskSpec) -> u32 {
        1
    }
    /// Why `result`, stored with `matches` as its match count, cannot be what an honest worker
    /// ran of `task`; checked before any result is stored. The default checks only that the
    /// count agrees with the payload; kinds add the shape of their own results.
    fn check_result(
        &self,
        task: &Self::TaskSpec,
        matches: u64,
        result: &Self::TaskResult,
    ) -> Result<(), String> {
        let _ = task;
        agree(matches, self.matches(result))
    }
    /// Combines the stored task results (ordered by task index) into the job's result.
    fn combine(&self, spec: &Self::Spec, results: Vec<(u32, Self::TaskResult)>) -> Self::Output;
    /// Prints the result in one of [`Self::FORMATS`].
    fn render(
        &self,
        output: &Self::Output,
        job: &JobContext,
        format: &str,
        out: &mut dyn Write,
    ) -> io::Result<()>;
    /// One line on what the job asks, for `status`, `jobs` and the HTTP API.
    fn summary(&self, spec: &Self::Spec) -> String;
    /// The job's result cache key: a digest of everything its answer depends on, so that a
    /// later job with the same key can be answered with this one's results, running no task.
    /// `None` (the default) when the kind keeps no cache or the spec does not pin the answer.
    fn result_key(&self, _spec: &Self::Spec) -> Option<String> {
        None
    }
}

/// Per-job state prepared on a worker, ready to run the job's tasks.
pub trait PreparedTask: Send + Sync {
    /// Runs one task of the job on its input.
    fn run(&self, task: &serde_json::Value, input: &[u8]) -> Result<TaskOutcome, TaskError> {
        let never = AtomicBool::new(false);
        self.run_until(task, input, &never)
            .map(|outcome| outcome.expect("never stopped"))
    }
    /// Runs one task of the job on its input, giving up with `Ok(None)` soon after `stop` is set.
    fn run_until(
        &self,
        task: &serde_json::Value,
        input: &[u8],
        stop: &AtomicBool,
    ) -> Result<Option<TaskOutcome>, TaskError>;
}

/// A job kind as the master, the workers and the clients see it: JSON in, JSON out.
pub trait Kind: Send + Sync {
    /// The kind's tag.
    fn name(&self) -> &'static str;
    /// Output formats; the first is the default.
    fn formats(&self) -> &'static [&'static str];
    /// The format printing a small JSON summary of the result, if the kind has one.
    fn summary_format(&self) -> Option<&'static str>;
    /// The format drawing the result as a PNG image, if the kind has one.
    fn image_format(&self) -> Option<&'static str>;
    /// What the job's progress count counts (`matches`, `iterations`, `collisions`).
    fn progress_figure(&self) -> ProgressFigure;
    /// Checks a submission and returns the spec to store.
    fn accept(
        &self,
        submission: serde_json::Value,
        upload: Option<u64>,
        limits: &SubmitLimits,
    ) -> Result<serde_json::Value, Refusal>;
    /// How a stored job spec is cut into tasks.
    fn tasks(&self, spec: &serde_json::Value) -> Result<TaskSource, Refusal>;
    /// The most matches a result of a task with this spec and input size may claim (0 if the
    /// spec does not decode).
    fn max_matches(&self, task: &serde_json::Value, input_len: usize) -> u64;
    /// How many of a worker's slots a task with this spec takes (1 if the spec does not decode).
    fn slots(&self, task: &serde_json::Value) -> u32;
    /// Why `payload` (JSON text, claiming `matches`) is not a result of the task `task`: it does
    /// not decode as the kind's task result, or [`JobKind::check_result`] finds it malformed.
    fn check_result(
        &self,
        task: &serde_json::Value,
        matches: u64,
        payload: &[u8],
    ) -> Result<(), String>;
    /// Prepares a worker to run the tasks of the job `task` belongs to (kinds are `'static`: they
    /// live in [`KINDS`]).
    fn prepare(&'static self, task: &serde_json::Value)
        -> Result<Arc<dyn PreparedTask>, TaskError>;
    /// Combines stored results and prints them in `format`.
    fn render(
        &self,
        job: &JobContext,
        spec: &serde_json::Value,
        results: &[ChunkResult],
        format: &str,
        out: &mut dyn Write,
    ) -> Result<(), ResultError>;
    /// The kind's format `asked` names: itself, or `count` and `counts` taken for one another
    /// (a search says `count`, a Julia set `counts`; nobody should have to remember which).
    fn format_named(&self, asked: &str) -> Option<&'static str> {
        let alias = match asked {
            "count" => "counts",
            "counts" => "count",
            _ => asked,
        };
        let formats = self.formats();
        let find = |name: &str| formats.iter().copied().find(|f| *f == name);
        find(asked).or_else(|| find(alias))
    }
    /// Checks that `format` is one of the kind's output formats.
    fn check_format(&self, format: &str) -> Result<(), ResultError> {
        if self.formats().contains(&format) {
            return Ok(());
        }
        Err(ResultError::UnknownFormat {
            kind: self.name(),
            format: format.to_string(),
            known: self.formats().join(", "),
        })
    }
    /// One line on what the job asks; empty if the spec does not decode.
    fn summary(&self, spec: &serde_json::Value) -> String;
    /// The job's result cache key ([`JobKind::result_key`]); `None` if the spec does not decode.
    fn result_key(&self, spec: &serde_json::Value) -> Option<String>;
}

/// A kind's prepared state with the kind that runs it.
struct Prepared<K: JobKind> {
    kind: &'static K,
    state: K::Prepared,
}

impl<K: JobKind> PreparedTask for Prepared<K> {
    fn run_until(
        &self,
        task: &serde_json::Value,
        input: &[u8],
        stop: &AtomicBool,
    ) -> Result<Option<TaskOutcome>, TaskError> {
        let task: K::TaskSpec = decode_task::<K>(task)?;
        let result = if self.kind.prepared_fits(&self.state, &task) {
            self.kind.run_until(&self.state, &task, input, stop)
        } else {
            let own = self.kind.prepare(&task)?;
            self.kind.run_until(&own, &task, input, stop)
        };
        let Some(result) = result else {
            return Ok(None);
        };
        self.kind.check_output(&task, &result)?;
        let matches = self.kind.matches(&result);
        let outcome = TaskOutcome::encode(&result, matches)
            .map_err(|e| TaskError(format!("{} result encoding: {e}", K::NAME)))?;
        Ok(Some(outcome))
    }
}

fn decode_task<K: JobKind>(task: &serde_json::Value) -> Result<K::TaskSpec, TaskError> {
    K::TaskSpec::deserialize(task).map_err(|e| TaskError(format!("bad {} task spec: {e}", K::NAME)))
}

/// Every [`JobKind`] is a [`Kind`].
impl<K: JobKind> Kind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn formats(&self) -> &'static [&'static str] {
        K::FORMATS
    }

    fn summary_format(&self) -> Option<&'static str> {
        K::SUMMARY_FORMAT
    }

    fn image_format(&self) -> Option<&'static str> {
        K::IMAGE_FORMAT
    }

    fn progress_figure(&self) -> ProgressFigure {
        K::PROGRESS_FIGURE
    }

    fn accept(
        &self,
        submission: serde_json::Value,
        upload: Option<u64>,
        limits: &SubmitLimits,
    ) -> Result<serde_json::Value, Refusal> {
        let size = serde_json::to_vec(&submission).map_or(usize::MAX, |json| json.len());
        if size > K::MAX_SPEC_BYTES {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                format!(
                    "{} job spec of {size} bytes exceeds the limit of {} bytes: \
                     submit fewer or shorter patterns or parameters",
                    K::NAME,
                    K::MAX_SPEC_BYTES
                ),
            ));
        }
        let submission: K::Submission =
            serde_json::from_value(submission).map_err(|e| Refusal::bad_spec(K::NAME, e))?;
        let spec = JobKind::accept(self, submission, upload, limits)?;
        serde_json::to_value(&spec)
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("job spec: {e}")))
    }

    fn tasks(&self, spec: &serde_json::Value) -> Result<TaskSource, Refusal> {
        let spec = K::Spec::deserialize(spec).map_err(|e| Refusal::bad_spec(K::NAME, e))?;
        JobKind::tasks(self, &spec)
    }

    fn max_matches(&self, task: &serde_json::Value, input_len: usize) -> u64 {
        decode_task::<K>(task)
            .map(|task| JobKind::max_matches(self, &task, input_len))
            .unwrap_or(0)
    }

    fn slots(&self, task: &serde_json::Value) -> u32 {
        decode_task::<K>(task)
            .map(|task| JobKind::slots(self, &task))
            .unwrap_or(1)
    }

    fn check_result(
        &self,
        task: &serde_json::Value,
        matches: u64,
        payload: &[u8],
    ) -> Result<(), String> {
        let task = decode_task::<K>(task).map_err(|e| e.to_string())?;
        let result: K::TaskResult = serde_json::from_slice(payload)
            .map_err(|e| format!("the payload is not a {} task result: {e}", K::NAME))?;
        JobKind::check_result(self, &task, matches, &result)
    }

    fn prepare(
        &'static self,
        task: &serde_json::Value,
    ) -> Result<Arc<dyn PreparedTask>, TaskError> {
        let spec = decode_task::<K>(task)?;
        let state = JobKind::prepare(self, &spec)?;
        Ok(Arc::new(Prepared { kind: self, state }))
    }

    fn render(
        &self,
        job: &JobContext,
        spec: &serde_json::Value,
        results: &[ChunkResult],
        format: &str,
        out: &mut dyn Write,
    ) -> Result<(), ResultError> {
        self.check_format(format)?;
        let spec = K::Spec::deserialize(spec)
            .map_err(|e| ResultError::Corrupt(format!("{} job spec: {e}", K::NAME)))?;
        let mut decoded = Vec::with_capacity(results.len());
        for result in results {
            let value = K::TaskResult::deserialize(&result.payload).map_err(|e| {
                ResultError::Corrupt(format!("{} result of task {}: {e}", K::NAME, result.chunk))
            })?;
            decoded.push((result.chunk, value));
        }
        decoded.sort_by_key(|(chunk, _)| *chunk);
        let output = self.combine(&spec, decoded);
        JobKind::render(self, &output, job, format, out)?;
        Ok(())
    }

    fn summary(&self, spec: &serde_json::Value) -> String {
        K::Spec::deserialize(spec)
            .map(|spec| JobKind::summary(self, &spec))
            .unwrap_or_default()
    }

    fn result_key(&self, spec: &serde_json::Value) -> Option<String> {
        let spec = K::Spec::deserialize(spec).ok()?;
        JobKind::result_key(self, &spec)
    }
}

/// A refusal unless a result's stated match count is the one its payload adds up to.
pub fn agree(stated: u64, counted: u64) -> Result<(), String> {
    match stated == counted {
        true => Ok(()),
        false => Err(format!(
            "the result states {stated} matches but its payload counts {counted}"
        )),
    }
}

/// The backends' check of every result before it is stored: by the kind the task was enqueued
/// with, [`Kind::check_result`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KindResultCheck;

impl ResultCheck for KindResultCheck {
    fn check(
        &self,
        kind: &str,
        spec: &serde_json::Value,
        matches: u64,
        payload: &[u8],
    ) -> Result<(), String> {
        let name = match kind {
            "" => DEFAULT_TASK_KIND,
            name => name,
        };
        let kind = require(name).map_err(|e| e.to_string())?;
        kind.check_result(spec, matches, payload)
    }

    fn job_cap(&self, kind: &str, spec: &serde_json::Value) -> Option<(u64, String)> {
        match kind {
            "" | search::SEARCH_KIND => search::job_position_cap(spec),
            _ => None,
        }
    }
}

/// The check every backend of a role is opened with.
pub fn result_check() -> SharedResultCheck {
    Arc::new(KindResultCheck)
}

/// Runs every task of a job in this process, last task first (a grid finishes them in any order),
/// and renders the combined result in `format`: the grid's path for a job, without the grid. For
/// the kinds' unit tests.
#[cfg(test)]
pub(crate) fn run_in_process(
    kind: &'static dyn Kind,
    spec: &serde_json::Value,
    tasks: &[PlannedTask],
    format: &str,
) -> Vec<u8> {
    let prepared = kind
        .prepare(&tasks[0].spec)
        .expect("the first task prepares");
    let results: Vec<ChunkResult> = tasks
        .iter()
        .rev()
        .map(|task| {
            let outcome = prepared.run(&task.spec, &task.data).expect("the task runs");
            outcome.into_chunk_result(task.chunk, "w".into(), Default::default())
        })
        .collect();
    let mut out = Vec::new();
    kind.render(&JobContext::default(), spec, &results, format, &mut out)
        .expect("the result renders");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_their_unique_tags() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(
                super::kind(kind.name()).map(|k| k.name()),
                Some(kind.name())
            );
            assert!(
                !kind.formats().is_empty(),
                "{} has no output format",
                kind.name()
            );
            assert!(KINDS[i + 1..]
                .iter()
                .all(|other| other.name() != kind.name()));
        }
        let unknown = require("alchemy").err().map(|e| e.to_string());
        assert_eq!(
            unknown.as_deref(),
            Some("unknown job kind \"alchemy\" (known: search, julia, particles, command)")
        );
    }
}
