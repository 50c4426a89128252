//! `gridwatch submit KIND …`: one subcommand per job kind builds the kind's submission; the
//! rest is the same for every kind. A `submit_job` header (a client-chosen job id makes a retried
//! submit idempotent), then for kinds that upload (search) the file as binary frames; with
//! `--wait`, progress, then the results printed by the job's kind. `gridwatch submit FILE
//! --pattern P…` (no kind named) is a search. A search announces its file's hash when the hash
//! cache knows it (the master may hold that genome and take no upload); otherwise the file is
//! sent unannounced, read once, and the hash the master computed over it is remembered.

use std::path::{Path, PathBuf};

use super::connect::{unexpected, ClientError, MasterClient};
pub use super::job_request::{JobRequest, SubmitCommon};
use super::progress::JobProgress;
use super::query::{
    chosen_format, follow, print_results_patiently, print_status, ResultsRequest, POLL_INTERVAL,
};
use super::search::collect_patterns;
use gridwatch::backend::{JobStatus, Priority};
use gridwatch::jobs;
use gridwatch::jobs::search::{SearchSubmission, SEARCH_KIND};
use gridwatch::protocol::Message;
use gridwatch::search::{Pattern, PatternSet, SearchOptions, StrandMode};

/// `gridwatch submit`: one subcommand per job kind. With no kind named, the arguments are a
/// search's (`gridwatch submit FILE --pattern P` is `gridwatch submit search FILE --pattern P`).
#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SubmitArgs {
    /// The job's kind.
    #[command(subcommand)]
    pub kind: Option<SubmitKind>,
    /// A search, when no kind is named.
    #[command(flatten)]
    pub search: Option<SearchSpecArgs>,
    /// Flags of every submit, when no kind is named.
    #[command(flatten)]
    pub common: SubmitCommon,
}

/// The kinds of job `gridwatch submit` sends; each builds its kind's submission.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum SubmitKind {
    /// Search a FASTA or plain sequence file for DNA patterns (streams the file to the master).
    Search(SearchSubmitArgs),
    /// Render the Julia set, cut into bands of rows (nothing uploaded).
    Julia(super::julia::JuliaSubmitArgs),
    /// Run an ensemble of particle simulations, one task per replica (nothing uploaded).
    Particles(super::particles::ParticlesSubmitArgs),
    /// Run a program once per array index or args-file line, on workers that allow commands.
    Command(super::command::CommandSubmitArgs),
}

/// `gridwatch submit search FILE --pattern P…`.
#[derive(Clone, Debug, clap::Args)]
pub struct SearchSubmitArgs {
    /// What to search.
    #[command(flatten)]
    pub spec: SearchSpecArgs,
    /// Flags of every submit.
    #[command(flatten)]
    pub common: SubmitCommon,
}

/// A search's own flags. (No nested flattening here: clap recognises an optional flattened
/// group only by its direct arguments.)
#[derive(Clone, Debug, clap::Args)]
pub struct SearchSpecArgs {
    /// FASTA or plain sequence file (optionally gzip-compressed).
    pub file: PathBuf,
    /// Pattern to find (repeat for several); A C G T and IUPAC codes.
    #[arg(
        long = "pattern",
        short = 'p',
        required_unless_present = "patterns_file"
    )]
    pub patterns: Vec<String>,
    /// A file of patterns: one sequence per line, `name<TAB>sequence` lines, or FASTA (a record
    /// may wrap over several lines).
    #[arg(long = "patterns", value_name = "FILE")]
    pub patterns_file: Option<PathBuf>,
    /// Most substitutions a match may have (Hamming distance, as `seqkit locate -m`); must be
    /// less than half of every pattern's length.
    #[arg(short = 'm', long, default_value_t = 0)]
    pub max_mismatches: u32,
    /// Search the reverse complement too.
    #[arg(long, value_enum, default_value_t = StrandArg::Forward)]
    pub strand: StrandArg,
    /// Lowercase (soft-masked) bases do not match uppercase pattern letters.
    #[arg(long)]
    pub case_sensitive: bool,
    /// Bases per chunk task (the master's default when absent).
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Store and print counts only, never positions: exact counts however many matches there
    /// are, with no cap on them (the master's --max-positions caps jobs that keep positions).
    #[arg(long)]
    pub count_only: bool,
    /// Run the search even when the master holds the results of an identical finished one
    /// (same file contents, patterns, strand, mismatches, case flag and --count-only), which
    /// would otherwise answer it at once without running a task.
    #[arg(long)]
    pub no_cache: bool,
}

impl SearchSpecArgs {
    /// The search submission these flags describe; patterns are checked here, so a typo fails
    /// before any upload.
    fn request(&self) -> Result<JobRequest, ClientError> {
        let options = SearchOptions {
            strand: self.strand.into(),
            case_sensitive: self.case_sensitive,
            max_mismatches: self.max_mismatches,
            ..SearchOptions::default()
        };
        let patterns = collect_patterns(&self.patterns, self.patterns_file.as_deref())
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        let patterns = check_patterns(patterns, options)?;
        let submission = SearchSubmission {
            filename: display_name(&self.file),
            patterns,
            options,
            chunk_size: self.chunk_size,
            genome_hash: None,
            count_only: self.count_only,
            no_cache: self.no_cache,
        };
        Ok(JobRequest {
            kind: SEARCH_KIND,
            spec: serde_json::to_value(&submission)
                .map_err(|e| ClientError::Usage(format!("search spec: {e}")))?,
            upload: Some(self.file.clone()),
            inputs: Vec::new(),
        })
    }
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

/// What the master said when it took the job.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// The job id.
    pub job_id: String,
    /// Chunk tasks.
    pub total_chunks: u32,
    /// Workers alive at acceptance.
    pub active_workers: u32,
    /// The hash of the genome the job reads, as the master has it (a search).
    pub genome_hash: Option<String>,
}

/// Runs `gridwatch submit`.
pub async fn submit(args: SubmitArgs) -> Result<(), ClientError> {
    let (request, common) = match (&args.kind, &args.search) {
        (Some(SubmitKind::Search(search)), _) => (search.spec.request()?, &search.common),
        (Some(SubmitKind::Julia(julia)), _) => (julia.spec.request()?, &julia.common),
        (Some(SubmitKind::Particles(run)), _) => (run.spec.request()?, &run.common),
        (Some(SubmitKind::Command(command)), _) => (command.spec.request()?, &command.common),
        (None, Some(search)) => (search.request()?, &args.common),
        (None, None) => {
            return Err(ClientError::Usage(
                "name a job kind or a file to search (see `gridwatch submit --help`)".into(),
            ))
        }
    };
    submit_request(request, common).await
}

/// Sends one job, then with `--wait` follows it and prints its results with its kind.
pub async fn submit_request(request: JobRequest, common: &SubmitCommon) -> Result<(), ClientError> {
    let kind = jobs::require(request.kind).map_err(|e| ClientError::Usage(e.to_string()))?;
    let format = chosen_format(kind, common.format.as_deref(), common.json);
    kind.check_format(format)
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    let mut client = MasterClient::connect(&common.master).await?;
    let job_id = common
        .job_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let upload_size = match &request.upload {
        Some(path) => file_len(path).await.ok(),
        None => None,
    };
    let mut progress = JobProgress::new(!common.json, upload_size);
    progress.message(match upload_size {
        Some(_) => "reading the input before uploading it",
        None => "submitting",
    });
    let sent = send_job_reporting(
        &mut client,
        &job_id,
        &request,
        common.priority.into(),
        &mut |sent, total| progress.uploading(sent, total),
    )
    .await;
    let submitted = match sent {
        Ok(submitted) => submitted,
        Err(err) => {
            progress.fail_upload();
            return Err(err);
        }
    };
    if !common.wait {
        progress.finish();
    }
    if submitted.active_workers == 0 {
        progress.note(&format!(
            "warning: no active workers: job {} is queued and starts when a worker connects (`gridwatch worker --id w1`)",
            submitted.job_id
        ));
    }
    if !common.wait {
        print_submitted(&submitted, common.json);
        return Ok(());
    }
    // On stderr before the wait, so the job can be followed from another shell, even with --json.
    progress.note(&format!(
        "Job ID: {} ({})",
        submitted.job_id,
        super::count_of(submitted.total_chunks.into(), "chunk")
    ));
    let (view, active) = follow(&mut client, &job_id, &mut progress, POLL_INTERVAL).await?;
    let failed_commands =
        view.status == JobStatus::Failed && view.kind == jobs::command::COMMAND_KIND;
    if view.status != JobStatus::Completed && !failed_commands {
        print_status(&view, active, common.json)?;
        return Err(ClientError::JobFailed(format!(
            "job {job_id} ended {}: {}",
            view.status.as_str(),
            view.error.unwrap_or_default()
        )));
    }
    let results = ResultsRequest {
        format: common.format.as_deref(),
        json: common.json,
        out: common.out.as_deref(),
        with_job_id: true,
        tasks: false,
    };
    print_results_patiently(&mut client, &job_id, &results).await?;
    match failed_commands {
        true => Err(ClientError::JobFailed(format!(
            "job {job_id} failed: {}",
            view.error.unwrap_or_default()
        ))),
        false => Ok(()),
    }
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
        ..SearchOptions::default()
    };
    check_patterns(patterns, options)
}

/// Compiles `patterns` once with `options`, so a typo or an impossible mismatch count fails
/// before any upload.
fn check_patterns(
    patterns: Vec<Pattern>,
    options: SearchOptions,
) -> Result<Vec<Pattern>, ClientError> {
    PatternSet::new(patterns.clone(), options).map_err(|e| ClientError::Usage(e.to_string()))?;
    Ok(patterns)
}

async fn file_len(path: &std::path::Path) -> std::io::Result<u64> {
    Ok(tokio::fs::metadata(path).await?.len())
}

/// What to upload and how to search it (the demo and the grid benchmark submit searches this way).
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

/// Submits a search of `request.path`; returns the acceptance.
pub async fn upload(
    client: &mut MasterClient,
    request: &UploadRequest,
) -> Result<Submitted, ClientError> {
    let submission = SearchSubmission {
        filename: display_name(&request.path),
        patterns: request.patterns.clone(),
        options: request.options,
        chunk_size: request.chunk_size,
        genome_hash: None,
        count_only: false,
        no_cache: false,
    };
    let job = JobRequest {
        kind: SEARCH_KIND,
        spec: serde_json::to_value(&submission)
            .map_err(|e| ClientError::Usage(format!("search spec: {e}")))?,
        upload: Some(request.path.clone()),
        inputs: Vec::new(),
    };
    send_job(client, &request.job_id, &job, request.priority).await
}

/// The file name shown for an upload.
fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Sends the `submit_job` header, then (if the master is ready for it) the upload; returns the
/// acceptance. A retried job id is answered at once with the existing job.
pub async fn send_job(
    client: &mut MasterClient,
    job_id: &str,
    request: &JobRequest,
    priority: Priority,
) -> Result<Submitted, ClientError> {
    send_job_reporting(client, job_id, request, priority, &mut |_, _| {}).await
}

/// [`send_job`], telling `uploaded(sent, total)` the bytes sent after each upload frame.
pub async fn send_job_reporting(
    client: &mut MasterClient,
    job_id: &str,
    request: &JobRequest,
    priority: Priority,
    uploaded: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Submitted, ClientError> {
    let upload = match &request.upload {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            let size = file
                .metadata()
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?
                .len();
            Some((path, file, size))
        }
        None => None,
    };
    let mut spec = request.spec.clone();
    if !request.inputs.is_empty() {
        let stored = super::inputs::upload_inputs(client, job_id, &request.inputs).await?;
        if let Some(fields) = spec.as_object_mut() {
            fields.insert(
                "inputs".into(),
                serde_json::to_value(stored).unwrap_or_default(),
            );
        }
    }
    // A file whose hash is not cached is sent unannounced; the master's hash of it is kept.
    let mut unhashed = None;
    if let (SEARCH_KIND, Some((path, _, _))) = (request.kind, &upload) {
        unhashed = announce_genome(&mut spec, path).await;
    }
    let header = Message::SubmitJob {
        job_id: job_id.to_string(),
        kind: request.kind.to_string(),
        spec: Some(spec),
        file_size: upload.as_ref().map(|(_, _, size)| *size),
        priority,
        top_level: Default::default(),
    };
    let accepted = |message: Message| match message {
        Message::Accepted {
            job_id,
            total_chunks,
            active_workers,
            genome_hash,
            ..
        } => Ok(Submitted {
            genome_hash,
            job_id,
            total_chunks,
            active_workers,
        }),
        other => Err(unexpected(&other)),
    };
    match client.request(&header).await? {
        Message::Ready { .. } => {}
        other => return accepted(other),
    }
    let Some((path, file, size)) = upload else {
        return Err(ClientError::Usage(format!(
            "the master expects an upload for this {} job, and there is none",
            request.kind
        )));
    };
    super::connect::stream_file(client, file, size, path, uploaded).await?;
    let submitted = accepted(client.reply().await?)?;
    // The master hashed every byte it received; its hash is remembered for the next search of
    // this file, unless the file changed since it was looked up.
    let hash = submitted.genome_hash.clone();
    let hash = hash.filter(|hash| gridwatch::backend::genome::is_genome_hash(hash));
    if let (Some(version), Some(hash)) = (unhashed, hash) {
        let _ = tokio::task::spawn_blocking(move || super::genomes::remember_hash(&version, &hash))
            .await;
    }
    Ok(submitted)
}

/// Adds the file's cached content hash to a search's spec, so a master that stores that genome
/// already takes no upload. Without a cached hash the file is uploaded unannounced: returns the
/// version looked up, to remember the master's hash of the upload under.
async fn announce_genome(
    spec: &mut serde_json::Value,
    path: &Path,
) -> Option<super::genomes::FileVersion> {
    let owned = path.to_path_buf();
    let looked_up = tokio::task::spawn_blocking(move || super::genomes::cached_hash(&owned)).await;
    match looked_up {
        Ok(Ok((Some(hash), _))) => {
            if let Some(fields) = spec.as_object_mut() {
                fields.insert("genome_hash".into(), hash.into());
            }
            None
        }
        Ok(Ok((None, version))) => Some(version),
        Ok(Err(err)) => {
            tracing::debug!(file = %path.display(), error = %err, "cannot look the input up; uploading it");
            None
        }
        Err(err) => {
            tracing::debug!(error = %err, "looking the input up stopped; uploading it");
            None
        }
    }
}
