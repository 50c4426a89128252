//! `submit_batch`: the jobs of one batch file. Every job's spec is checked by its kind before any
//! job is created, so a bad file creates nothing; then each job is created, cut into tasks,
//! queued and accepted, in file order. An id that exists already is reported and left alone: the
//! ids are the file's task ids, so loading a file again (or after a master restart) runs nothing
//! twice. The drop directory loads files through [`create_batch`] too.

use std::time::Instant;

use super::{Conn, HandlerError, Session};
use crate::backend::{short_summary, CreateOutcome, JobRecord, JobStatus, NewTask, TaskId};
use crate::jobs::batch::{valid_job_id, JobMeta};
use crate::jobs::{self, Kind, SubmitLimits, TaskSource};
use crate::master::MasterState;
use crate::protocol::{BatchJob, BatchJobAccepted, ErrorCode, Message};

/// Answers `submit_batch`. Every message counts each of its jobs and their tasks against the
/// client's rate limits (a large file comes in several messages, each counted).
pub async fn apply(
    conn: &mut Conn,
    state: &MasterState,
    session: &mut Session,
    source: String,
    jobs: Vec<BatchJob>,
) -> Result<(), HandlerError> {
    let max = state.config.max_batch_tasks;
    if jobs.len() > max {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!(
                "{source}: {} jobs in one message, more than the master's --max-batch-tasks of {max}; split the file",
                jobs.len()
            ),
        ));
    }
    let client = session.peer.ip().to_string();
    let jobs = create_batch(state, &source, jobs, Some(&client)).await?;
    conn.write_message(&Message::BatchAccepted {
        jobs,
        active_workers: state.active_workers().await,
    })
    .await?;
    Ok(())
}

/// Counts `jobs` jobs and `tasks` queued tasks against `client`'s rate limits, or refuses the
/// whole request naming the flag that raises the limit it passes.
pub fn admit(state: &MasterState, client: &str, jobs: u64, tasks: u64) -> Result<(), HandlerError> {
    state
        .rate_limiter
        .admit(client, crate::master::Load { jobs, tasks }, Instant::now())
        .map_err(|refusal| HandlerError::refused(ErrorCode::RateLimited, refusal.to_string()))
}

/// The tasks a job whose tasks follow from its spec alone will queue (1 for a kind that uploads
/// its input, or a spec that does not plan).
pub fn planned_tasks(kind: &dyn Kind, spec: &serde_json::Value) -> u64 {
    match kind.tasks(spec) {
        Ok(TaskSource::Planned(planned)) => planned.len().max(1) as u64,
        _ => 1,
    }
}

/// A job checked by its kind, ready to create.
struct Checked {
    job: BatchJob,
    kind: &'static dyn Kind,
    spec: serde_json::Value,
}

/// The jobs of a batch parsed on the master (a dropped file, an HTTP body), where no client is
/// there to upload a search's sequence file: such a task is refused, with `instead` (the command
/// to use) in the reason.
pub fn jobs_without_upload(
    parsed: crate::jobs::batch::Batch,
    instead: &str,
) -> Result<Vec<BatchJob>, String> {
    if let Some(search) = parsed.tasks.iter().find(|task| task.upload.is_some()) {
        return Err(format!(
            "{}: search tasks upload a sequence file; {instead}",
            search.location
        ));
    }
    Ok(parsed
        .tasks
        .into_iter()
        .map(|task| BatchJob {
            job_id: task.task_id,
            kind: task.kind.to_string(),
            spec: task.submission,
            priority: task.priority,
            algorithm: Some(task.algorithm),
            description: task.description,
        })
        .collect())
}

/// Checks every job, counts them and their tasks against `client`'s rate limits (the drop
/// directory, the operator's own, passes no client), then creates those that do not exist yet;
/// returns what became of each.
pub async fn create_batch(
    state: &MasterState,
    source: &str,
    jobs: Vec<BatchJob>,
    client: Option<&str>,
) -> Result<Vec<BatchJobAccepted>, HandlerError> {
    let checked = check(state, source, jobs)?;
    if let Some(client) = client {
        let tasks = checked
            .iter()
            .map(|job| planned_tasks(job.kind, &job.spec))
            .sum();
        admit(state, client, checked.len() as u64, tasks)?;
    }
    let mut outcomes = Vec::with_capacity(checked.len());
    for job in checked {
        outcomes.push(create(state, job).await?);
    }
    let created = outcomes.iter().filter(|o| !o.existing).count();
    tracing::info!(
        component = "master",
        source,
        jobs = outcomes.len(),
        created,
        "batch loaded"
    );
    Ok(outcomes)
}

fn check(
    state: &MasterState,
    source: &str,
    jobs: Vec<BatchJob>,
) -> Result<Vec<Checked>, HandlerError> {
    let limits = SubmitLimits {
        max_upload: state.config.max_upload,
        max_frame: state.config.max_frame,
        default_chunk_size: state.config.chunk_size,
        work: state.config.work_caps,
        max_positions: state.config.max_positions,
    };
    let refuse = |job: &BatchJob, message: String| {
        HandlerError::refused(
            ErrorCode::BadMessage,
            format!(
                "{source}: job {:?}: {message}; nothing was loaded",
                job.job_id
            ),
        )
    };
    let mut checked = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !valid_job_id(&job.job_id) {
            return Err(refuse(
                &job,
                format!(
                    "use 1-{} letters, digits, '-', '_', '.' or ':' in a job id",
                    jobs::MAX_JOB_ID_LEN
                ),
            ));
        }
        let kind = jobs::require(&job.kind).map_err(|e| refuse(&job, e.to_string()))?;
        let mut spec = kind
            .accept(job.spec.clone(), None, &limits)
            .map_err(|e| refuse(&job, e.message))?;
        JobMeta {
            priority: job.priority,
            algorithm: job.algorithm.clone(),
            description: job.description.clone(),
            source: Some(source.to_string()),
        }
        .attach(&mut spec);
        checked.push(Checked { job, kind, spec });
    }
    Ok(checked)
}

async fn create(state: &MasterState, checked: Checked) -> Result<BatchJobAccepted, HandlerError> {
    let Checked { job, kind, spec } = checked;
    let record = JobRecord {
        id: job.job_id.clone(),
        kind: kind.name().to_string(),
        summary: short_summary(&kind.summary(&spec)),
        priority: job.priority,
        spec,
        status: JobStatus::Uploading,
        total_chunks: 0,
        error: None,
        created_at: crate::time::unix_now(),
        finished_at: None,
    };
    if let CreateOutcome::Exists(existing) = state.store.create_job(&record).await? {
        return Ok(BatchJobAccepted {
            job_id: existing.id,
            kind: existing.kind,
            total_chunks: existing.total_chunks,
            existing: true,
        });
    }
    let total_chunks = plan_and_accept(state, &record, job.priority).await?;
    Ok(BatchJobAccepted {
        job_id: job.job_id,
        kind: kind.name().to_string(),
        total_chunks,
        existing: false,
    })
}

/// Cuts a created job whose tasks follow from its spec alone into tasks, queues them and accepts
/// the job; returns the task count. Queueing twice is harmless: a task's result is stored once.
pub async fn plan_and_accept(
    state: &MasterState,
    record: &JobRecord,
    priority: crate::backend::Priority,
) -> Result<u32, HandlerError> {
    let kind = jobs::require(&record.kind)
        .map_err(|e| HandlerError::refused(ErrorCode::BadMessage, e.to_string()))?;
    let TaskSource::Planned(planned) = kind.tasks(&record.spec)? else {
        return Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!(
                "job {}: {} jobs upload their input; submit them with `gridwatch submit` or `gridwatch load`",
                record.id,
                kind.name()
            ),
        ));
    };
    let tasks: Vec<NewTask> = planned
        .into_iter()
        .map(|task| NewTask {
            id: TaskId {
                job: record.id.clone(),
                chunk: task.chunk,
            },
            kind: kind.name().to_string(),
            priority,
            max_matches: kind.max_matches(&task.spec, task.data.len()),
            slots: kind.slots(&task.spec),
            spec: task.spec,
            data: task.data,
        })
        .collect();
    let total = tasks.len() as u32;
    state.queue.enqueue(tasks).await?;
    state.store.accept_job(&record.id, total).await?;
    Ok(total)
}
