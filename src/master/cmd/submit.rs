//! `submit_job`: the job's kind checks its spec, the job is created, then its tasks are cut. A
//! kind that uploads its input (search) gets `ready`, and the upload is streamed through the
//! kind's cutter, each task enqueued as soon as it is cut; `accepted` after the last byte, and
//! neither side holds the whole file. A kind whose tasks follow from its spec alone is enqueued
//! and accepted at once. A job whose tasks are not all queued is failed and its queued tasks
//! removed: it is never half-accepted.
//!
//! A search names its genome by hash: when the backend holds that genome, its tasks are planned
//! from the stored sequence and nothing is uploaded; otherwise its decoded bases are stored once
//! as they come and its tasks refer to their range of that copy, each queued once its range is
//! readable (see `genome_intake`). A kind that keeps no decoded input, or a backend that stores
//! no genomes, queues tasks that carry their own bytes.

mod genome_intake;

use genome_intake::{keep_genome, reuse_genome, GenomeIntake, Intake};

use super::{Conn, HandlerError, Session};
use crate::backend::genome::GenomeRef;
use crate::backend::{
    short_summary, BackendError, CreateOutcome, JobRecord, JobStatus, NewTask, Priority, TaskId,
};
use crate::jobs::{self, DecodedSink, InputCutter, Kind, PlannedTask, Refusal, TaskSource};
use crate::master::MasterState;
use crate::protocol::{ErrorCode, Message};

/// A checked `submit_job`.
struct Submission {
    job_id: String,
    kind: &'static dyn Kind,
    spec: serde_json::Value,
    file_size: Option<u64>,
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
    crate::master::jobs::use_inputs(state, submission.kind.name(), &job_id, &submission.spec)
        .await?;
    let restart = match existing_job(state, &job_id).await? {
        Existing::New => false,
        Existing::Interrupted => true,
        Existing::Reply(done) => {
            conn.write_message(&done).await?;
            return Ok(());
        }
    };
    let tasks = match submission.file_size {
        // An upload's task count is known once it is cut; its size gives it within a chunk.
        Some(size) => size.div_ceil(state.config.chunk_size).max(1),
        None => crate::master::jobs::planned_tasks(submission.kind, &submission.spec),
    };
    crate::master::jobs::admit(state, &session.peer.ip().to_string(), 1, tasks)?;
    let record = JobRecord {
        id: job_id.clone(),
        kind: submission.kind.name().into(),
        spec: submission.spec.clone(),
        summary: short_summary(&submission.kind.summary(&submission.spec)),
        priority: submission.priority,
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: crate::time::unix_now(),
        finished_at: None,
    };
    // An interrupted upload's id is taken by its failed record: such a retry runs.
    let cached = match restart {
        true => None,
        false => crate::master::jobs::answer_from_cache(state, &record).await?,
    };
    if let Some(total_chunks) = cached {
        return accepted(conn, state, job_id, (total_chunks, None)).await;
    }
    if restart {
        restart_upload(state, &record).await?;
    } else if let CreateOutcome::Exists(_) = state.store.create_job(&record).await? {
        // Created by a concurrent retry between our look and our insert.
        return Err(in_progress(&job_id));
    }
    let _guard = UploadGuard::register(state, &job_id);
    match enqueue_tasks(conn, state, &submission).await {
        Ok(total_chunks) => accepted(conn, state, job_id, total_chunks).await,
        Err(err) => {
            abandon(state, &job_id, &err).await;
            Err(err)
        }
    }
}

/// Tells the client its job is accepted (its tasks queued, or answered from the cache), with
/// the hash of the genome it reads when there is one.
async fn accepted(
    conn: &mut Conn,
    state: &MasterState,
    job_id: String,
    (total_chunks, genome_hash): (u32, Option<String>),
) -> Result<(), HandlerError> {
    conn.write_message(&Message::Accepted {
        job_id,
        total_chunks,
        active_workers: state.active_workers().await,
        existing: false,
        genome_hash,
    })
    .await?;
    Ok(())
}

/// Checks the job id, then lets the job's kind check its spec, before anything is stored.
fn validate(state: &MasterState, message: Message) -> Result<Submission, HandlerError> {
    let submitted = message.submitted_spec();
    let (
        Message::SubmitJob {
            job_id,
            kind,
            file_size,
            priority,
            ..
        },
        Some(submitted),
    ) = (message, submitted)
    else {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            "expected submit_job",
        ));
    };
    if !jobs::batch::valid_job_id(&job_id) {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!(
                "job id {:?}{}: use 1-{} letters, digits, '-', '_', '.' or ':'",
                job_id
                    .chars()
                    .take(jobs::MAX_JOB_ID_LEN)
                    .collect::<String>(),
                if job_id.len() > jobs::MAX_JOB_ID_LEN {
                    "..."
                } else {
                    ""
                },
                jobs::MAX_JOB_ID_LEN
            ),
        ));
    }
    let kind = jobs::require(&kind)
        .map_err(|err| HandlerError::refused(ErrorCode::BadMessage, err.to_string()))?;
    let limits = crate::master::jobs::submit_limits(state);
    let mut spec = kind.accept(submitted, file_size, &limits)?;
    job_meta(priority).attach(&mut spec);
    Ok(Submission {
        job_id,
        kind,
        spec,
        file_size,
        priority,
    })
}

/// What is stored beside the kind's spec: the queue priority.
fn job_meta(priority: Priority) -> crate::jobs::batch::JobMeta {
    crate::jobs::batch::JobMeta {
        priority,
        ..Default::default()
    }
}

/// What a submitted id already names.
enum Existing {
    /// Nothing: a new job.
    New,
    /// A job whose upload was cut off (the master stopped, the client went away): it is
    /// restarted from scratch under the same id.
    Interrupted,
    /// An accepted job: this reply, instead of taking the upload again.
    Reply(Message),
}

/// For a retried id: whether it is new, an interrupted upload to restart, or an accepted job.
async fn existing_job(state: &MasterState, job_id: &str) -> Result<Existing, HandlerError> {
    let Some(job) = state.store.job(job_id).await? else {
        return Ok(Existing::New);
    };
    let uploading_here = state
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(job_id);
    if uploading_here {
        return Err(in_progress(job_id));
    }
    if job.status == JobStatus::Uploading {
        // Only this master uploads to its own store, so an upload begun before it started was
        // cut off; on a shared store another master may still be streaming it.
        let orphan = state.spool_dir.is_some() && job.created_at < state.started_at;
        return if orphan {
            Ok(Existing::Interrupted)
        } else {
            Err(in_progress(job_id))
        };
    }
    if job.total_chunks == 0 && job.status == JobStatus::Failed {
        return Ok(Existing::Interrupted);
    }
    Ok(Existing::Reply(Message::Accepted {
        job_id: job_id.to_string(),
        total_chunks: job.total_chunks,
        active_workers: state.active_workers().await,
        existing: true,
        genome_hash: None,
    }))
}

/// Replaces an interrupted upload's job by the new record, or refuses with what to do.
async fn restart_upload(state: &MasterState, record: &JobRecord) -> Result<(), HandlerError> {
    let job_id = &record.id;
    match state.store.restart_upload(record).await {
        Ok(true) => {
            tracing::info!(component = "master", job = %job_id, "restarting an interrupted upload");
            Ok(())
        }
        // Restarted (or accepted) by a concurrent retry between our look and our replace.
        Ok(false) => Err(in_progress(job_id)),
        Err(BackendError::Other(reason)) => Err(HandlerError::refused(
            ErrorCode::UploadIncomplete,
            format!("job {job_id}'s earlier upload did not complete and {reason}; submit again under a new job id"),
        )),
        Err(err) => Err(err.into()),
    }
}

fn in_progress(job_id: &str) -> HandlerError {
    HandlerError::refused(
        ErrorCode::JobNotReady,
        format!("job {job_id} is being uploaded on another connection; query its status instead"),
    )
}

/// Cuts the job into tasks and queues them all, then accepts the job; returns the task count
/// and the hash of the genome the job reads, if any.
async fn enqueue_tasks(
    conn: &mut Conn,
    state: &MasterState,
    submission: &Submission,
) -> Result<(u32, Option<String>), HandlerError> {
    let mut enqueuer = Enqueuer::start(state);
    // Whether the input is known to be what the spec's genome hash names: found stored, or
    // hashed by the master as it came. Only such a job may answer later ones from the cache.
    let (chunks, spec, input_known) = match submission.kind.tasks(&submission.spec)? {
        TaskSource::Upload(mut cutter) => {
            if let Some((chunks, spec)) = reuse_genome(state, submission, &mut enqueuer).await? {
                (chunks, spec, true)
            } else {
                let upload = submission.file_size.unwrap_or(0);
                // One copy of the input is stored: the genome, or the tasks' own bytes.
                super::check_free_space(state, upload)?;
                let sink = DecodedSink::default();
                let intake = match cutter.keep_decoded(sink.clone()) {
                    true => GenomeIntake::start(state, cutter.as_mut()).await,
                    false => None,
                };
                conn.write_message(&Message::Ready {
                    job_id: submission.job_id.clone(),
                })
                .await?;
                let upload = Upload {
                    cutter,
                    sink,
                    intake,
                };
                receive(conn, state, submission, upload, &mut enqueuer).await?
            }
        }
        TaskSource::Planned(tasks) => {
            let chunks = enqueuer.send(to_tasks(submission, tasks)).await?;
            (chunks, submission.spec.clone(), false)
        }
    };
    enqueuer
        .finish()
        .await
        .map_err(|err| name_full_disk(err, false))?;
    let mut spec = spec;
    job_meta(submission.priority).attach(&mut spec);
    if spec != submission.spec {
        state
            .store
            .update_job_spec(&submission.job_id, &spec)
            .await?;
    }
    if input_known {
        crate::master::jobs::remember_answer(state, &submission.job_id, submission.kind, &spec)
            .await;
    }
    state.store.accept_job(&submission.job_id, chunks).await?;
    tracing::info!(component = "master", job = %submission.job_id, kind = submission.kind.name(), chunks, "job accepted");
    let genome_hash = spec
        .get("genome_hash")
        .and_then(|hash| hash.as_str())
        .map(str::to_string);
    Ok((chunks, genome_hash))
}

/// An upload on its way in: the kind's cutter, and for a kept genome the decoded bases it cuts
/// and the task that hashes the bytes and stores the bases.
struct Upload {
    cutter: Box<dyn InputCutter>,
    sink: DecodedSink,
    intake: Option<GenomeIntake>,
}

impl Upload {
    /// Passes the bases cut since the last call on to the genome store.
    async fn store_decoded(&mut self) -> Result<(), HandlerError> {
        let pieces = std::mem::take(&mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(intake) = &mut self.intake {
            for piece in pieces {
                intake.send(Intake::Bases(piece)).await?;
            }
        }
        Ok(())
    }

    /// The tasks just cut that may be queued now: all of them, or for a kept genome those whose
    /// range is readable.
    fn ready(&mut self, tasks: Vec<NewTask>) -> Vec<NewTask> {
        match &mut self.intake {
            Some(intake) => intake.hold(tasks),
            None => tasks,
        }
    }
}

/// Reads the announced bytes, cutting and enqueueing tasks as they come; returns the task count,
/// the job spec completed by the cutter (and, for a kept genome, by its hash) and whether that
/// hash is the master's own. A failed upload drops what it stored of the genome before the reply
/// goes out.
async fn receive(
    conn: &mut Conn,
    state: &MasterState,
    submission: &Submission,
    mut upload: Upload,
    enqueuer: &mut Enqueuer,
) -> Result<(u32, serde_json::Value, bool), HandlerError> {
    let received = receive_frames(conn, state, submission, &mut upload, enqueuer).await;
    match (received, upload.intake.take()) {
        (Ok((chunks, spec, bytes)), Some(intake)) => {
            let spec = keep_genome(submission, intake, spec, bytes, enqueuer).await?;
            Ok((chunks, spec, true))
        }
        (Ok((chunks, spec, _)), None) => Ok((chunks, spec, false)),
        (Err(err), intake) => {
            if let Some(intake) = intake {
                intake.abandon().await;
            }
            Err(err)
        }
    }
}

/// The upload's frames through the cutter; returns the task count, the completed spec and the
/// bytes received.
async fn receive_frames(
    conn: &mut Conn,
    state: &MasterState,
    submission: &Submission,
    upload: &mut Upload,
    enqueuer: &mut Enqueuer,
) -> Result<(u32, serde_json::Value, u64), HandlerError> {
    let file_size = submission.file_size.unwrap_or(0);
    let mut received = 0u64;
    let mut chunks = 0u32;
    let mut ready: Vec<PlannedTask> = Vec::new();
    while received < file_size {
        let frame = conn.read_data().await.map_err(|err| {
            HandlerError::fatal(
                ErrorCode::UploadIncomplete,
                format!("upload ended after {received} of {file_size} bytes: {err}"),
            )
        })?;
        received += frame.len() as u64;
        state
            .ops
            .upload_bytes
            .fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if received > file_size {
            return Err(HandlerError::fatal(
                ErrorCode::BadFrame,
                format!("upload carries more than the announced {file_size} bytes"),
            ));
        }
        upload
            .cutter
            .push(&frame, &mut |task| ready.push(task))
            .map_err(fatal)?;
        if let Some(intake) = &mut upload.intake {
            intake.send(Intake::Raw(frame)).await.map_err(mid_upload)?;
        }
        upload.store_decoded().await.map_err(mid_upload)?;
        let cut = to_tasks(submission, ready.drain(..));
        chunks += cut.len() as u32;
        let now = upload.ready(cut);
        enqueuer.send(now).await.map_err(mid_upload)?;
    }
    let cutter = std::mem::replace(&mut upload.cutter, Box::new(Finished));
    let spec = cutter.finish(&mut |task| ready.push(task)).map_err(fatal)?;
    upload.store_decoded().await.map_err(mid_upload)?;
    let cut = to_tasks(submission, ready.drain(..));
    chunks += cut.len() as u32;
    let now = upload.ready(cut);
    enqueuer.send(now).await.map_err(mid_upload)?;
    tracing::debug!(component = "master", job = %submission.job_id, bytes = received, "upload received");
    Ok((chunks, spec, received))
}

/// Stands in for a cutter after its `finish`.
struct Finished;

impl InputCutter for Finished {
    fn push(&mut self, _: &[u8], _: &mut dyn FnMut(PlannedTask)) -> Result<(), Refusal> {
        Ok(())
    }
    fn finish(
        self: Box<Self>,
        _: &mut dyn FnMut(PlannedTask),
    ) -> Result<serde_json::Value, Refusal> {
        Ok(serde_json::Value::Null)
    }
}

/// A refusal in mid-upload: the connection is out of step and closes.
fn fatal(refusal: Refusal) -> HandlerError {
    HandlerError::fatal(refusal.code, refusal.message)
}

/// A failure to store tasks or the genome in mid-upload: the rest of the upload is still on its
/// way, so the connection closes after the reply. A full disk is named as such.
fn mid_upload(err: HandlerError) -> HandlerError {
    name_full_disk(err, true)
}

/// Names a full disk as such, whichever write found it (the database or a spool file); `fatal`
/// closes the connection after the reply, for when upload frames may still be on their way.
fn name_full_disk(err: HandlerError, fatal: bool) -> HandlerError {
    let HandlerError::Backend(err) = err else {
        return err;
    };
    let message = err.to_string();
    let message = if message.contains("No space left on device") {
        format!("the master's disk filled up during the upload ({message}); the job failed: free some space on the master and submit again")
    } else {
        message
    };
    if fatal {
        HandlerError::fatal(ErrorCode::Internal, message)
    } else {
        HandlerError::refused(ErrorCode::Internal, message)
    }
}

/// Turns planned tasks into queue entries of this job.
fn to_tasks(
    submission: &Submission,
    planned: impl IntoIterator<Item = PlannedTask>,
) -> Vec<NewTask> {
    planned
        .into_iter()
        .map(|task| NewTask {
            id: TaskId {
                job: submission.job_id.clone(),
                chunk: task.chunk,
            },
            kind: submission.kind.name().to_string(),
            priority: submission.priority,
            // A task reading a stored genome carries no bytes: its bound follows its range.
            max_matches: submission.kind.max_matches(
                &task.spec,
                GenomeRef::from_spec(&task.spec)
                    .map_or(task.data.len(), |range| range.len as usize),
            ),
            slots: submission.kind.slots(&task.spec),
            spec: task.spec,
            data: task.data,
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
        HandlerError::Refused { message, .. }
        | HandlerError::Fatal { message, .. }
        | HandlerError::ResultRefused { message, .. } => message.clone(),
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
