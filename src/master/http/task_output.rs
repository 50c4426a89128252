//! `GET /jobs/{id}/tasks/{task}/stdout` and `.../stderr`: one command task's output as plain
//! text. TASK is the task's own number (its array index or args-file line number), as `results`
//! and `logs` show it. A finished task's output is its stored result's; a running task's is the
//! tail its worker has sent so far (header `Gridwatch-Task-State: running`, and
//! `Gridwatch-Output-Offset` where the tail starts in the stream); a task that has neither
//! answers 409, so a script can poll. Only the one task is read.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, HttpState};
use crate::master::task_output::{self, Stream, TaskOutput};

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

async fn output(
    state: &HttpState,
    id: String,
    task: u64,
    stream: Stream,
) -> Result<Response, ApiError> {
    let (record, chunk) = task_output::command_task(&state.master, &id, task)
        .await
        .map_err(|e| match e {
            crate::master::jobs::JobError::Invalid(message) => ApiError::NotFound(message),
            other => other.into(),
        })?;
    let (text, running, offset) = match task_output::read(&state.master, &id, chunk).await? {
        TaskOutput::Finished(result) => match stream {
            Stream::Stdout => (result.stdout, false, 0),
            Stream::Stderr => (result.stderr, false, 0),
        },
        TaskOutput::Running(live) => {
            let tail = match stream {
                Stream::Stdout => live.stdout,
                Stream::Stderr => live.stderr,
            };
            (tail.text, true, tail.offset)
        }
        TaskOutput::Waiting => {
            return Err(ApiError::NotReady(format!(
                "task {task} of job {id} has not finished yet and has sent no output (the job \
                 is {})",
                record.status.as_str()
            )))
        }
    };
    let state_word = if running { "running" } else { "finished" };
    let headers = [
        (
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8".to_string(),
        ),
        (
            header::HeaderName::from_static("gridwatch-task-state"),
            state_word.to_string(),
        ),
        (
            header::HeaderName::from_static("gridwatch-output-offset"),
            offset.to_string(),
        ),
    ];
    Ok((headers, text).into_response())
}
