//! `gridwatch status`, `results`, `cancel` and `jobs`: one request each to the master, printed
//! for people or, with `--json`, for scripts.

use std::io::Write;
use std::time::Duration;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use super::format::{write_report, OutputFormat, SearchReport};
use super::progress::JobProgress;
use crate::backend::JobStatus;
use crate::jobs::search::{assemble_report, SearchJobSpec};
use crate::protocol::{JobView, Message};

/// How often `--wait` asks for progress.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// `gridwatch status JOB`.
#[derive(Clone, Debug, clap::Args)]
pub struct StatusArgs {
    /// The job id.
    pub job: String,
    /// Keep watching (progress bar) until the job finishes.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// `gridwatch results JOB`.
#[derive(Clone, Debug, clap::Args)]
pub struct ResultsArgs {
    /// The job id.
    pub job: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Count)]
    pub format: OutputFormat,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// `gridwatch cancel JOB`.
#[derive(Clone, Debug, clap::Args)]
pub struct CancelArgs {
    /// The job id.
    pub job: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// `gridwatch jobs`.
#[derive(Clone, Debug, clap::Args)]
pub struct JobsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// Asks for one job's state.
pub async fn query_status(
    client: &mut MasterClient,
    job: &str,
) -> Result<(JobView, u32), ClientError> {
    let message = Message::QueryStatus {
        job_id: job.to_string(),
    };
    match client.request(&message).await? {
        Message::JobStatus {
            job,
            active_workers,
        } => Ok((job, active_workers)),
        other => Err(unexpected(&other)),
    }
}

/// Polls until the job finishes, drawing progress; returns its final state.
pub async fn wait_for(
    client: &mut MasterClient,
    job: &str,
    progress: &mut JobProgress,
) -> Result<JobView, ClientError> {
    wait_for_every(client, job, progress, POLL_INTERVAL).await
}

/// `wait_for` with a chosen polling interval (benchmarks poll faster).
pub async fn wait_for_every(
    client: &mut MasterClient,
    job: &str,
    progress: &mut JobProgress,
    interval: Duration,
) -> Result<JobView, ClientError> {
    loop {
        let (view, active) = query_status(client, job).await?;
        progress.update(&view, active);
        if view.status.is_finished() {
            progress.finish();
            return Ok(view);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Fetches a completed job's results as a report.
pub async fn fetch_report(
    client: &mut MasterClient,
    job: &str,
) -> Result<SearchReport, ClientError> {
    let message = Message::GetResults {
        job_id: job.to_string(),
    };
    let (spec, chunks) = match client.request(&message).await? {
        Message::ResultsHeader { spec, chunks, .. } => (spec, chunks),
        other => return Err(unexpected(&other)),
    };
    let spec: SearchJobSpec = serde_json::from_value(spec)
        .map_err(|e| ClientError::JobFailed(format!("job {job} is not a search job: {e}")))?;
    let mut results = Vec::with_capacity(chunks as usize);
    for _ in 0..chunks {
        match client.reply().await? {
            Message::ResultChunk { result } => results.push(result),
            other => return Err(unexpected(&other)),
        }
    }
    assemble_report(&spec, &results)
        .map_err(|e| ClientError::JobFailed(format!("job {job}: unreadable chunk result: {e}")))
}

/// Prints a job's state the way seed 000 §10.1 shows it.
pub fn print_status(view: &JobView, active_workers: u32, json: bool) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({ "job": view, "active_workers": active_workers });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(out, "Job ID: {}", view.job_id)?;
    writeln!(out, "Job Status: {}", status_word(view.status))?;
    writeln!(
        out,
        "Progress: {}/{} chunks ({:.2}%)",
        view.progress.processed_chunks, view.progress.total_chunks, view.progress.percentage
    )?;
    writeln!(
        out,
        "Matches found so far: {}",
        view.partial_results.matches_found
    )?;
    writeln!(out, "Active workers: {active_workers}")?;
    if let Some(finished) = view.finished_at {
        writeln!(
            out,
            "Processing time: {:.1} seconds",
            finished - view.created_at
        )?;
    }
    if let Some(error) = &view.error {
        writeln!(out, "Error: {error}")?;
    }
    Ok(())
}

/// Upper-case status, as the seed prints it.
pub fn status_word(status: JobStatus) -> String {
    format!("{status:?}").to_uppercase()
}

/// Runs `gridwatch status`.
pub async fn status(args: StatusArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    let (mut view, mut active) = query_status(&mut client, &args.job).await?;
    if args.wait && !view.status.is_finished() {
        let mut progress = JobProgress::new(!args.json, None);
        view = wait_for(&mut client, &args.job, &mut progress).await?;
        active = query_status(&mut client, &args.job).await?.1;
    }
    print_status(&view, active, args.json)
}

/// Runs `gridwatch results`.
pub async fn results(args: ResultsArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    print_results(&mut client, &args.job, args.format, args.json).await
}

/// Fetches a finished job's results and prints them to stdout (`json` overrides `format`).
pub async fn print_results(
    client: &mut MasterClient,
    job_id: &str,
    format: OutputFormat,
    json: bool,
) -> Result<(), ClientError> {
    let report = fetch_report(client, job_id).await?;
    let format = if json { OutputFormat::Json } else { format };
    write_report(
        format,
        &report,
        std::io::BufWriter::new(std::io::stdout().lock()),
    )?;
    Ok(())
}

/// Runs `gridwatch cancel`.
pub async fn cancel(args: CancelArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    let message = Message::Cancel {
        job_id: args.job.clone(),
    };
    let removed = match client.request(&message).await? {
        Message::Cancelled { removed_tasks, .. } => removed_tasks,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "job_id": args.job, "status": "cancelled", "removed_tasks": removed })
        );
    } else {
        println!(
            "Cancelled job {} ({removed} queued tasks removed)",
            args.job
        );
    }
    Ok(())
}

/// Runs `gridwatch jobs`.
pub async fn jobs(args: JobsArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    let (jobs, active) = match client.request(&Message::ListJobs).await? {
        Message::Jobs {
            jobs,
            active_workers,
        } => (jobs, active_workers),
        other => return Err(unexpected(&other)),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({ "jobs": jobs, "active_workers": active });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<38} {:<11} {:>17} {:>10}",
        "JOB", "STATUS", "CHUNKS", "MATCHES"
    )?;
    for job in &jobs {
        let chunks = format!(
            "{}/{}",
            job.progress.processed_chunks, job.progress.total_chunks
        );
        writeln!(
            out,
            "{:<38} {:<11} {:>17} {:>10}",
            job.job_id,
            status_word(job.status),
            chunks,
            job.partial_results.matches_found
        )?;
    }
    writeln!(out, "{} jobs, {active} active workers", jobs.len())?;
    Ok(())
}
