//! `gridwatch status`, `results`, `cancel` and `jobs`: one request each to the master, printed
//! for people or, with `--json`, for scripts.

use std::io::Write;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
pub use super::fetch::{fetch_report, open_results, JobResults, ResultsStream};
pub use super::progress::counted;
use super::progress::JobProgress;
use gridwatch::backend::JobStatus;
use gridwatch::jobs::search::stream::{CountTally, StreamPrinter};
use gridwatch::jobs::search::{OutputFormat, SearchJobSpec, SEARCH_KIND};
use gridwatch::jobs::{self, Kind, ResultError};
use gridwatch::protocol::{JobView, Message, ProtocolError};

/// How often `--wait` asks for progress, at most (see [`follow`]).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The shortest pause between two progress queries of a job just submitted.
const FIRST_POLL: Duration = Duration::from_millis(4);

/// `gridwatch status JOB`.
#[derive(Clone, Debug, clap::Args)]
pub struct StatusArgs {
    /// The job id.
    #[arg(required_unless_present = "queue")]
    pub job: Option<String>,
    /// Show the queue's backlog instead of a job: tasks waiting per priority and how long the
    /// oldest has waited (what an autoscaler acts on).
    #[arg(long, conflicts_with_all = ["job", "wait"])]
    pub queue: bool,
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
    /// Output format, chosen among the job kind's formats (search: count, tsv, bed, json;
    /// julia: text, json, counts, png; particles: text, json; default: the kind's first).
    #[arg(long)]
    pub format: Option<String>,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Write the results to FILE instead of stdout. For a command job, a directory: each
    /// task's stdout and stderr are written to DIR/TASK/stdout and DIR/TASK/stderr, and the
    /// table is still printed.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the job's per-task records as JSON instead of its results: each task's id, kind,
    /// parameters, seconds spent, worker, completion time, priority and metrics. (The results
    /// themselves stay exactly what a local run of the same job prints.)
    #[arg(long, conflicts_with = "format")]
    pub tasks: bool,
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
    /// Only jobs in this status (uploading, pending, processing, completed, failed, cancelled).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<JobStatus>,
    /// Only jobs of this kind (search, julia, particles); an unknown kind is refused rather
    /// than silently matching nothing.
    #[arg(long, value_parser = known_kind)]
    pub kind: Option<String>,
    /// Only jobs of this priority.
    #[arg(long, value_enum)]
    pub priority: Option<super::job_request::PriorityArg>,
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

/// Polls every `interval` until the job finishes, drawing progress; returns its final state. A
/// master that goes away meanwhile (a restart) is reconnected to with backoff.
pub async fn wait_for_every(
    client: &mut MasterClient,
    job: &str,
    progress: &mut JobProgress,
    interval: Duration,
) -> Result<JobView, ClientError> {
    Ok(follow(client, job, progress, interval).await?.0)
}

/// Polls until the job finishes, drawing progress and reconnecting with backoff to a master
/// that went away; returns its final state and the active workers last reported. The pause
/// between queries grows with the time followed, an eighth of it, from a few milliseconds up
/// to `interval`: a job of a fraction of a second is seen to end within a few percent of its
/// time, and a long one costs the master a query every `interval`.
pub async fn follow(
    client: &mut MasterClient,
    job: &str,
    progress: &mut JobProgress,
    interval: Duration,
) -> Result<(JobView, u32), ClientError> {
    let mut lost: Option<(Instant, Duration)> = None;
    let since = Instant::now();
    loop {
        let outcome = match lost {
            Some(_) => match client.reconnect().await {
                Ok(()) => query_status_within(client, job).await,
                Err(err) => Err(err),
            },
            None => query_status_within(client, job).await,
        };
        match outcome {
            Ok((view, active)) => {
                if lost.take().is_some() {
                    eprintln!("reconnected to the master; still following job {job}");
                }
                progress.update(&view, active);
                if view.status.is_finished() {
                    progress.finish();
                    return Ok((view, active));
                }
                let pause = (since.elapsed() / 8).clamp(FIRST_POLL.min(interval), interval);
                tokio::time::sleep(pause).await;
            }
            Err(err) if err.is_transient() => {
                let (since, pause) = lost.get_or_insert_with(|| {
                    eprintln!("lost the master ({err}); reconnecting to follow job {job}");
                    (Instant::now(), RECONNECT_MIN)
                });
                if since.elapsed() >= RECONNECT_FOR {
                    progress.finish();
                    return Err(err);
                }
                tokio::time::sleep(*pause).await;
                *pause = (*pause * 2).min(RECONNECT_MAX);
            }
            Err(err) => {
                progress.finish();
                return Err(err);
            }
        }
    }
}

/// How long `--wait` keeps trying to reach a master that went away (a restart, a failing
/// backend) before it gives up; the job itself is kept by the master meanwhile.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
/// The first pause between reconnection attempts; it doubles up to `RECONNECT_MAX`.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// A status reply slower than this counts as a lost connection (a master that hangs).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// `query_status`, giving up after `STATUS_TIMEOUT`.
async fn query_status_within(
    client: &mut MasterClient,
    job: &str,
) -> Result<(JobView, u32), ClientError> {
    tokio::time::timeout(STATUS_TIMEOUT, query_status(client, job))
        .await
        .unwrap_or(Err(ClientError::Protocol(ProtocolError::Timeout(
            STATUS_TIMEOUT,
        ))))
}

/// `print_results`, reconnecting to a master that went away before anything was printed (a
/// failure once the output has begun is final, so nothing is ever printed twice).
pub async fn print_results_patiently(
    client: &mut MasterClient,
    job_id: &str,
    request: &ResultsRequest<'_>,
) -> Result<(), ClientError> {
    let started = Instant::now();
    let mut pause = RECONNECT_MIN;
    loop {
        let mut printing = false;
        match print_results_noting(client, job_id, request, &mut printing).await {
            Err(err) if err.is_transient() && !printing && started.elapsed() < RECONNECT_FOR => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
                // A failed reconnection is tried again on the next round.
                let _ = client.reconnect().await;
            }
            outcome => return outcome,
        }
    }
}

/// Checks `--kind` against the registered kinds while parsing arguments.
fn known_kind(name: &str) -> Result<String, String> {
    jobs::require(name)
        .map(|kind| kind.name().to_string())
        .map_err(|err| err.to_string())
}

/// The kind a job view names.
fn kind_of(view: &JobView) -> Result<&'static dyn Kind, ClientError> {
    jobs::require(&view.kind)
        .map_err(|e| ClientError::JobFailed(format!("job {}: {e}", view.job_id)))
}

/// The output format asked for: `--json`, else `--format`, else the kind's default.
pub fn chosen_format<'a>(kind: &'a dyn Kind, format: Option<&'a str>, json: bool) -> &'a str {
    match (json, format) {
        (true, _) => "json",
        (false, Some(asked)) => kind.format_named(asked).unwrap_or(asked),
        (false, None) => kind.formats()[0],
    }
}

/// Prints a job's state as labelled lines, one fact per line.
pub fn print_status(view: &JobView, active_workers: u32, json: bool) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({ "job": view, "active_workers": active_workers });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(out, "Job ID: {}", view.job_id)?;
    writeln!(out, "Job Kind: {}", view.kind)?;
    if !view.summary.is_empty() {
        writeln!(out, "Job: {}", view.summary)?;
    }
    writeln!(out, "Job Status: {}", status_word(view.status))?;
    writeln!(out, "Progress: {}", progress_line(view))?;
    writeln!(out, "{}", running_total(view))?;
    writeln!(out, "Active workers: {active_workers}")?;
    if let Some(finished) = view.finished_at {
        writeln!(
            out,
            "Processing time: {:.1} seconds",
            finished - view.created_at
        )?;
    }
    if let Some(source) = view.input.as_ref().and_then(|i| i.cached_from.as_deref()) {
        writeln!(
            out,
            "Answered from the result cache: a copy of job {source}'s results (no task ran)"
        )?;
    }
    if let Some(error) = &view.error {
        writeln!(out, "Error: {error}")?;
    }
    Ok(())
}

/// How far the job is. A job whose input never finished arriving has no chunk total yet (the
/// master counts chunks as they arrive): say so rather than print "60/0 chunks".
fn progress_line(view: &JobView) -> String {
    let progress = &view.progress;
    match (view.status, progress.total_chunks) {
        (JobStatus::Uploading, 0) => format!(
            "receiving the input ({} searched so far)",
            super::count_of(progress.processed_chunks.into(), "chunk")
        ),
        (JobStatus::Failed | JobStatus::Cancelled, 0) => format!(
            "the input never arrived whole ({} searched before the job ended)",
            super::count_of(progress.processed_chunks.into(), "chunk")
        ),
        _ => format!(
            "{}/{} chunks ({:.2}%)",
            progress.processed_chunks, progress.total_chunks, progress.percentage
        ),
    }
}

/// The job's running total named for what its kind counts, and said to be final, partial or
/// cut short: `Matches found so far: 219`, `Iterations: 33219980`, `Collisions before the job
/// ended: 1204`.
pub fn running_total(view: &JobView) -> String {
    let count = view.partial_results.matches_found;
    let label = match view.progress_figure.as_str() {
        "matches" => "Matches found".to_string(),
        figure => {
            let mut label = figure.to_string();
            if let Some(first) = label.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            label
        }
    };
    match view.status {
        JobStatus::Completed => format!("{label}: {count}"),
        JobStatus::Failed | JobStatus::Cancelled => {
            format!("{label} before the job ended: {count}")
        }
        _ => format!("{label} so far: {count}"),
    }
}

/// Upper-case status, so it stands out in the labelled lines.
pub fn status_word(status: JobStatus) -> String {
    format!("{status:?}").to_uppercase()
}

/// Runs `gridwatch status`.
pub async fn status(args: StatusArgs) -> Result<(), ClientError> {
    let job = match (&args.job, args.queue) {
        (Some(job), false) => job.clone(),
        _ => return super::backlog::print_queue(&args.master, args.json).await,
    };
    let mut client = if args.wait {
        connect_patiently(&args.master).await?
    } else {
        MasterClient::connect(&args.master).await?
    };
    let (view, active) = if args.wait {
        let mut progress = JobProgress::new(!args.json, None);
        follow(&mut client, &job, &mut progress, POLL_INTERVAL).await?
    } else {
        query_status(&mut client, &job).await?
    };
    print_status(&view, active, args.json)
}

/// Connects for a command that waits on a job: a master that drops the connection during the
/// handshake (it is restarting) is tried again for as long as a lost master is followed, so
/// `status --wait` started during a restart waits instead of failing. A master that was never
/// reached fails at once, as a mistyped address should.
async fn connect_patiently(master: &MasterAddr) -> Result<MasterClient, ClientError> {
    let started = Instant::now();
    let mut pause = RECONNECT_MIN;
    let mut reached = false;
    loop {
        match MasterClient::connect(master).await {
            Err(err)
                if err.is_transient()
                    && (reached || !matches!(err, ClientError::Unreachable { .. }))
                    && started.elapsed() < RECONNECT_FOR =>
            {
                reached = true;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
            }
            outcome => return outcome,
        }
    }
}

/// Runs `gridwatch results`.
pub async fn results(args: ResultsArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    let request = ResultsRequest {
        format: args.format.as_deref(),
        json: args.json,
        out: args.out.as_deref(),
        with_job_id: false,
        tasks: args.tasks,
    };
    print_results(&mut client, &args.job, &request).await
}

/// How a job's results are to be printed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResultsRequest<'a> {
    /// One of the kind's formats; its default when `None`.
    pub format: Option<&'a str>,
    /// JSON, whatever `format` says.
    pub json: bool,
    /// A file to write instead of stdout (for a command job, a directory to write each task's
    /// stdout and stderr into, the table still printed).
    pub out: Option<&'a Path>,
    /// Adds the job id to JSON output (`submit --wait --json`, whose caller never saw the id).
    pub with_job_id: bool,
    /// Prints the per-task records instead of the results.
    pub tasks: bool,
}

/// Fetches a finished job's results and prints them with the job's kind.
pub async fn print_results(
    client: &mut MasterClient,
    job_id: &str,
    request: &ResultsRequest<'_>,
) -> Result<(), ClientError> {
    print_results_noting(client, job_id, request, &mut false).await
}

/// [`print_results`], setting `printing` once output has begun.
async fn print_results_noting(
    client: &mut MasterClient,
    job_id: &str,
    request: &ResultsRequest<'_>,
    printing: &mut bool,
) -> Result<(), ClientError> {
    let (view, spec, mut stream) = open_results(client, job_id).await?;
    let kind = kind_of(&view)?;
    let format = chosen_format(kind, request.format, request.json);
    if !request.tasks {
        kind.check_format(format)
            .map_err(|e| ClientError::Usage(e.to_string()))?;
    }
    if view.kind == SEARCH_KIND && !request.tasks {
        let tag = request.with_job_id.then_some(job_id);
        return print_search_streamed(stream, spec, format, tag, request.out, printing).await;
    }
    let mut results = Vec::new();
    if request.tasks {
        // The records need no payloads: each is dropped as it is read.
        while let Some((result, _text)) = stream.next_text().await? {
            results.push(result);
        }
    } else {
        while let Some(result) = stream.next_result().await? {
            results.push(result);
        }
    }
    let fetched = JobResults {
        job: view,
        spec,
        results,
    };
    let job = jobs::JobContext::of_view(&fetched.job);
    let tag = request.with_job_id.then_some(job_id);
    let mut request = *request;
    if fetched.job.kind == jobs::command::COMMAND_KIND && !request.tasks {
        if let Some(dir) = request.out.take() {
            super::command::write_task_files(dir, &fetched.results)?;
        }
    }
    let render = |out: &mut dyn Write| match (request.tasks, format, tag) {
        (true, _, _) => render_tasks(&fetched, out),
        (false, "json", Some(job_id)) => render_tagged(kind, &job, &fetched, job_id, out),
        _ => kind.render(&job, &fetched.spec, &fetched.results, format, out),
    };
    *printing = true;
    let mut out = open_output(request.out)?;
    let rendered = render(&mut out).and_then(|()| out.flush().map_err(ResultError::from));
    rendered.map_err(|err| result_error(job_id, err))
}

/// Where results go: `--out FILE`, or stdout; buffered either way.
fn open_output(path: Option<&Path>) -> Result<Box<dyn Write + Send>, ClientError> {
    const BUFFER: usize = 1 << 16;
    Ok(match path {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                ClientError::Usage(format!("{}: cannot create: {e}", path.display()))
            })?;
            Box::new(std::io::BufWriter::with_capacity(BUFFER, file))
        }
        None => Box::new(std::io::BufWriter::with_capacity(BUFFER, std::io::stdout())),
    })
}

/// A failure to print a job's results, as the client reports it.
fn result_error(job_id: &str, err: ResultError) -> ClientError {
    match err {
        ResultError::UnknownFormat { .. } => ClientError::Usage(err.to_string()),
        ResultError::Corrupt(reason) => ClientError::JobFailed(format!("job {job_id}: {reason}")),
        ResultError::Io(io) => ClientError::Output(io),
    }
}

/// Prints a search job's results while they arrive, holding one chunk's stored results at a
/// time, never the job's positions. JSON without a job id names the counts before the hits:
/// the results are read twice then, first for the counts alone.
async fn print_search_streamed(
    mut stream: ResultsStream<'_>,
    spec: serde_json::Value,
    format: &str,
    tag: Option<&str>,
    out: Option<&Path>,
    printing: &mut bool,
) -> Result<(), ClientError> {
    let job_id = stream.job_id.clone();
    let spec = SearchJobSpec::deserialize(&spec).map_err(|e| {
        ClientError::JobFailed(format!("job {job_id}: unreadable search job spec: {e}"))
    })?;
    let format = OutputFormat::from_name(format)
        .ok_or_else(|| ClientError::Usage(format!("unknown search format {format:?}")))?;
    let counted = match (format, tag) {
        (OutputFormat::Json, None) => {
            let mut tally = CountTally::new(spec.patterns.len());
            while let Some((result, text)) = stream.next_text().await? {
                tally.add_stored(&text).map_err(|e| {
                    ClientError::JobFailed(format!(
                        "job {job_id}: the stored result of task {} is unreadable: {e}",
                        result.chunk
                    ))
                })?;
            }
            let client = stream.client;
            stream = open_results(client, &job_id).await?.2;
            Some(tally)
        }
        _ => None,
    };
    *printing = true;
    let output = open_output(out)?;
    let mut printer = match tag {
        Some(tag) if format == OutputFormat::Json => StreamPrinter::tagged_json(spec, tag, output),
        _ => StreamPrinter::new(spec, format, counted, output),
    }
    .map_err(|err| result_error(&job_id, err))?;
    while let Some((result, text)) = stream.next_text().await? {
        printer
            .push(result.chunk, text)
            .map_err(|err| result_error(&job_id, err))?;
    }
    let mut output = printer.finish().map_err(|err| result_error(&job_id, err))?;
    output.flush().map_err(ClientError::Output)
}

/// The kind's JSON results with `"job_id"` added (or, for JSON that is not an object, as
/// `{"job_id", "results"}`).
fn render_tagged(
    kind: &dyn Kind,
    job: &jobs::JobContext,
    fetched: &JobResults,
    job_id: &str,
    out: &mut dyn Write,
) -> Result<(), ResultError> {
    let mut rendered = Vec::new();
    kind.render(job, &fetched.spec, &fetched.results, "json", &mut rendered)?;
    let results: serde_json::Value = serde_json::from_slice(&rendered)
        .map_err(|e| ResultError::Corrupt(format!("JSON results: {e}")))?;
    let tagged = match results {
        serde_json::Value::Object(mut fields) => {
            fields.insert("job_id".into(), job_id.into());
            serde_json::Value::Object(fields)
        }
        other => serde_json::json!({ "job_id": job_id, "results": other }),
    };
    serde_json::to_writer_pretty(&mut *out, &tagged).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `{"job_id", "tasks": [...]}`: the job's per-task records, by chunk.
fn render_tasks(fetched: &JobResults, out: &mut dyn Write) -> Result<(), ResultError> {
    let priority = fetched.job.priority.unwrap_or_default();
    let tasks: Vec<jobs::records::TaskRecord> = fetched
        .results
        .iter()
        .map(|r| {
            jobs::records::TaskRecord::new(
                &fetched.job.job_id,
                r.chunk,
                &r.worker,
                priority,
                &r.run,
            )
        })
        .collect();
    let records = serde_json::json!({ "job_id": fetched.job.job_id, "tasks": tasks });
    serde_json::to_writer_pretty(&mut *out, &records).map_err(std::io::Error::from)?;
    writeln!(out)?;
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
            "Cancelled job {} ({} removed)",
            args.job,
            super::count_of(removed.into(), "queued task")
        );
    }
    Ok(())
}

/// Reads a `--status` word.
fn parse_status(word: &str) -> Result<JobStatus, String> {
    JobStatus::from_word(word).ok_or_else(|| {
        let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status {word:?} (one of {})", known.join(", "))
    })
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
    let priority = args.priority.map(gridwatch::backend::Priority::from);
    let jobs: Vec<JobView> = jobs
        .into_iter()
        .filter(|job| args.status.map_or(true, |status| job.status == status))
        .filter(|job| args.kind.as_deref().map_or(true, |kind| job.kind == kind))
        .filter(|job| priority.map_or(true, |p| job.priority == Some(p)))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({ "jobs": jobs, "active_workers": active });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<38} {:<9} {:<11} {:>17} {:>22}  SUMMARY",
        "JOB", "KIND", "STATUS", "CHUNKS", "COUNT"
    )?;
    for job in &jobs {
        let chunks = format!(
            "{}/{}",
            job.progress.processed_chunks, job.progress.total_chunks
        );
        writeln!(
            out,
            "{:<38} {:<9} {:<11} {:>17} {:>22}  {}",
            job.job_id,
            job.kind,
            status_word(job.status),
            chunks,
            counted(job),
            job.summary
        )?;
    }
    writeln!(
        out,
        "{}, {}",
        super::count_of(jobs.len() as u64, "job"),
        super::count_of(active.into(), "active worker")
    )?;
    Ok(())
}
