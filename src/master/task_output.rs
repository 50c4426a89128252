//! One command task's output as `logs` and the HTTP API read it: the stored result's stream once
//! the task has finished, else the live tail its worker sends with its lease extensions while
//! it runs. The stored result is read first, so a reader never sees a tail after the result.

use super::jobs::{self, JobError};
use super::MasterState;
use crate::backend::live_output::{
    text_window, LiveOutput, TaskOutputState, TaskOutputView, MAX_VIEW_TEXT_BYTES,
};
use crate::backend::{BackendError, JobRecord, MasterStore};
use crate::jobs::command::{CommandJobSpec, CommandResult, TaskList, COMMAND_KIND};

/// Which of a task's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Where a command task stands: its stored result, else its live tail, else neither.
pub enum TaskOutput {
    /// It has finished.
    Finished(Box<CommandResult>),
    /// It runs and has sent output.
    Running(LiveOutput),
    /// Neither.
    Waiting,
}

/// The job `id`, which must be a command job, and the chunk of its task numbered `task`.
pub async fn command_task(
    state: &MasterState,
    id: &str,
    task: u64,
) -> Result<(JobRecord, u32), JobError> {
    let record = jobs::find(state, id).await?;
    if record.kind != COMMAND_KIND {
        return Err(JobError::Invalid(format!(
            "job {id} is a {} job: only command jobs have task output",
            record.kind
        )));
    }
    let spec: CommandJobSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| BackendError::Corrupt(format!("job {id} spec: {e}")))?;
    let chunk = chunk_of(&spec.tasks, task)
        .ok_or_else(|| JobError::Invalid(format!("job {id} has no task {task}")))?;
    Ok((record, chunk))
}

/// What chunk `chunk` of `job` has to show.
pub async fn read(state: &MasterState, job: &str, chunk: u32) -> Result<TaskOutput, JobError> {
    if let Some(result) = task_result(state.store.as_ref(), job, chunk).await? {
        return Ok(TaskOutput::Finished(Box::new(result)));
    }
    Ok(match state.queue.live_output(job, chunk).await? {
        Some(live) => TaskOutput::Running(live),
        None => TaskOutput::Waiting,
    })
}

/// One stream of task `task` of job `id` from `from` on, as `logs` asks for it.
pub async fn view(
    state: &MasterState,
    id: &str,
    task: u64,
    stream: Stream,
    from: u64,
) -> Result<TaskOutputView, JobError> {
    let (record, chunk) = command_task(state, id, task).await?;
    let output = read(state, id, chunk).await?;
    let mut view = TaskOutputView {
        state: TaskOutputState::Waiting,
        job_status: record.status.as_str().to_string(),
        offset: from,
        text: String::new(),
        end: 0,
        worker: None,
        exit_code: None,
        ending: None,
        signal: None,
        truncated: false,
    };
    match output {
        TaskOutput::Finished(result) => {
            let (text, truncated) = match stream {
                Stream::Stdout => (&result.stdout, result.stdout_truncated),
                Stream::Stderr => (&result.stderr, result.stderr_truncated),
            };
            let (offset, window) = text_window(text, from, MAX_VIEW_TEXT_BYTES);
            view.state = TaskOutputState::Finished;
            (view.offset, view.text, view.end) = (offset, window.to_string(), text.len() as u64);
            view.worker = Some(result.worker.clone());
            view.exit_code = result.exit_code;
            view.signal = result.signal;
            view.ending = Some(result.ending());
            view.truncated = truncated;
        }
        TaskOutput::Running(live) => {
            let tail = match stream {
                Stream::Stdout => &live.stdout,
                Stream::Stderr => &live.stderr,
            };
            let start = from.max(tail.offset);
            let (offset, window) = text_window(&tail.text, start - tail.offset, usize::MAX);
            view.state = TaskOutputState::Running;
            view.offset = tail.offset + offset;
            view.text = window.to_string();
            view.end = tail.end();
            view.worker = Some(live.worker);
        }
        TaskOutput::Waiting if record.status.is_finished() => {
            view.state = TaskOutputState::Ended;
        }
        TaskOutput::Waiting => {}
    }
    Ok(view)
}

/// The chunk (from 0) of the task numbered `task`, if the job has it.
pub fn chunk_of(tasks: &TaskList, task: u64) -> Option<u32> {
    let chunk = match tasks {
        TaskList::Array { first, last } => (*first..=*last).contains(&task).then(|| task - first),
        TaskList::Lines(lines) => (1..=lines.len() as u64).contains(&task).then(|| task - 1),
    }?;
    u32::try_from(chunk).ok()
}

/// The task number (array index or args-file line number) of chunk `chunk`.
pub fn task_number(tasks: &TaskList, chunk: u32) -> u64 {
    match tasks {
        TaskList::Array { first, .. } => first + u64::from(chunk),
        TaskList::Lines(_) => u64::from(chunk) + 1,
    }
}

/// The stored result of one chunk, parts assembled; `None` while it has none.
pub async fn task_result(
    store: &dyn MasterStore,
    job: &str,
    chunk: u32,
) -> Result<Option<CommandResult>, BackendError> {
    let headers = store.result_headers_in(job, chunk..chunk + 1).await?;
    let Some(header) = headers.into_iter().find(|h| h.chunk == chunk) else {
        return Ok(None);
    };
    let mut text = Vec::new();
    for part in 0..header.parts {
        text.extend_from_slice(&store.result_part(job, chunk, part).await?);
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| BackendError::Corrupt(format!("job {job} task result {chunk}: {e}")))
}
