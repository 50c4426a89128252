//! `gridwatch submit FILE --pattern P…`: streams the file to the master as binary frames after a
//! `submit_job` header (a client-chosen job id makes a retried submit idempotent), then with
//! `--wait` shows progress and prints the results.

use std::path::PathBuf;

use tokio::io::AsyncReadExt;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use super::format::OutputFormat;
use super::progress::JobProgress;
use super::query::{print_results, print_status, query_status, wait_for};
use crate::backend::{JobStatus, Priority};
use crate::protocol::Message;
use crate::search::{Pattern, PatternSet, SearchOptions, StrandMode};

/// Bytes per upload frame: large enough for few syscalls, far below the frame limit.
const UPLOAD_FRAME: usize = 1024 * 1024;

/// `gridwatch submit` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct SubmitArgs {
    /// FASTA or plain sequence file (optionally gzip-compressed).
    pub file: PathBuf,
    /// Pattern to find (repeat for several); A C G T and IUPAC codes.
    #[arg(long = "pattern", short = 'p', required = true)]
    pub patterns: Vec<String>,
    /// Search the reverse complement too.
    #[arg(long, value_enum, default_value_t = StrandArg::Forward)]
    pub strand: StrandArg,
    /// Lowercase (soft-masked) bases do not match uppercase pattern letters.
    #[arg(long)]
    pub case_sensitive: bool,
    /// Bases per chunk task (the master's default when absent).
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Job id (default: a new UUID); resubmitting the same id does not run the job twice.
    #[arg(long)]
    pub job_id: Option<String>,
    /// Queue priority.
    #[arg(long, value_enum, default_value_t = PriorityArg::Medium)]
    pub priority: PriorityArg,
    /// Wait for the job to finish and print its results.
    #[arg(long)]
    pub wait: bool,
    /// Output format of the results printed with --wait.
    #[arg(long, value_enum, default_value_t = OutputFormat::Count)]
    pub format: OutputFormat,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// `--strand` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StrandArg {
    /// The patterns as written.
    Forward,
    /// The patterns and their reverse complements.
    Both,
}

impl From<StrandArg> for StrandMode {
    fn from(value: StrandArg) -> Self {
        match value {
            StrandArg::Forward => StrandMode::Forward,
            StrandArg::Both => StrandMode::Both,
        }
    }
}

/// `--priority` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PriorityArg {
    /// Served first.
    High,
    /// The default.
    Medium,
    /// Served last.
    Low,
}

impl From<PriorityArg> for Priority {
    fn from(value: PriorityArg) -> Self {
        match value {
            PriorityArg::High => Priority::High,
            PriorityArg::Medium => Priority::Medium,
            PriorityArg::Low => Priority::Low,
        }
    }
}

/// What the master said when it took the job.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// The job id.
    pub job_id: String,
    /// Chunk tasks.
    pub total_chunks: u32,
    /// Workers alive at acceptance.
    pub active_workers: u32,
}

/// Runs `gridwatch submit`.
pub async fn submit(args: SubmitArgs) -> Result<(), ClientError> {
    let patterns = parse_patterns(&args.patterns, args.strand.into(), args.case_sensitive)?;
    let options = SearchOptions {
        strand: args.strand.into(),
        case_sensitive: args.case_sensitive,
    };
    let mut client = MasterClient::connect(&args.master).await?;
    let job_id = args
        .job_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut progress = JobProgress::new(!args.json, file_len(&args.file).await.ok());
    progress.message("uploading");
    let request = UploadRequest {
        path: args.file.clone(),
        job_id: job_id.clone(),
        patterns,
        options,
        chunk_size: args.chunk_size,
        priority: args.priority.into(),
    };
    let submitted = upload(&mut client, &request).await?;
    if submitted.active_workers == 0 {
        eprintln!(
            "warning: no active workers: job {} is queued and starts when a worker connects (`gridwatch worker --id w1`)",
            submitted.job_id
        );
    }
    if !args.wait {
        progress.finish();
        print_submitted(&submitted, args.json);
        return Ok(());
    }
    if !args.json {
        eprintln!(
            "Job ID: {} ({} chunks)",
            submitted.job_id, submitted.total_chunks
        );
    }
    let view = wait_for(&mut client, &job_id, &mut progress).await?;
    if view.status != JobStatus::Completed {
        let active = query_status(&mut client, &job_id).await?.1;
        print_status(&view, active, args.json)?;
        return Err(ClientError::JobFailed(format!(
            "job {job_id} ended {}: {}",
            view.status.as_str(),
            view.error.unwrap_or_default()
        )));
    }
    print_results(&mut client, &job_id, args.format, args.json).await
}

fn print_submitted(submitted: &Submitted, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "status": "accepted",
                "job_id": submitted.job_id,
                "total_chunks": submitted.total_chunks,
                "active_workers": submitted.active_workers,
            })
        );
    } else {
        println!("Job submitted successfully!");
        println!("Job ID: {}", submitted.job_id);
        println!("Total chunks: {}", submitted.total_chunks);
    }
}

/// Validates patterns locally, so a typo fails before any upload.
pub fn parse_patterns(
    sequences: &[String],
    strand: StrandMode,
    case_sensitive: bool,
) -> Result<Vec<Pattern>, ClientError> {
    let patterns: Vec<Pattern> = sequences
        .iter()
        .map(|s| Pattern {
            name: s.clone(),
            sequence: s.clone(),
        })
        .collect();
    let options = SearchOptions {
        strand,
        case_sensitive,
    };
    PatternSet::new(patterns.clone(), options).map_err(|e| ClientError::Usage(e.to_string()))?;
    Ok(patterns)
}

async fn file_len(path: &std::path::Path) -> std::io::Result<u64> {
    Ok(tokio::fs::metadata(path).await?.len())
}

/// What to upload and how to search it.
#[derive(Clone, Debug)]
pub struct UploadRequest {
    /// The input file.
    pub path: PathBuf,
    /// Client-chosen job id.
    pub job_id: String,
    /// Patterns to find.
    pub patterns: Vec<Pattern>,
    /// Strand and case options.
    pub options: SearchOptions,
    /// Bases per chunk (the master's default when `None`).
    pub chunk_size: Option<u64>,
    /// Queue priority.
    pub priority: Priority,
}

/// Sends the header, then (if the master is ready for it) the file; returns the acceptance.
pub async fn upload(
    client: &mut MasterClient,
    request: &UploadRequest,
) -> Result<Submitted, ClientError> {
    let path = &request.path;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
    let file_size = file
        .metadata()
        .await
        .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?
        .len();
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let header = Message::SubmitJob {
        job_id: request.job_id.clone(),
        filename,
        patterns: request.patterns.clone(),
        options: request.options,
        file_size,
        chunk_size: request.chunk_size,
        priority: request.priority,
    };
    match client.request(&header).await? {
        Message::Ready { .. } => {}
        Message::Accepted {
            job_id,
            total_chunks,
            active_workers,
            ..
        } => {
            return Ok(Submitted {
                job_id,
                total_chunks,
                active_workers,
            })
        }
        other => return Err(unexpected(&other)),
    }
    stream_file(client, &mut file, file_size, path).await?;
    match client.reply().await? {
        Message::Accepted {
            job_id,
            total_chunks,
            active_workers,
            ..
        } => Ok(Submitted {
            job_id,
            total_chunks,
            active_workers,
        }),
        other => Err(unexpected(&other)),
    }
}

/// Sends exactly `file_size` bytes as data frames.
async fn stream_file(
    client: &mut MasterClient,
    file: &mut tokio::fs::File,
    file_size: u64,
    path: &std::path::Path,
) -> Result<(), ClientError> {
    let mut buffer = vec![0u8; UPLOAD_FRAME];
    let mut sent = 0u64;
    let conn = client.connection();
    while sent < file_size {
        let want = ((file_size - sent) as usize).min(UPLOAD_FRAME);
        let read = file
            .read(&mut buffer[..want])
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
        if read == 0 {
            return Err(ClientError::Usage(format!(
                "{}: file shrank while uploading ({sent} of {file_size} bytes)",
                path.display()
            )));
        }
        conn.send_frame(&buffer[..read]).await?;
        sent += read as u64;
    }
    conn.flush().await?;
    Ok(())
}
