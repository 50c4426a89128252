//! The master's configuration: one struct built from flags with environment fallbacks, defaults
//! written once here.

use std::path::PathBuf;
use std::time::Duration;

/// Default bases owned by one chunk task; chosen from the chunk-size sweep of `gridwatch bench
/// grid --chunk-size`: at 4 MiB a repeat search of a stored 200 MiB genome took 1.9× ripgrep's
/// time against 2.8× at 1 MiB (the per-task lease, result and ack stop mattering), while a
/// 200 MiB genome still makes 50 tasks to spread over workers, and a task's bytes stay far below
/// the 16 MiB frame.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// Default upload limit: 4 GiB, room for a human genome (about 3.1 G bases) as plain FASTA.
pub const DEFAULT_MAX_UPLOAD: u64 = 4 * 1024 * 1024 * 1024;

/// Default limit on one command input (`--max-input-size`): 2 GiB. Every worker that runs a
/// task of the job fetches it whole into its cache, so inputs are meant to be data files, not
/// whole genomes (search those).
pub const DEFAULT_MAX_INPUT: u64 = 2 * 1024 * 1024 * 1024;

/// Default jobs one client address may submit per minute: a person or a script loading a batch
/// file of a few hundred tasks never meets it; a flood of jobs does.
pub const DEFAULT_JOBS_PER_MINUTE: u32 = 600;

/// Default queued tasks (the pieces workers lease) one client address may add per minute: ten
/// of the largest jobs.
pub const DEFAULT_TASKS_PER_MINUTE: u64 = 1_000_000;

/// Default cap on the match positions one search job stores (`--max-positions`): ten million
/// rows of TSV, a few hundred megabytes stored.
pub const DEFAULT_MAX_POSITIONS: u64 = 10_000_000;

/// Where the master serves its HTTP API and dashboard unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// Reads an `--http` value: `off` (or empty) disables the HTTP server.
pub fn http_address(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && !value.eq_ignore_ascii_case("off")).then(|| value.to_string())
}

/// `gridwatch master` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct MasterArgs {
    /// Address to listen on for clients and workers.
    #[arg(long, env = "GRIDWATCH_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Directory for the database and spooled uploads (created if missing).
    #[arg(long, env = "GRIDWATCH_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Bases owned by each chunk task when the client does not choose.
    #[arg(long, env = "GRIDWATCH_CHUNK_SIZE", default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u64,
    /// Largest accepted upload, in bytes; decompressed gzip input and sequence bases count
    /// against it too, and an upload is refused up front when the data dir's free space is
    /// smaller than the announced size.
    #[arg(long, env = "GRIDWATCH_MAX_UPLOAD", default_value_t = DEFAULT_MAX_UPLOAD)]
    pub max_upload: u64,
    /// Largest command input (`submit command --input`), in bytes; an input is also refused
    /// up front when the data dir's free space is smaller.
    #[arg(long, env = "GRIDWATCH_MAX_INPUT_SIZE", default_value_t = DEFAULT_MAX_INPUT, value_parser = crate::search::generate::parse_size)]
    pub max_input_size: u64,
    /// Most match positions one search job may store. A job finding more fails with an error
    /// naming this cap; a job submitted with --count-only stores counts only and has no cap.
    #[arg(long, env = "GRIDWATCH_MAX_POSITIONS", default_value_t = DEFAULT_MAX_POSITIONS)]
    pub max_positions: u64,
    /// Jobs one client address may submit per minute, counting every way in: a submit, each
    /// task of a batch file (`gridwatch load`), each job of an HTTP `POST /jobs`. More are
    /// refused until the minute passes. Files of the drop directory do not count.
    #[arg(long, env = "GRIDWATCH_JOBS_PER_MINUTE", default_value_t = DEFAULT_JOBS_PER_MINUTE)]
    pub jobs_per_minute: u32,
    /// Queued tasks (the pieces of jobs that workers lease) one client address may add per
    /// minute, counted the same ways as --jobs-per-minute.
    #[arg(long, env = "GRIDWATCH_TASKS_PER_MINUTE", default_value_t = DEFAULT_TASKS_PER_MINUTE)]
    pub tasks_per_minute: u64,
    /// Largest batch file, in bytes: a dropped file or an HTTP `POST /jobs` body, refused
    /// before it is read. (`gridwatch load` checks its file against its own --max-batch-file;
    /// over the protocol a batch comes in messages of at most --max-frame bytes and
    /// --max-batch-tasks jobs.)
    #[arg(long, env = "GRIDWATCH_MAX_BATCH_FILE", default_value_t = crate::jobs::batch::MAX_FILE_BYTES)]
    pub max_batch_file: u64,
    /// Most tasks one batch file may hold (each becomes a job); parsing stops at the first one
    /// past it.
    #[arg(long, env = "GRIDWATCH_MAX_BATCH_TASKS", default_value_t = crate::jobs::batch::MAX_TASKS)]
    pub max_batch_tasks: usize,
    /// Most connections served at once. Extra connections wait in the queue (see
    /// --connection-queue).
    #[arg(long, env = "GRIDWATCH_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Most connections served at once from one client address; its extra connections wait in
    /// the queue, so one address cannot take every slot.
    #[arg(
        long,
        env = "GRIDWATCH_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64
    )]
    pub max_connections_per_address: usize,
    /// Connections that may wait for a free slot, first come first served, for up to
    /// --queue-timeout seconds. A connection that finds the queue full gets a `busy` error at
    /// once; one still waiting at the timeout gets it then; either is then closed.
    #[arg(long, env = "GRIDWATCH_CONNECTION_QUEUE", default_value_t = 1024)]
    pub connection_queue: usize,
    /// Most connections that have not yet greeted (TLS handshake and hello), at once; they do
    /// not count against --max-connections. When they are this many, a new connection closes
    /// the oldest of them from the address holding most, so strangers that never greet cannot
    /// keep a client from greeting.
    #[arg(
        long,
        env = "GRIDWATCH_MAX_UNAUTHENTICATED_CONNECTIONS",
        default_value_t = 128
    )]
    pub max_unauthenticated_connections: usize,
    /// Seconds a queued connection waits for a slot before it is refused as `busy`.
    #[arg(long, env = "GRIDWATCH_QUEUE_TIMEOUT", default_value_t = 30.0)]
    pub queue_timeout: f64,
    /// Largest frame accepted after a successful hello, in bytes. Before it, frames are limited
    /// to 64 KiB.
    #[arg(long, env = "GRIDWATCH_MAX_FRAME", default_value_t = crate::protocol::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Seconds a connection that has a slot gets to send its hello before it is closed.
    #[arg(long, env = "GRIDWATCH_HELLO_TIMEOUT", default_value_t = 5.0)]
    pub hello_timeout: f64,
    /// Seconds a connection may stay silent between frames before it is closed.
    #[arg(long, env = "GRIDWATCH_IDLE_TIMEOUT", default_value_t = 120.0)]
    pub idle_timeout: f64,
    /// Seconds one frame may take from its first byte to its last, however steadily the bytes
    /// trickle in.
    #[arg(long, env = "GRIDWATCH_FRAME_TIMEOUT", default_value_t = 60.0)]
    pub frame_timeout: f64,
    /// Seconds a leased task stays invisible unless its worker extends the lease.
    #[arg(long, env = "GRIDWATCH_VISIBILITY_TIMEOUT", default_value_t = 120.0)]
    pub visibility_timeout: f64,
    /// Deliveries of a task before it is dead-lettered and its job fails.
    #[arg(long, env = "GRIDWATCH_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Most iterations one Julia job may ask for (real pixels × iteration limit); a job over it
    /// is refused, naming its figure. The default allows an 8192² image at 1,490 iterations, and
    /// bounds a job to a few core-minutes.
    #[arg(long, env = "GRIDWATCH_MAX_JULIA_WORK", default_value_t = crate::jobs::WorkCaps::DEFAULT_JULIA_ITERATIONS)]
    pub max_julia_work: u64,
    /// Most disc-steps one particle job may ask for (replicas × discs × steps); a job over it is
    /// refused, naming its figure. The default is fifty replicas of the largest task, about eight
    /// core-hours.
    #[arg(long, env = "GRIDWATCH_MAX_PARTICLE_WORK", default_value_t = crate::jobs::WorkCaps::DEFAULT_PARTICLE_DISC_STEPS)]
    pub max_particle_work: u64,
    /// The cluster token every connection must present in its hello. Required when --listen
    /// or --http is not a loopback address, unless --insecure.
    #[command(flatten)]
    pub auth: crate::protocol::TokenArgs,
    /// Serve the protocol over TLS (certificate and key files), for networks you do not trust:
    /// the token and every upload are then encrypted, and clients check the master's identity.
    #[command(flatten)]
    pub tls: crate::protocol::TlsServerArgs,
    /// Serve a non-loopback address without a token (a warning is logged on every start). Only
    /// for a network where every host is trusted.
    #[arg(long, env = "GRIDWATCH_INSECURE")]
    pub insecure: bool,
    /// Once listening, write the bound HOST:PORT to this file (scripts that pass --listen
    /// 127.0.0.1:0 learn the port this way).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Address of the HTTP API, dashboard and /metrics (port 0 picks a free port), or `off`.
    #[arg(long, env = "GRIDWATCH_HTTP", default_value = DEFAULT_HTTP)]
    pub http: String,
    /// Once the HTTP server listens, write its bound HOST:PORT to this file.
    #[arg(long)]
    pub http_addr_file: Option<PathBuf>,
    /// The HTTP port's limits and the names it answers to.
    #[command(flatten)]
    pub http_limits: HttpArgs,
    /// Watch this directory for batch files (.csv, .txt, .json) and load each as jobs; loaded
    /// files move to DIR/processed/, malformed ones to DIR/failed/ with the reason in NAME.error.
    #[arg(long, env = "GRIDWATCH_DROP_DIR")]
    pub drop_dir: Option<PathBuf>,
    /// Take command tasks from the drop directory too: whoever can write a file there can then
    /// run programs on the workers that allow commands. Off unless given.
    #[arg(long, requires = "drop_dir")]
    pub drop_dir_commands: bool,
    /// How often the drop directory is read; a file is loaded once two reads find it unchanged.
    #[arg(long, env = "GRIDWATCH_DROP_POLL", default_value = "1s", value_parser = crate::time::parse_duration)]
    pub drop_poll: Duration,
    /// How long a finished (completed, failed or cancelled) job is kept before it is deleted
    /// with its results and stored input, by a sweep in the background: 7d, 12h, 30m, 90s or
    /// seconds; 0 deletes a job at the first sweep after it finishes; `never` keeps every job.
    /// `gridwatch prune` deletes on demand.
    #[arg(long, env = "GRIDWATCH_KEEP_FINISHED", default_value = super::retention::DEFAULT_KEEP_FINISHED, value_parser = super::retention::parse_retention)]
    pub keep_finished: super::retention::Retention,
    /// How long a stored genome (an uploaded input kept so later searches of the same file
    /// upload nothing) is kept once no job uses it: 7d, 12h, 30m, 90s or seconds; `never` keeps
    /// every genome. A genome an unfinished job uses is never deleted. `gridwatch genomes rm`
    /// deletes on demand.
    #[arg(long, env = "GRIDWATCH_KEEP_GENOMES", default_value = super::retention::DEFAULT_KEEP_GENOMES, value_parser = super::retention::parse_retention)]
    pub keep_genomes: super::retention::Retention,
    /// Where tasks and job state live (embedded or redis://HOST:PORT/DB).
    #[command(flatten)]
    pub backend: crate::backend::config::BackendArgs,
}

/// `gridwatch master` flags for the HTTP port: its own connection budget, separate from the
/// protocol port's, and the host names it answers to.
#[derive(Clone, Debug, clap::Args)]
pub struct HttpArgs {
    /// A host name (NAME, or NAME:PORT for that port only) the HTTP API answers to besides its
    /// own address, localhost, 127.0.0.1 and [::1] at its port; repeat the flag or separate
    /// names by commas. A request naming any other host is refused, so a web page cannot reach
    /// the API through a name of its own (DNS rebinding), and a write must come from one of
    /// these origins. Give the name the dashboard is opened as, e.g. behind a reverse proxy.
    #[arg(
        long = "http-allowed-host",
        value_name = "NAME",
        env = "GRIDWATCH_HTTP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Most HTTP connections served at once after their first request; extra ones wait for a
    /// slot as long as a request header may take (--http-header-timeout), then get 503.
    #[arg(long, env = "GRIDWATCH_HTTP_MAX_CONNECTIONS", default_value_t = 128)]
    pub http_max_connections: usize,
    /// Most HTTP connections at once from one client address; more are answered 503.
    #[arg(
        long,
        env = "GRIDWATCH_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 32
    )]
    pub http_max_connections_per_address: usize,
    /// Most HTTP connections that have not yet sent a complete request header, at once; they
    /// do not count against --http-max-connections. When they are this many, a new connection
    /// closes the oldest of them from the address holding most, so slow or silent sockets
    /// cannot keep a real request out.
    #[arg(
        long,
        env = "GRIDWATCH_HTTP_MAX_UNAUTHENTICATED_CONNECTIONS",
        default_value_t = 128
    )]
    pub http_max_unauthenticated_connections: usize,
    /// HTTP requests that may wait for a served slot; more are answered 503 at once.
    #[arg(long, env = "GRIDWATCH_HTTP_CONNECTION_QUEUE", default_value_t = 128)]
    pub http_connection_queue: usize,
    /// Seconds a request's header may take to arrive, however steadily its bytes trickle in.
    #[arg(long, env = "GRIDWATCH_HTTP_HEADER_TIMEOUT", default_value_t = 10.0)]
    pub http_header_timeout: f64,
    /// Seconds an HTTP connection may move no byte either way before it is closed.
    #[arg(long, env = "GRIDWATCH_HTTP_IDLE_TIMEOUT", default_value_t = 60.0)]
    pub http_idle_timeout: f64,
    /// Renders of a stored result (images, result files, a job's summary) the HTTP API runs at
    /// once; more are answered 503 with Retry-After. Each render holds one band or part of a
    /// result in memory at a time.
    #[arg(long, env = "GRIDWATCH_HTTP_MAX_RENDERS", default_value_t = 2)]
    pub http_max_renders: usize,
}

/// The HTTP port's limits, resolved.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections served at once once they have sent a request.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_connections_per_address: usize,
    /// Connections without a complete request header, at once.
    pub max_pending: usize,
    /// Requests that may wait for a served slot.
    pub connection_queue: usize,
    /// Time allowed for a request's header.
    pub header_timeout: Duration,
    /// Time a connection may move no byte.
    pub idle_timeout: Duration,
    /// Result renders at once.
    pub max_renders: usize,
}

impl HttpArgs {
    /// The limits, each at least 1 (a zero would refuse everything).
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.http_max_connections.max(1),
            max_connections_per_address: self.http_max_connections_per_address.max(1),
            max_pending: self.http_max_unauthenticated_connections.max(1),
            connection_queue: self.http_connection_queue,
            header_timeout: seconds(self.http_header_timeout),
            idle_timeout: seconds(self.http_idle_timeout),
            max_renders: self.http_max_renders.max(1),
        }
    }
}

/// The master's settings, resolved.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Listen address.
    pub listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Default chunk size in bases.
    pub chunk_size: u64,
    /// Largest upload in bytes.
    pub max_upload: u64,
    /// Largest command input in bytes.
    pub max_input: u64,
    /// Most match positions one search job stores.
    pub max_positions: u64,
    /// Jobs per client per minute.
    pub jobs_per_minute: u32,
    /// Queued tasks per client per minute.
    pub tasks_per_minute: u64,
    /// Largest batch file or body in bytes.
    pub max_batch_file: u64,
    /// Most tasks in one batch file.
    pub max_batch_tasks: usize,
    /// Connection limit.
    pub max_connections: usize,
    /// Connection limit per client address.
    pub max_connections_per_address: usize,
    /// Connections that may wait for a slot.
    pub connection_queue: usize,
    /// Connections that have not greeted yet, at once.
    pub max_unauthenticated: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
    /// Frame limit in bytes, after the hello.
    pub max_frame: usize,
    /// Time allowed for the hello.
    pub hello_timeout: Duration,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// Time allowed for one frame.
    pub frame_timeout: Duration,
    /// Lease visibility timeout.
    pub visibility_timeout: Duration,
    /// Deliveries before dead-lettering.
    pub max_attempts: u32,
    /// Most work one job may ask for, per kind.
    pub work_caps: crate::jobs::WorkCaps,
    /// Cluster token.
    pub token: Option<String>,
    /// Serve non-loopback addresses without a token.
    pub insecure: bool,
    /// HTTP API address; `None` when the HTTP server is off.
    pub http: Option<String>,
    /// How long finished jobs are kept.
    pub keep_finished: super::retention::Retention,
    /// How long unused genomes are kept.
    pub keep_genomes: super::retention::Retention,
}

impl MasterArgs {
    /// Resolves the flags (reading the token file, if any).
    pub fn config(&self) -> Result<MasterConfig, crate::protocol::TokenError> {
        Ok(MasterConfig {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            chunk_size: self.chunk_size.max(1),
            max_upload: self.max_upload,
            max_input: self.max_input_size,
            max_positions: self.max_positions,
            jobs_per_minute: self.jobs_per_minute,
            tasks_per_minute: self.tasks_per_minute,
            max_batch_file: self.max_batch_file,
            max_batch_tasks: self.max_batch_tasks.max(1),
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            connection_queue: self.connection_queue,
            max_unauthenticated: self.max_unauthenticated_connections.max(1),
            queue_timeout: seconds(self.queue_timeout),
            max_frame: self.max_frame,
            hello_timeout: seconds(self.hello_timeout),
            idle_timeout: seconds(self.idle_timeout),
            frame_timeout: seconds(self.frame_timeout),
            visibility_timeout: Duration::from_secs_f64(self.visibility_timeout.max(0.1)),
            max_attempts: self.max_attempts.max(1),
            work_caps: crate::jobs::WorkCaps {
                julia_iterations: self.max_julia_work,
                particle_disc_steps: self.max_particle_work,
            },
            token: self.auth.resolve()?,
            insecure: self.insecure,
            http: http_address(&self.http),
            keep_finished: self.keep_finished,
            keep_genomes: self.keep_genomes,
        })
    }
}

/// A positive duration from a flag in seconds (at least 0.1 s; a bad value cannot panic).
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.1)).unwrap_or(Duration::from_secs(u32::MAX as u64))
}
