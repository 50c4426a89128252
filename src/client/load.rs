//! `gridwatch load FILE`: loads a batch task file (CSV of Julia renders, or JSON of particle
//! simulations, Julia renders and searches). The whole file is checked here before anything is
//! sent, and the master checks every job again before creating any. Jobs that need no upload go
//! in `submit_batch` messages of bounded size; a search task uploads its sequence file, whose path
//! is relative to the batch file. Task ids are job ids, so loading a file twice creates nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use super::progress::JobProgress;
use super::query::{wait_for_every, POLL_INTERVAL};
use super::submit::{send_job, JobRequest};
use gridwatch::backend::{JobStatus, Priority};
use gridwatch::jobs::batch::{self, BatchTask};
use gridwatch::protocol::{BatchJob, BatchJobAccepted, Message};

/// Most encoded bytes of jobs in one `submit_batch` message: well inside the frame limit.
const BATCH_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// `gridwatch load FILE`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// A batch file: CSV (`algoritmo,width,height,iteraciones,prioridad`) or JSON (`metadata` and
    /// `tasks`).
    pub file: PathBuf,
    /// Wait until every job of the file has finished.
    #[arg(long)]
    pub wait: bool,
    /// Print the jobs as JSON.
    #[arg(long)]
    pub json: bool,
    /// Largest batch file to read, in bytes (the master refuses larger batches by its own
    /// --max-batch-file, the same default).
    #[arg(long, env = "GRIDWATCH_MAX_BATCH_FILE", default_value_t = batch::MAX_FILE_BYTES)]
    pub max_batch_file: u64,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// One loaded job, as printed.
#[derive(Clone, Debug, Serialize)]
pub struct LoadedJob {
    /// The job id (the task's id).
    pub job_id: String,
    /// The job kind.
    pub kind: String,
    /// The algorithm as the file named it.
    pub algorithm: String,
    /// Queue priority.
    pub priority: Priority,
    /// Tasks the job was cut into.
    pub total_chunks: u32,
    /// True if the job existed already (nothing created).
    pub existing: bool,
    /// The job's final status, with `--wait`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

/// Runs `gridwatch load`.
pub async fn load(args: LoadArgs) -> Result<(), ClientError> {
    let bytes = read_bounded(&args.file, args.max_batch_file)?;
    let mut parsed = batch::parse(&bytes).map_err(|e| {
        ClientError::Usage(format!("{}: {e}; nothing was loaded", args.file.display()))
    })?;
    let base = args.file.parent().unwrap_or(Path::new("."));
    let mut client = MasterClient::connect(&args.master).await?;
    for task in parsed.tasks.iter_mut().filter(|t| !t.inputs.is_empty()) {
        let paths: Vec<PathBuf> = task.inputs.iter().map(|p| base.join(p)).collect();
        let stored = super::inputs::upload_inputs(&mut client, &task.task_id, &paths)
            .await
            .map_err(|e| match e {
                ClientError::Usage(e) => ClientError::Usage(format!(
                    "{}: {}.parameters, field \"inputs\" (paths are relative to the batch file): {e}; \
                     nothing was loaded",
                    args.file.display(),
                    task.location
                )),
                other => other,
            })?;
        if let Some(fields) = task.submission.as_object_mut() {
            fields.insert(
                "inputs".into(),
                serde_json::to_value(stored).unwrap_or_default(),
            );
        }
    }
    let uploads = resolve_uploads(&args.file, base, &parsed.tasks)?;
    let source = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut loaded = Vec::with_capacity(parsed.tasks.len());
    let planned: Vec<&BatchTask> = parsed.tasks.iter().filter(|t| t.upload.is_none()).collect();
    for group in message_groups(&planned) {
        let jobs = group.iter().map(|task| batch_job(task)).collect();
        let message = Message::SubmitBatch {
            source: source.clone(),
            jobs,
        };
        let accepted = match client.request(&message).await? {
            Message::BatchAccepted { jobs, .. } => jobs,
            other => return Err(unexpected(&other)),
        };
        for (task, outcome) in group.iter().zip(accepted) {
            loaded.push(loaded_job(task, outcome));
        }
    }
    for (task, path) in &uploads {
        let request = JobRequest {
            kind: task.kind,
            spec: task.submission.clone(),
            upload: Some(path.clone()),
            inputs: Vec::new(),
        };
        let submitted = send_job(&mut client, &task.task_id, &request, task.priority).await?;
        loaded.push(loaded_job(
            task,
            BatchJobAccepted {
                job_id: submitted.job_id,
                kind: task.kind.to_string(),
                total_chunks: submitted.total_chunks,
                existing: false,
            },
        ));
    }
    if args.wait {
        let mut progress = JobProgress::new(false, None);
        for job in &mut loaded {
            let view =
                wait_for_every(&mut client, &job.job_id, &mut progress, POLL_INTERVAL).await?;
            job.status = Some(view.status);
        }
    }
    print_loaded(&args.file, &loaded, args.json)?;
    let failed = loaded
        .iter()
        .filter(|job| job.status.is_some_and(|s| s != JobStatus::Completed))
        .count();
    if failed > 0 {
        return Err(ClientError::JobFailed(format!(
            "{failed} of {} did not complete (see `gridwatch jobs --status failed`)",
            super::count_of(loaded.len() as u64, "job")
        )));
    }
    Ok(())
}

/// Reads the file, refusing one over `limit` bytes before reading it (and one that grows past
/// it while read).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ClientError> {
    use std::io::Read;
    let failed = |e: std::io::Error| ClientError::Usage(format!("{}: {e}", path.display()));
    let too_big = |size: u64| {
        ClientError::Usage(format!(
            "{}: {size} bytes is over the batch file limit of {limit} bytes: split the file (or raise --max-batch-file here and on the master); nothing was loaded",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let size = file.metadata().map_err(failed)?.len();
    if size > limit {
        return Err(too_big(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Each search task's sequence file, relative to the batch file; all must exist before anything
/// is sent.
fn resolve_uploads<'a>(
    file: &Path,
    base: &Path,
    tasks: &'a [BatchTask],
) -> Result<Vec<(&'a BatchTask, PathBuf)>, ClientError> {
    let mut uploads = Vec::new();
    for task in tasks {
        let Some(relative) = &task.upload else {
            continue;
        };
        let path = base.join(relative);
        if !path.is_file() {
            return Err(ClientError::Usage(format!(
                "{}: {}.parameters, field \"fasta\": {} is not a readable file (paths are relative to the batch file); nothing was loaded",
                file.display(),
                task.location,
                path.display()
            )));
        }
        uploads.push((task, path));
    }
    Ok(uploads)
}

/// Splits the tasks into groups whose encoded jobs stay under [`BATCH_MESSAGE_BYTES`].
fn message_groups<'a>(tasks: &'a [&'a BatchTask]) -> Vec<&'a [&'a BatchTask]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, task) in tasks.iter().enumerate() {
        let size = task.submission.to_string().len()
            + task.task_id.len()
            + task.description.as_ref().map_or(0, String::len)
            + 128;
        if index > start && bytes + size > BATCH_MESSAGE_BYTES {
            groups.push(&tasks[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < tasks.len() {
        groups.push(&tasks[start..]);
    }
    groups
}

fn batch_job(task: &BatchTask) -> BatchJob {
    BatchJob {
        job_id: task.task_id.clone(),
        kind: task.kind.to_string(),
        spec: task.submission.clone(),
        priority: task.priority,
        algorithm: Some(task.algorithm.clone()),
        description: task.description.clone(),
    }
}

fn loaded_job(task: &BatchTask, outcome: BatchJobAccepted) -> LoadedJob {
    LoadedJob {
        job_id: outcome.job_id,
        kind: outcome.kind,
        algorithm: task.algorithm.clone(),
        priority: task.priority,
        total_chunks: outcome.total_chunks,
        existing: outcome.existing,
        status: None,
    }
}

fn print_loaded(file: &Path, jobs: &[LoadedJob], json: bool) -> Result<(), ClientError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let created = jobs.iter().filter(|job| !job.existing).count();
    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "created": created,
            "existing": jobs.len() - created,
            "jobs": jobs,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    for job in jobs {
        let status = job.status.map(|s| s.as_str()).unwrap_or(if job.existing {
            "existing"
        } else {
            "queued"
        });
        writeln!(
            out,
            "{:<40} {:<9} {:<12} {:<6} {:>6} tasks  {status}",
            job.job_id,
            job.kind,
            job.algorithm,
            format!("{:?}", job.priority).to_lowercase(),
            job.total_chunks
        )?;
    }
    writeln!(
        out,
        "Loaded {}: {} ({created} new, {} already loaded)",
        file.display(),
        super::count_of(jobs.len() as u64, "job"),
        jobs.len() - created
    )?;
    Ok(())
}
