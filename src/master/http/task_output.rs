//! `GET /jobs/{id}/tasks/{task}/stdout` and `.../stderr`: one finished task's output of a
//! command job, as stored, as plain text. TASK is the task's own number (its array index or
//! args-file line number), as `results` and `logs` show it; a task that has not finished yet
//! answers 409, so a script can poll. Only the one task's stored result is read.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, HttpState};
use crate::backend::MasterStore;
use crate::jobs::command::{CommandJobSpec, CommandResult, TaskList, COMMAND_KIND};

/// `GET /jobs/{id}/tasks/{task}/stdout`.
pub async fn stdout(
    State(state): State<HttpState>,
    Path((id, task)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    output(&state, id, task, Stream::Stdout).await
}

/// `GET /jobs/{id}/tasks/{task}/stderr`.
pub async fn stderr(
    State(state): State<HttpState>,
    Path((id, task)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    output(&state, id, task, Stream::Stderr).await
}

/// Which of a task's outputs.
enum Stream {
    Stdout,
    Stderr,
}

async fn output(
    state: &HttpState,
    id: String,
    task: u64,
    stream: Stream,
) -> Result<Response, ApiError> {
    let store = state.master.store.as_ref();
    let record = crate::master::jobs::find(&state.master, &id).await?;
    if record.kind != COMMAND_KIND {
        return Err(ApiError::NotFound(format!(
            "job {id} is a {} job: only command jobs have task output",
            record.kind
        )));
    }
    let spec: CommandJobSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| ApiError::Corrupt(format!("job {id} spec: {e}")))?;
    let chunk = chunk_of(&spec.tasks, task)
        .ok_or_else(|| ApiError::NotFound(format!("job {id} has no task {task}")))?;
    let result = task_result(store, &id, chunk).await?.ok_or_else(|| {
        ApiError::NotReady(format!(
            "task {task} of job {id} has not finished yet (the job is {})",
            record.status.as_str()
        ))
    })?;
    let text = match stream {
        Stream::Stdout => result.stdout,
        Stream::Stderr => result.stderr,
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    Ok((headers, text).into_response())
}

/// The chunk (from 0) of the task numbered `task`, if the job has it.
fn chunk_of(tasks: &TaskList, task: u64) -> Option<u32> {
    let chunk = match tasks {
        TaskList::Array { first, last } => (*first..=*last).contains(&task).then(|| task - first),
        TaskList::Lines(lines) => (1..=lines.len() as u64).contains(&task).then(|| task - 1),
    }?;
    u32::try_from(chunk).ok()
}

/// The stored result of one chunk, parts assembled; `None` while it has none.
pub async fn task_result(
    store: &dyn MasterStore,
    job: &str,
    chunk: u32,
) -> Result<Option<CommandResult>, ApiError> {
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
        .map_err(|e| ApiError::Corrupt(format!("job {job} task result {chunk}: {e}")))
}
