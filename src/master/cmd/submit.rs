//! `submit_job`: validate, create the job, answer `ready`, then stream the upload through the
//! chunker, enqueueing each chunk (with its bases) as soon as it is cut; `accepted` after the last
//! byte. Neither side holds the whole file. A job whose upload does not complete is failed and
//! its queued tasks removed: it is never half-accepted.

use std::time::Instant;

use super::{Conn, HandlerError, Session};
use crate::backend::{CreateOutcome, JobRecord, JobStatus, NewTask, Priority, TaskId};
use crate::jobs::search::{SearchJobSpec, SearchTaskSpec, SEARCH_KIND};
use crate::master::MasterState;
use crate::protocol::{ErrorCode, Message};
use crate::search::{Chunker, Pattern, PatternSet, SearchOptions, SequenceChunk};

/// The fields of a `submit_job` message.
struct Submission {
    job_id: String,
    spec: SearchJobSpec,
    priority: Priority,
}

/// Answers `submit_job`.
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    session: &Session,
    message: Message,
) -> Result<(), HandlerError> {
    let submission = validate(state, message)?;
    let job_id = submission.job_id.clone();
    if let Some(done) = existing_job(state, &job_id).await? {
        conn.write_message(&done).await?;
        return Ok(());
    }
    let client = session.peer.ip().to_string();
    if let Err(wait) = state.rate_limiter.check(&client, Instant::now()) {
        return Err(HandlerError::refused(
            ErrorCode::RateLimited,
            format!(
                "client {client} submitted {} jobs in the last minute (the limit); retry in {} s",
                state.rate_limiter.limit(),
                wait.as_secs() + 1
            ),
        ));
    }
    let record = JobRecord {
        id: job_id.clone(),
        kind: SEARCH_KIND.into(),
        spec: serde_json::to_value(&submission.spec)
            .map_err(|e| HandlerError::refused(ErrorCode::Internal, format!("job spec: {e}")))?,
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: unix_now(),
        finished_at: None,
    };
    if let CreateOutcome::Exists(_) = state.store.create_job(&record).await? {
        // Created by a concurrent retry between our look and our insert.
        return Err(in_progress(&job_id));
    }
    let _guard = UploadGuard::register(state, &job_id);
    conn.write_message(&Message::Ready {
        job_id: job_id.clone(),
    })
    .await?;
    match receive(conn, state, &submission).await {
        Ok(total_chunks) => {
            conn.write_message(&Message::Accepted {
                job_id,
                total_chunks,
                active_workers: state.workers.active(),
                existing: false,
            })
            .await?;
            Ok(())
        }
        Err(err) => {
            abandon(state, &job_id, &err).await;
            Err(err)
        }
    }
}

/// Checks patterns, sizes and the job id before anything is stored.
fn validate(state: &MasterState, message: Message) -> Result<Submission, HandlerError> {
    let Message::SubmitJob {
        job_id,
        filename,
        patterns,
        options,
        file_size,
        chunk_size,
        priority,
    } = message
    else {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            "expected submit_job",
        ));
    };
    if job_id.is_empty()
        || job_id.len() > 128
        || !job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!("job id {job_id:?}: use 1-128 letters, digits, '-', '_', '.' or ':'"),
        ));
    }
    let set = PatternSet::new(patterns.clone(), options)
        .map_err(|err| HandlerError::refused(ErrorCode::BadPattern, err.to_string()))?;
    if file_size > state.config.max_upload {
        return Err(HandlerError::refused(
            ErrorCode::UploadTooLarge,
            format!(
                "{filename}: {file_size} bytes exceeds the master's upload limit of {} bytes (--max-upload)",
                state.config.max_upload
            ),
        ));
    }
    let chunk_size = chunk_size.unwrap_or(state.config.chunk_size);
    let largest = state.config.max_frame.saturating_sub(set.overlap()) as u64;
    if chunk_size == 0 || chunk_size > largest {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!("chunk size {chunk_size}: must be between 1 and {largest} bases"),
        ));
    }
    Ok(Submission {
        job_id,
        spec: SearchJobSpec {
            filename,
            patterns: set.patterns().to_vec(),
            options,
            chunk_size,
            file_size,
            records: Vec::new(),
        },
        priority,
    })
}

/// For a retried id: the reply to send instead of taking a new upload, or `None` if new.
async fn existing_job(state: &MasterState, job_id: &str) -> Result<Option<Message>, HandlerError> {
    let Some(job) = state.store.job(job_id).await? else {
        return Ok(None);
    };
    let uploading = state
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(job_id);
    if uploading || job.status == JobStatus::Uploading {
        return Err(in_progress(job_id));
    }
    if job.total_chunks == 0 && job.status == JobStatus::Failed {
        return Err(HandlerError::refused(
            ErrorCode::UploadIncomplete,
            format!(
                "job {job_id}'s earlier upload did not complete ({}); submit again under a new job id",
                job.error.unwrap_or_default()
            ),
        ));
    }
    Ok(Some(Message::Accepted {
        job_id: job_id.to_string(),
        total_chunks: job.total_chunks,
        active_workers: state.workers.active(),
        existing: true,
    }))
}

fn in_progress(job_id: &str) -> HandlerError {
    HandlerError::refused(
        ErrorCode::JobNotReady,
        format!("job {job_id} is being uploaded on another connection; query its status instead"),
    )
}

/// Reads the announced bytes, chunking and enqueueing as they come; returns the chunk count.
async fn receive(
    conn: &mut Conn,
    state: &MasterState,
    submission: &Submission,
) -> Result<u32, HandlerError> {
    let spec = &submission.spec;
    let overlap = spec
        .patterns
        .iter()
        .map(|p| p.sequence.len())
        .max()
        .unwrap_or(1)
        .saturating_sub(1);
    let mut chunker = Chunker::new(spec.chunk_size as usize, overlap).plain_name(&spec.filename);
    let mut received = 0u64;
    let mut chunks = 0u32;
    let mut ready: Vec<SequenceChunk> = Vec::new();
    let mut enqueuer = Enqueuer::start(state);
    while received < spec.file_size {
        let frame = conn.read_data().await.map_err(|err| {
            HandlerError::fatal(
                ErrorCode::UploadIncomplete,
                format!(
                    "upload ended after {received} of {} bytes: {err}",
                    spec.file_size
                ),
            )
        })?;
        received += frame.len() as u64;
        if received > spec.file_size {
            return Err(HandlerError::fatal(
                ErrorCode::BadFrame,
                format!(
                    "upload carries more than the announced {} bytes",
                    spec.file_size
                ),
            ));
        }
        chunker
            .push(&frame, &mut |chunk| ready.push(chunk))
            .map_err(|err| bad_input(&spec.filename, err))?;
        chunks += enqueuer.send(to_tasks(submission, &mut ready)).await?;
    }
    let records = chunker
        .finish(&mut |chunk| ready.push(chunk))
        .map_err(|err| bad_input(&spec.filename, err))?;
    chunks += enqueuer.send(to_tasks(submission, &mut ready)).await?;
    enqueuer.finish().await?;
    let mut final_spec = spec.clone();
    final_spec.records = records;
    let value = serde_json::to_value(&final_spec)
        .map_err(|e| HandlerError::fatal(ErrorCode::Internal, format!("job spec: {e}")))?;
    state
        .store
        .update_job_spec(&submission.job_id, &value)
        .await?;
    state.store.accept_job(&submission.job_id, chunks).await?;
    tracing::info!(component = "master", job = %submission.job_id, chunks, bytes = received, "job accepted");
    Ok(chunks)
}

fn bad_input(filename: &str, err: crate::search::InputError) -> HandlerError {
    HandlerError::fatal(ErrorCode::BadInput, format!("{filename}: {err}"))
}

/// Turns the chunks cut so far into tasks.
fn to_tasks(submission: &Submission, ready: &mut Vec<SequenceChunk>) -> Vec<NewTask> {
    let patterns: &[Pattern] = &submission.spec.patterns;
    let options: SearchOptions = submission.spec.options;
    ready
        .drain(..)
        .map(|chunk| NewTask {
            id: TaskId {
                job: submission.job_id.clone(),
                chunk: chunk.index,
            },
            priority: submission.priority,
            spec: serde_json::to_value(SearchTaskSpec::for_chunk(&chunk, patterns, options))
                .unwrap_or(serde_json::Value::Null),
            data: bytes::Bytes::from(chunk.bases),
        })
        .collect()
}

/// Batches of tasks in flight to the queue, so reading and chunking the next frames overlaps
/// with storing the previous ones. The channel is small: memory stays bounded, and a slow
/// backend slows the upload (TCP backpressure) instead of piling up chunks.
struct Enqueuer {
    batches: Option<tokio::sync::mpsc::Sender<Vec<NewTask>>>,
    task: tokio::task::JoinHandle<Result<(), crate::backend::BackendError>>,
}

impl Enqueuer {
    fn start(state: &MasterState) -> Self {
        let (batches, mut receiver) = tokio::sync::mpsc::channel::<Vec<NewTask>>(2);
        let queue = state.queue.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = receiver.recv().await {
                queue.enqueue(batch).await?;
            }
            Ok(())
        });
        Self {
            batches: Some(batches),
            task,
        }
    }

    /// Queues a batch for storing; returns its size. Fails if storing an earlier batch failed.
    async fn send(&mut self, tasks: Vec<NewTask>) -> Result<u32, HandlerError> {
        if tasks.is_empty() {
            return Ok(0);
        }
        let count = tasks.len() as u32;
        let sent = match &self.batches {
            Some(batches) => batches.send(tasks).await.is_ok(),
            None => false,
        };
        if !sent {
            // The storing task stopped early: its error says why.
            self.batches = None;
            return Err(self.wait().await.err().unwrap_or_else(|| {
                HandlerError::fatal(ErrorCode::Internal, "task storing stopped")
            }));
        }
        Ok(count)
    }

    /// Waits until every batch is stored.
    async fn finish(mut self) -> Result<(), HandlerError> {
        self.batches = None;
        self.wait().await
    }

    async fn wait(&mut self) -> Result<(), HandlerError> {
        match (&mut self.task).await {
            Ok(result) => result.map_err(HandlerError::from),
            Err(join) => Err(HandlerError::fatal(
                ErrorCode::Internal,
                format!("task storing failed: {join}"),
            )),
        }
    }
}

impl Drop for Enqueuer {
    fn drop(&mut self) {
        // An abandoned upload stops storing its remaining batches.
        self.task.abort();
    }
}

/// Fails a job whose upload broke off and removes its queued tasks.
async fn abandon(state: &MasterState, job_id: &str, err: &HandlerError) {
    let reason = match err {
        HandlerError::Refused { message, .. } | HandlerError::Fatal { message, .. } => {
            message.clone()
        }
        HandlerError::Protocol(err) => err.to_string(),
        HandlerError::Backend(err) => err.to_string(),
    };
    let _ = state.queue.cancel_job(job_id).await;
    let _ = state
        .store
        .set_status(
            job_id,
            JobStatus::Failed,
            Some(&format!("upload failed: {reason}")),
        )
        .await;
    tracing::warn!(component = "master", job = %job_id, %reason, "upload abandoned");
}

/// Marks a job as uploading on this connection for as long as the guard lives.
struct UploadGuard<'a> {
    state: &'a MasterState,
    job_id: String,
}

impl<'a> UploadGuard<'a> {
    fn register(state: &'a MasterState, job_id: &str) -> Self {
        let mut uploads = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.insert(job_id.to_string());
        Self {
            state,
            job_id: job_id.to_string(),
        }
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        let mut uploads = self.state.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.remove(&self.job_id);
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
