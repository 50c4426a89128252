//! The master's job operations, one function each, under its three doors: the protocol
//! handlers (`cmd/`), the HTTP API (`http/`) and the drop directory parse a request, call a
//! function here and render its answer or its [`JobError`] in their own terms (an error frame, a
//! status code, a `.error` file). A domain step such as "find the job and check that its results
//! can be read" is written once, so the doors cannot disagree about it.
//!
//! Creating jobs from a batch: every job's spec is checked by its kind before any job is
//! created, so a bad batch creates nothing; then each job is created, cut into tasks, queued and
//! accepted, in order. An id that exists already is reported and left alone: the ids are the
//! batch's task ids, so loading a file again (or after a master restart) runs nothing twice.

use std::time::Instant;

use thiserror::Error;

use super::{job_view, no_results_yet, MasterState};
use crate::backend::{
    short_summary, BackendError, CreateOutcome, JobRecord, JobStatus, NewTask, Priority, TaskId,
};
use crate::backend::{AnswerCopy, GenomeRecord, StoredKind};
use crate::jobs::batch::{valid_job_id, Batch, JobMeta};
use crate::jobs::command::{InputFile, COMMAND_KIND};
use crate::jobs::{self, Kind, SubmitLimits, TaskSource};
use crate::protocol::ErrorCode;
use crate::protocol::{BatchJob, BatchJobAccepted, InputArrival, JobView};

/// Why a job operation was refused or failed; each door renders it its own way.
#[derive(Debug, Error)]
pub enum JobError {
    /// The job id is unknown.
    #[error("no job with id {0:?} (list jobs with `gridwatch jobs`)")]
    NoSuchJob(String),
    /// The job exists but is not in a state the operation needs (not finished, already over).
    #[error("{0}")]
    NotReady(String),
    /// The request itself is wrong (a bad spec, an id out of rule, a kind that uploads).
    #[error("{0}")]
    Invalid(String),
    /// A job kind refused the spec, with its own reason code (work over the caps, say).
    #[error("{0}")]
    Refused(crate::jobs::Refusal),
    /// The client is over one of its rate limits.
    #[error("{0}")]
    RateLimited(String),
    /// The backend failed; the request may be retried.
    #[error(transparent)]
    Backend(BackendError),
}

impl From<BackendError> for JobError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::NoSuchJob(id) => JobError::NoSuchJob(id),
            other => JobError::Backend(other),
        }
    }
}

/// The job with id `id`.
pub async fn find(state: &MasterState, id: &str) -> Result<JobRecord, JobError> {
    state
        .store
        .job(id)
        .await?
        .ok_or_else(|| JobError::NoSuchJob(id.to_string()))
}

/// A job as `status` shows it: progress from stored results, how its input arrived, and why it
/// waits when the master can tell.
pub async fn status(state: &MasterState, id: &str) -> Result<JobView, JobError> {
    let job = find(state, id).await?;
    // How the input arrived, which listings (built without specs) leave out.
    let cached_from = job.spec.get("cached_from").and_then(|v| v.as_str());
    let mut input = InputArrival {
        uploaded_bytes: job.spec.get("uploaded_bytes").and_then(|v| v.as_u64()),
        genome_reused: job.spec.get("genome_reused").and_then(|v| v.as_bool()),
        cached: None,
        cached_from: cached_from.map(str::to_string),
    };
    if input != InputArrival::default() {
        input.cached = Some(cached_from.is_some());
    }
    let cpus = job.spec.get("cpus").and_then(|v| v.as_u64()).unwrap_or(1);
    let mut view = job_view(state.store.as_ref(), job).await?;
    if input != InputArrival::default() {
        view.input = Some(Box::new(input));
    }
    if view.kind == COMMAND_KIND && !view.status.is_finished() {
        view.error = view.error.or(no_command_worker(state, cpus).await);
    }
    Ok(view)
}

/// Why a command job whose tasks take `cpus` slots waits, when the master can tell: no live
/// worker runs command tasks, or none has that many slots. Workers that lease through the master
/// tell it; with Redis, workers lease without the master, and the backend keeps the record.
async fn no_command_worker(state: &MasterState, cpus: u64) -> Option<String> {
    let widest = match state.queue.command_slots_live(RECENT_LEASE).await {
        Ok(Some(widest)) => widest,
        Ok(None) => state.workers.widest_command_worker(),
        Err(_) => return None,
    };
    if widest == 0 {
        return Some(
            "waiting: no live worker runs command tasks; start one with --allow-commands \
             (or --allow-command PROGRAM)"
                .to_string(),
        );
    }
    (u64::from(widest) < cpus).then(|| {
        format!(
            "waiting: each task takes {cpus} slots (--cpus) but no live worker that runs command \
             tasks has more than {widest}; start one with --threads {cpus} or more"
        )
    })
}

/// How recently a worker must have leased to count as live, for a backend that sees leases.
const RECENT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The job with id `id` if its results can be read (see [`results_readable`]).
pub async fn with_results(
    state: &MasterState,
    id: &str,
    what: &str,
) -> Result<JobRecord, JobError> {
    let job = find(state, id).await?;
    results_readable(state, job, what).await
}

/// `job` back if its results can be read: it completed, or it is a command job that failed,
/// whose results (which tasks failed, their exit and stderr) are its answer. `what` names what
/// was asked for in the refusal ("results", "image").
pub async fn results_readable(
    state: &MasterState,
    job: JobRecord,
    what: &str,
) -> Result<JobRecord, JobError> {
    let failed_commands = job.status == JobStatus::Failed && job.kind == COMMAND_KIND;
    if job.status == JobStatus::Completed || failed_commands {
        return Ok(job);
    }
    let id = job.id.clone();
    let view = job_view(state.store.as_ref(), job).await?;
    Err(JobError::NotReady(format!(
        "{} ({}/{} chunks done)",
        no_results_yet(&id, view.status, view.error.as_deref(), what),
        view.progress.processed_chunks,
        view.progress.total_chunks
    )))
}

/// Cancels a job: from here on its results are refused, and its queued tasks are removed;
/// returns how many were. A finished job is left alone (cancelling twice is not an error).
pub async fn cancel(state: &MasterState, id: &str) -> Result<usize, JobError> {
    let job = find(state, id).await?;
    if job.status.is_finished() && job.status != JobStatus::Cancelled {
        return Err(JobError::NotReady(
            format!("job {id} already {:?}; nothing to cancel", job.status).to_lowercase(),
        ));
    }
    // Status first: from here on, results of this job are refused, then queued tasks go.
    state
        .store
        .set_status(id, JobStatus::Cancelled, None)
        .await?;
    let removed = state.queue.cancel_job(id).await?;
    tracing::info!(component = "master", job = %id, removed, "job cancelled");
    Ok(removed)
}

/// Answers a job checked by its kind but not created yet from the result cache: when a
/// completed job has its result key and the job does not ask to run anyway (`no_cache`), the job
/// is created complete, holding a copy of that job's results, and no task is queued; returns its
/// task count. `None`: the job must run. A cache the backend cannot read is a miss, not a
/// failure: the job then runs.
pub async fn answer_from_cache(
    state: &MasterState,
    record: &JobRecord,
) -> Result<Option<u32>, JobError> {
    let no_cache = record.spec.get("no_cache").and_then(|v| v.as_bool());
    let key = match jobs::kind(&record.kind) {
        Some(kind) if no_cache != Some(true) => kind.result_key(&record.spec),
        _ => None,
    };
    let Some(key) = key else {
        return Ok(None);
    };
    let source = match state.store.cached_answer(&key).await {
        Ok(Some(source)) if source.kind == record.kind => source,
        Ok(_) => return Ok(None),
        Err(err) => {
            tracing::warn!(component = "master", job = %record.id, error = %err, "result cache unreadable; running the job");
            return Ok(None);
        }
    };
    let now = crate::time::unix_now();
    let job = JobRecord {
        id: record.id.clone(),
        kind: record.kind.clone(),
        spec: answered_spec(&source, record),
        summary: source.summary.clone(),
        priority: record.priority,
        status: JobStatus::Completed,
        total_chunks: source.total_chunks,
        error: None,
        created_at: now,
        finished_at: Some(now),
    };
    match state.store.copy_answer(&key, &source.id, &job).await? {
        AnswerCopy::Copied => {
            tracing::info!(component = "master", job = %job.id, source = %source.id, "answered from the result cache: no task ran");
            Ok(Some(source.total_chunks))
        }
        AnswerCopy::IdTaken => Err(JobError::NotReady(format!(
            "job {} was created meanwhile by another submit; query its status",
            job.id
        ))),
        AnswerCopy::SourceGone => Ok(None),
    }
}

/// The spec of a job answered by `source`: the source's (its input's records and everything the
/// answer was computed from), naming the source, with nothing uploaded (its input is one stored
/// earlier), and with the new job's own queue priority and metadata.
fn answered_spec(source: &JobRecord, record: &JobRecord) -> serde_json::Value {
    let mut spec = source.spec.clone();
    if let Some(fields) = spec.as_object_mut() {
        fields.insert("cached_from".into(), source.id.clone().into());
        fields.insert("uploaded_bytes".into(), 0.into());
        fields.insert("genome_reused".into(), true.into());
        fields.remove("no_cache");
        match record.spec.get(JobMeta::KEY) {
            Some(meta) => fields.insert(JobMeta::KEY.into(), meta.clone()),
            None => fields.remove(JobMeta::KEY),
        };
    }
    spec
}

/// Records a job whose input is known to be what its spec names (a search's genome hash was
/// computed by the master or found stored) under its result key, so it answers identical later
/// jobs once it completes. A record that cannot be written costs only later cache hits.
pub async fn remember_answer(
    state: &MasterState,
    job_id: &str,
    kind: &dyn Kind,
    spec: &serde_json::Value,
) {
    let Some(key) = kind.result_key(spec) else {
        return;
    };
    if let Err(err) = state.store.remember_answer(&key, job_id).await {
        tracing::warn!(component = "master", job = %job_id, error = %err, "could not record the job in the result cache");
    }
}

/// Counts `jobs` jobs and `tasks` queued tasks against `client`'s rate limits, or refuses the
/// whole request naming the flag that raises the limit it passes.
pub fn admit(state: &MasterState, client: &str, jobs: u64, tasks: u64) -> Result<(), JobError> {
    state
        .rate_limiter
        .admit(client, super::Load { jobs, tasks }, Instant::now())
        .map_err(|refusal| JobError::RateLimited(refusal.to_string()))
}

/// The tasks a job whose tasks follow from its spec alone will queue (1 for a kind that uploads
/// its input, or a spec that does not plan).
pub fn planned_tasks(kind: &dyn Kind, spec: &serde_json::Value) -> u64 {
    match kind.tasks(spec) {
        Ok(TaskSource::Planned(planned)) => planned.len().max(1) as u64,
        _ => 1,
    }
}

/// The jobs of a batch parsed on the master (a dropped file, an HTTP body), where no client is
/// there to upload a search's sequence file: such a task is refused, with `instead` (the command
/// to use) in the reason.
pub fn jobs_without_upload(parsed: Batch, instead: &str) -> Result<Vec<BatchJob>, JobError> {
    if let Some(search) = parsed.tasks.iter().find(|task| task.upload.is_some()) {
        return Err(JobError::Invalid(format!(
            "{}: search tasks upload a sequence file; {instead}",
            search.location
        )));
    }
    if let Some(command) = parsed.tasks.iter().find(|task| !task.inputs.is_empty()) {
        return Err(JobError::Invalid(format!(
            "{}: command inputs are files uploaded with the job; {instead}",
            command.location
        )));
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

/// A job checked by its kind, ready to create.
struct Checked {
    job: BatchJob,
    kind: &'static dyn Kind,
    spec: serde_json::Value,
}

/// Checks every job, counts them and their tasks against `client`'s rate limits (the drop
/// directory, the operator's own, passes no client), then creates those that do not exist yet;
/// returns what became of each.
pub async fn create_batch(
    state: &MasterState,
    source: &str,
    jobs: Vec<BatchJob>,
    client: Option<&str>,
) -> Result<Vec<BatchJobAccepted>, JobError> {
    let checked = check(state, source, jobs)?;
    if let Some(client) = client {
        let tasks = checked
            .iter()
            .map(|job| planned_tasks(job.kind, &job.spec))
            .sum();
        admit(state, client, checked.len() as u64, tasks)?;
    }
    let mut outcomes = Vec::with_capacity(checked.len());
    let mut checked = checked.into_iter().peekable();
    while checked.peek().is_some() {
        let group: Vec<Checked> = checked.by_ref().take(CREATE_GROUP).collect();
        outcomes.extend(create_group(state, group).await?);
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

fn check(state: &MasterState, source: &str, jobs: Vec<BatchJob>) -> Result<Vec<Checked>, JobError> {
    let limits = submit_limits(state);
    let refuse = |job: &BatchJob, message: String| {
        JobError::Invalid(format!(
            "{source}: job {:?}: {message}; nothing was loaded",
            job.job_id
        ))
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

/// The master's limits on what a submission may ask, as the kinds check them.
pub fn submit_limits(state: &MasterState) -> SubmitLimits {
    SubmitLimits {
        max_upload: state.config.max_upload,
        max_frame: state.config.max_frame,
        default_chunk_size: state.config.chunk_size,
        work: state.config.work_caps,
        max_positions: state.config.max_positions,
    }
}

/// Jobs created, queued and accepted together: each backend step takes the whole group at once
/// (one commit each on SQLite), so a file of 100,000 jobs costs a few hundred commits, not
/// several per job. Memory stays bounded by the group, whatever the file's size.
const CREATE_GROUP: usize = 1000;
/// Tasks held before they are queued, for groups of jobs with many tasks each.
const ENQUEUE_GROUP: usize = 20_000;

/// Creates a group of checked jobs, then queues the tasks of those that are new and accepts
/// them. A stop between the steps leaves jobs marked uploading, which a restart plans again.
async fn create_group(
    state: &MasterState,
    group: Vec<Checked>,
) -> Result<Vec<BatchJobAccepted>, JobError> {
    for Checked { job, kind, spec } in &group {
        use_inputs(state, kind.name(), &job.job_id, spec).await?;
    }
    let records: Vec<JobRecord> = group
        .iter()
        .map(|Checked { job, kind, spec }| JobRecord {
            id: job.job_id.clone(),
            kind: kind.name().to_string(),
            summary: short_summary(&kind.summary(spec)),
            priority: job.priority,
            spec: spec.clone(),
            status: JobStatus::Uploading,
            total_chunks: 0,
            error: None,
            created_at: crate::time::unix_now(),
            finished_at: None,
        })
        .collect();
    let created = state.store.create_jobs(&records).await?;
    let mut outcomes = Vec::with_capacity(records.len());
    let mut tasks = Vec::new();
    let mut accepted = Vec::new();
    for (record, outcome) in records.iter().zip(created) {
        if let CreateOutcome::Exists(existing) = outcome {
            outcomes.push(BatchJobAccepted {
                job_id: existing.id,
                kind: existing.kind,
                total_chunks: existing.total_chunks,
                existing: true,
            });
            continue;
        }
        let planned = plan(record, record.priority)?;
        let total_chunks = planned.len() as u32;
        tasks.extend(planned);
        if tasks.len() >= ENQUEUE_GROUP {
            // Queued before their jobs are accepted, as an upload's tasks are.
            state.queue.enqueue(std::mem::take(&mut tasks)).await?;
        }
        accepted.push((record.id.clone(), total_chunks));
        outcomes.push(BatchJobAccepted {
            job_id: record.id.clone(),
            kind: record.kind.clone(),
            total_chunks,
            existing: false,
        });
    }
    state.queue.enqueue(tasks).await?;
    state.store.accept_jobs(&accepted).await?;
    Ok(outcomes)
}

/// Cuts a created job whose tasks follow from its spec alone into tasks, queues them and accepts
/// the job; returns the task count. Queueing twice is harmless: a task's result is stored once.
pub async fn plan_and_accept(
    state: &MasterState,
    record: &JobRecord,
    priority: Priority,
) -> Result<u32, JobError> {
    let tasks = plan(record, priority)?;
    let total = tasks.len() as u32;
    state.queue.enqueue(tasks).await?;
    state.store.accept_job(&record.id, total).await?;
    Ok(total)
}

/// The tasks of a job whose tasks follow from its spec alone.
fn plan(record: &JobRecord, priority: Priority) -> Result<Vec<NewTask>, JobError> {
    let kind = jobs::require(&record.kind).map_err(|e| JobError::Invalid(e.to_string()))?;
    let planned = match kind.tasks(&record.spec) {
        Ok(TaskSource::Planned(planned)) => planned,
        Ok(_) => {
            return Err(JobError::Invalid(format!(
                "job {}: {} jobs upload their input; submit them with `gridwatch submit` or \
                 `gridwatch load`",
                record.id,
                kind.name()
            )))
        }
        Err(refusal) => return Err(JobError::Refused(refusal)),
    };
    Ok(planned
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
        .collect())
}

/// Refuses an upload the data directory has no room for (with a little left over for the
/// database), before a byte of it is stored. A backend that keeps no files here skips the check.
pub fn check_room(state: &MasterState, upload_bytes: u64) -> Result<(), JobError> {
    const DATABASE_HEADROOM: u64 = 1024 * 1024;
    let Some(dir) = state.spool_dir.as_deref() else {
        return Ok(());
    };
    let Some(free) = super::disk::free_bytes(dir) else {
        return Ok(());
    };
    let need = upload_bytes.saturating_add(DATABASE_HEADROOM);
    if need > free {
        return Err(JobError::Refused(crate::jobs::Refusal::new(
            ErrorCode::UploadTooLarge,
            format!(
                "the upload needs about {need} bytes of disk but the master's data directory has \
                 {free} bytes free; free some space on the master or submit a smaller input"
            ),
        )));
    }
    Ok(())
}

/// Whether a stored object can serve as the input `hash` of `size` bytes.
pub fn check_stored_input(stored: &GenomeRecord, hash: &str, size: u64) -> Result<(), JobError> {
    if stored.kind != StoredKind::Input {
        return Err(JobError::Invalid(format!(
            "the master holds this file ({hash}) as a genome for searches, decoded, not as \
                 a command input; remove it with `gridwatch genomes rm {hash}` to use it as one"
        )));
    }
    if stored.size_bytes != size {
        return Err(JobError::Invalid(format!(
            "the stored input {hash} has {} bytes, not the {size} announced",
            stored.size_bytes
        )));
    }
    Ok(())
}

/// Checks that every input a command job names is stored, as an input of its size, and marks
/// the job as using each; other kinds pass.
pub async fn use_inputs(
    state: &MasterState,
    kind: &str,
    job_id: &str,
    spec: &serde_json::Value,
) -> Result<(), JobError> {
    if kind != COMMAND_KIND {
        return Ok(());
    }
    let Some(listed) = spec.get("inputs") else {
        return Ok(());
    };
    let inputs: Vec<InputFile> = serde_json::from_value(listed.clone())
        .map_err(|e| JobError::Invalid(format!("command inputs: {e}")))?;
    if inputs.is_empty() {
        return Ok(());
    }
    let store = state.genome_store()?;
    for input in &inputs {
        match store.use_genome(&input.hash, job_id).await? {
            Some(stored) => check_stored_input(&stored, &input.hash, input.size)?,
            None => {
                return Err(JobError::Invalid(format!(
                    "input {:?} ({}) is not stored on the master: inputs are uploaded by \
                         `gridwatch submit command --input FILE` or `gridwatch load`",
                    input.name, input.hash
                )))
            }
        }
    }
    Ok(())
}

/// Stores a file the master itself reads (a drop directory's input) as the input `name` of
/// `job_id`, unless an input with its hash is stored already: hashed first, then, if needed,
/// read again into the store and kept only if its hash did not change meanwhile.
pub async fn store_file(
    state: &MasterState,
    job_id: &str,
    name: &str,
    file: std::fs::File,
) -> Result<InputFile, JobError> {
    use std::io::{Read, Seek};
    let max = state.config.max_input;
    let (hash, size, file) = tokio::task::spawn_blocking(move || {
        let mut file = file;
        let mut hasher = blake3::Hasher::new();
        // Bounded: the file may grow after its size was checked.
        let size = std::io::copy(&mut (&mut file).take(max.saturating_add(1)), &mut hasher)?;
        file.rewind()?;
        Ok::<_, std::io::Error>((hasher.finalize().to_hex().to_string(), size, file))
    })
    .await
    .map_err(|e| JobError::Invalid(format!("hashing {name}: {e}")))?
    .map_err(|e| JobError::Invalid(format!("reading {name}: {e}")))?;
    if size > max {
        return Err(JobError::Refused(crate::jobs::Refusal::new(
            ErrorCode::UploadTooLarge,
            format!("{name}: over the master's input limit of {max} bytes (--max-input-size)"),
        )));
    }
    let input = InputFile {
        name: name.to_string(),
        hash: hash.clone(),
        size,
    };
    let store = state.genome_store()?;
    if let Some(stored) = store.use_genome(&hash, job_id).await? {
        check_stored_input(&stored, &hash, size)?;
        return Ok(input);
    }
    check_room(state, size)?;
    let mut writer = store.begin_genome(StoredKind::Input).await?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut read_total = 0u64;
    loop {
        use tokio::io::AsyncReadExt;
        let read = match file.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) => {
                writer.discard().await;
                return Err(JobError::Invalid(format!("reading {name}: {err}")));
            }
        };
        read_total += read as u64;
        if read_total > size {
            break;
        }
        hasher.update(&buffer[..read]);
        if let Err(err) = writer
            .append(bytes::Bytes::copy_from_slice(&buffer[..read]))
            .await
        {
            writer.discard().await;
            return Err(JobError::Backend(err));
        }
    }
    if read_total != size || hasher.finalize().to_hex().as_str() != hash {
        writer.discard().await;
        return Err(JobError::Invalid(format!(
            "{name} changed while it was read; drop the batch file again"
        )));
    }
    let now = crate::time::unix_now();
    let record = GenomeRecord {
        kind: StoredKind::Input,
        hash,
        storage: String::new(),
        size_bytes: size,
        bases: size,
        records: serde_json::Value::Null,
        filename: name.to_string(),
        created_at: now,
        last_used: now,
        jobs: 0,
    };
    writer.commit(&record, job_id).await?;
    tracing::info!(component = "master", job = %job_id, input = %record.hash, bytes = size, "input stored from the drop directory");
    Ok(input)
}
