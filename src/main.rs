//! `gridwatch`: one binary for every role. Parses arguments and dispatches; nothing else. Every
//! command fails the same way: one line `error: …` on stderr, exit code 2 for an error the user
//! can fix and 1 for anything else.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::client::connect::ClientError;
use crate::client::tool_error::ToolError;
#[cfg(feature = "tui")]
use crate::client::top;
use crate::client::{
    generate, genomes, health, julia, load, logs, monitor, particles, prune, purge, query, search,
    submit,
};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use gridwatch::telemetry::{self, LogFormat};
use gridwatch::{agent, collector, master, worker};
#[cfg(feature = "bench")]
use local::bench;
use local::{demo, up};

/// The command-line commands: each parses its flags, asks the master (or runs a local tool) and
/// prints. They belong to the binary: no role of the library calls a command.
mod client;

/// Whole grids on this machine (`up`, `demo`, the benchmarks). They drive the grid through the
/// same commands a user types, so they live in the binary, beside the argument parsing: the
/// library never reaches the command-line commands.
mod local;

/// Each command's examples, shown by `--help`, and the manual pages.
mod manual;

#[derive(Parser)]
#[command(
    name = "gridwatch",
    version,
    about = "A distributed compute grid that watches its own health"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the master: takes jobs, hands out chunk tasks, aggregates results.
    Master(master::MasterArgs),
    /// Run a worker: leases tasks of any job kind from the master and runs them.
    Worker(worker::WorkerArgs),
    /// Submit a job: `submit search FILE -p PATTERN` (or just `submit FILE -p PATTERN`),
    /// `submit julia --width W`, `submit particles --particles N --steps S --seed K`.
    Submit(submit::SubmitArgs),
    /// Load a batch file of tasks (CSV of Julia renders, or JSON of tasks): one job per task.
    Load(load::LoadArgs),
    /// Cancel every queued job that has not started (optionally one priority or kind).
    ///
    /// A job has started once a worker has leased any of its tasks, whether the worker still
    /// holds it, finished it, gave it back after a failure or let its lease expire; a started job
    /// runs on and is never purged. Jobs still uploading are left alone too. Prints how many jobs
    /// were cancelled.
    Purge(purge::PurgeArgs),
    /// Delete finished jobs (results and stored input) now and print the space freed.
    Prune(prune::PruneArgs),
    /// List the genomes the master stores (uploaded once, searched any number of times),
    /// delete some (`genomes rm HASH…`), or write one as a .2bit file (`genomes export HASH`).
    Genomes(genomes::GenomesArgs),
    /// Show a job's status and progress.
    Status(query::StatusArgs),
    /// Print a completed job's results in one of its kind's formats (search: count, TSV, BED, JSON).
    Results(query::ResultsArgs),
    /// Print one task's stdout (or --stderr) of a command job, finished or running (--follow).
    Logs(logs::LogsArgs),
    /// Cancel a job.
    Cancel(query::CancelArgs),
    /// List jobs, newest first.
    Jobs(query::JobsArgs),
    /// Start a master and workers on this machine; Ctrl-C stops them all.
    Up(up::UpArgs),
    /// Start a local grid, search a generated genome on it and check against local search.
    Demo(demo::DemoArgs),
    /// Run an agent: takes one worker's heartbeats over a Unix socket, reports to the collector.
    Agent(agent::AgentConfig),
    /// Collect agents' reports, raise alerts, tell the master of dead workers.
    Collector(collector::CollectorConfig),
    /// Show every worker's liveness: active / unstable / inactive, round trip, tasks done.
    Workers(monitor::WorkersArgs),
    /// Show the most recent alerts.
    Alerts(monitor::AlertsArgs),
    /// Check that a master, collector or agent answers the hello: exit 0 if so, 1 if not.
    Health(health::HealthArgs),
    /// Search a FASTA or plain sequence file on all local cores (no servers needed).
    Search(search::SearchArgs),
    /// Render the Julia set on all local cores (the classic benchmark by default).
    Julia(julia::JuliaArgs),
    /// Run particle simulations on all local cores, one replica per seed.
    Particles(particles::ParticlesArgs),
    /// Write a deterministic random genome as FASTA.
    Generate(generate::GenerateArgs),
    /// Benchmarks that compare gridwatch with other tools.
    #[command(subcommand)]
    #[cfg(feature = "bench")]
    Bench(bench::BenchCommand),
    /// A live terminal view of workers, jobs and alerts: the arrows select a job, `c` cancels it
    /// once `y` confirms, `q` quits.
    #[cfg(feature = "tui")]
    Top(top::TopArgs),
    /// Print a shell completion script: `gridwatch completions bash > /etc/bash_completion.d/gridwatch`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a command's manual page (roff), or write every page into a directory.
    Man(ManArgs),
}

/// Arguments of `gridwatch man`.
#[derive(clap::Args)]
struct ManArgs {
    /// The command whose page to print, as typed after `gridwatch` (`submit`, `genomes rm`);
    /// none: the page of `gridwatch` itself.
    command: Vec<String>,
    /// Write every command's page into DIR (made if missing) instead, one `.1` file each.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    out: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    // A command task started under limits: set them and become the program.
    if let Some(failed) = worker::command_limits::exec_if_asked() {
        return failed;
    }
    let cli = match Cli::from_arg_matches(&full_command().get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let json = wants_json(&cli.command);
    let outcome = match cli.command {
        Command::Master(args) => server("master", master::serve(args)),
        Command::Worker(args) => server("worker", worker::serve(args)),
        Command::Agent(args) => server("agent", agent::serve(args)),
        Command::Collector(args) => server("collector", collector::serve(args)),
        Command::Submit(args) => client(submit::submit(args)),
        Command::Load(args) => client(load::load(args)),
        Command::Purge(args) => client(purge::purge(args)),
        Command::Prune(args) => client(prune::prune(args)),
        Command::Genomes(args) => client(genomes::genomes(args)),
        Command::Status(args) => client(query::status(args)),
        Command::Results(args) => client(query::results(args)),
        Command::Logs(args) => client(logs::logs(args)),
        Command::Cancel(args) => client(query::cancel(args)),
        Command::Jobs(args) => client(query::jobs(args)),
        Command::Workers(args) => client(monitor::workers(args)),
        Command::Alerts(args) => client(monitor::alerts(args)),
        Command::Health(args) => client(health::health(args)),
        Command::Up(args) => client(up::up(args)),
        Command::Demo(args) => client(demo::demo(args)),
        Command::Search(args) => search::run(&args).map_err(fail),
        Command::Julia(args) => julia::run(&args).map_err(fail),
        Command::Particles(args) => particles::run(&args).map_err(fail),
        Command::Generate(args) => generate::run(&args).map_err(fail),
        #[cfg(feature = "bench")]
        Command::Bench(what) => bench::run(&what).map_err(fail),
        #[cfg(feature = "tui")]
        Command::Top(args) => client(top::top(args)),
        Command::Completions { shell } => {
            let mut command = full_command();
            clap_complete::generate(shell, &mut command, "gridwatch", &mut std::io::stdout());
            Ok(())
        }
        Command::Man(args) => match args.out {
            Some(dir) => manual::write_pages(full_command(), &dir).map_err(fail),
            None => manual::print_page(full_command(), &args.command).map_err(fail),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // `gridwatch results … | head`: the reader has all it wanted.
        Err(failure) if failure.stdout_closed => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            // A `--json` command's stdout is one JSON document, whether it succeeded or not.
            if json {
                let error =
                    serde_json::json!({ "error": failure.message, "exit_code": failure.code });
                println!("{error}");
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Whether the command was asked for JSON output (`--json`).
fn wants_json(command: &Command) -> bool {
    match command {
        Command::Submit(args) => match &args.kind {
            Some(submit::SubmitKind::Search(search)) => search.common.json,
            Some(submit::SubmitKind::Julia(julia)) => julia.common.json,
            Some(submit::SubmitKind::Particles(run)) => run.common.json,
            Some(submit::SubmitKind::Command(command)) => command.common.json,
            None => args.common.json,
        },
        Command::Load(args) => args.json,
        Command::Purge(args) => args.json,
        Command::Prune(args) => args.json,
        Command::Genomes(args) => args.json || args.action.as_ref().is_some_and(|a| a.json()),
        Command::Status(args) => args.json,
        Command::Results(args) => args.json,
        Command::Logs(_) => false,
        Command::Cancel(args) => args.json,
        Command::Jobs(args) => args.json,
        Command::Workers(args) => args.query.json,
        Command::Alerts(args) => args.query.json,
        Command::Health(args) => args.json,
        Command::Search(args) => args.json,
        Command::Julia(args) => args.json,
        Command::Particles(args) => args.json,
        _ => false,
    }
}

/// The parser's command tree, each command's help ending with its examples.
fn full_command() -> clap::Command {
    manual::with_examples(Cli::command())
}

/// Why a command failed: the one line to print and the exit code.
struct Failure {
    message: String,
    code: u8,
    /// Writing to stdout failed because its reader went away.
    stdout_closed: bool,
}

/// An error type that knows whether the user can fix it (exit 2) or not (exit 1).
trait ExitCoded: Display {
    fn exit_code(&self) -> i32;
    /// Whether this is a write to a closed stdout (a broken pipe), not a failure.
    fn stdout_closed(&self) -> bool {
        false
    }
}

macro_rules! exit_coded {
    ($($error:ty),* $(,)?) => {
        $(
            impl ExitCoded for $error {
                fn exit_code(&self) -> i32 {
                    <$error>::exit_code(self)
                }
            }
        )*
    };
}

impl ExitCoded for ClientError {
    fn exit_code(&self) -> i32 {
        ClientError::exit_code(self)
    }
    fn stdout_closed(&self) -> bool {
        matches!(self, ClientError::Output(err) if err.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl ExitCoded for manual::ManError {
    fn exit_code(&self) -> i32 {
        manual::ManError::exit_code(self)
    }
    fn stdout_closed(&self) -> bool {
        manual::ManError::stdout_closed(self)
    }
}

impl ExitCoded for ToolError {
    fn exit_code(&self) -> i32 {
        ToolError::exit_code(self)
    }
    fn stdout_closed(&self) -> bool {
        matches!(self, ToolError::Output(err) if err.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

fn fail<E: ExitCoded>(error: E) -> Failure {
    Failure {
        message: error.to_string(),
        code: u8::try_from(error.exit_code()).unwrap_or(1),
        stdout_closed: error.stdout_closed(),
    }
}

exit_coded!(
    master::MasterError,
    worker::WorkerError,
    agent::AgentError,
    collector::CollectorError,
);

/// Runs a server role with JSON-lines logs.
fn server<E: ExitCoded>(
    component: &'static str,
    run: impl Future<Output = Result<(), E>>,
) -> Result<(), Failure> {
    telemetry::init(LogFormat::Json, component);
    block_on(run)
}

/// Runs a client command with human-readable logs.
fn client<E: ExitCoded>(run: impl Future<Output = Result<(), E>>) -> Result<(), Failure> {
    telemetry::init(LogFormat::Text, "client");
    block_on(run)
}

fn block_on<E: ExitCoded>(run: impl Future<Output = Result<(), E>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(|err| Failure {
        message: format!("cannot start the async runtime: {err}"),
        code: 1,
        stdout_closed: false,
    })?;
    runtime.block_on(run).map_err(fail)
}
