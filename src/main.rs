//! `gridwatch`: one binary for every role. Parses arguments and dispatches; nothing else.

use clap::{Parser, Subcommand};
use gridwatch::client::connect::ClientError;
use gridwatch::client::{demo, query, submit, up, watch};
use gridwatch::telemetry::{self, LogFormat};
use gridwatch::{master, worker};

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
enum Command {
    /// Run the master: takes jobs, hands out chunk tasks, aggregates results.
    Master(master::MasterArgs),
    /// Run a worker: leases chunk tasks from the master and searches them.
    Worker(worker::WorkerArgs),
    /// Submit a job: `submit search FILE -p PATTERN` (or just `submit FILE -p PATTERN`),
    /// `submit julia --width W`, `submit particles --particles N --steps S --seed K`.
    Submit(submit::SubmitArgs),
    /// Show a job's status and progress.
    Status(query::StatusArgs),
    /// Print a completed job's results in one of its kind's formats (search: count, TSV, BED, JSON).
    Results(query::ResultsArgs),
    /// Cancel a job.
    Cancel(query::CancelArgs),
    /// List jobs, newest first.
    Jobs(query::JobsArgs),
    /// Start a master and workers on this machine; Ctrl-C stops them all.
    Up(up::UpArgs),
    /// Start a local grid, search a generated genome on it and check against local search.
    Demo(demo::DemoArgs),
    /// Watch one worker: take its heartbeats over a Unix socket, report to the collector.
    Agent(gridwatch::agent::AgentConfig),
    /// Collect agents' reports, raise alerts, tell the master of dead workers.
    Collector(gridwatch::collector::CollectorConfig),
    /// Show every worker's liveness: active / unstable / inactive, round trip, tasks done.
    Workers(gridwatch::client::watch::WatchQueryArgs),
    /// Show the most recent alerts.
    Alerts(gridwatch::client::watch::AlertsArgs),
    /// Search a FASTA or plain sequence file on all local cores (no servers needed).
    Search(gridwatch::client::search::SearchArgs),
    /// Render the Julia set on all local cores (the classic benchmark by default).
    Julia(gridwatch::client::julia::JuliaArgs),
    /// Run particle simulations on all local cores, one replica per seed.
    Particles(gridwatch::client::particles::ParticlesArgs),
    /// Write a deterministic random genome as FASTA.
    Generate(gridwatch::client::generate::GenerateArgs),
    /// Benchmarks that compare gridwatch with other tools.
    #[command(subcommand)]
    Bench(gridwatch::client::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Master(args) => server("master", async move {
            master::serve(args).await.map_err(anyhow::Error::from)
        }),
        Command::Worker(args) => server("worker", async move {
            worker::serve(args).await.map_err(anyhow::Error::from)
        }),
        Command::Submit(args) => client(submit::submit(args)),
        Command::Status(args) => client(query::status(args)),
        Command::Results(args) => client(query::results(args)),
        Command::Cancel(args) => client(query::cancel(args)),
        Command::Jobs(args) => client(query::jobs(args)),
        Command::Up(args) => client(up::up(args)),
        Command::Demo(args) => client(demo::demo(args)),
        Command::Agent(config) => {
            telemetry::init(LogFormat::Json, "agent");
            tokio::runtime::Runtime::new()?.block_on(watch::run_agent(config))
        }
        Command::Collector(config) => {
            telemetry::init(LogFormat::Json, "collector");
            tokio::runtime::Runtime::new()?.block_on(watch::run_collector(config))
        }
        Command::Workers(args) => {
            telemetry::init(LogFormat::Text, "workers");
            tokio::runtime::Runtime::new()?.block_on(watch::workers(args))
        }
        Command::Alerts(args) => {
            telemetry::init(LogFormat::Text, "alerts");
            tokio::runtime::Runtime::new()?.block_on(watch::alerts(args))
        }
        Command::Search(args) => exit_on_tool_error(gridwatch::client::search::run(&args)),
        Command::Julia(args) => exit_on_tool_error(gridwatch::client::julia::run(&args)),
        Command::Particles(args) => exit_on_tool_error(gridwatch::client::particles::run(&args)),
        Command::Generate(args) => exit_on_tool_error(gridwatch::client::generate::run(&args)),
        Command::Bench(what) => exit_on_tool_error(gridwatch::client::bench::run(&what)),
    }
}

/// Runs a server role with JSON-lines logs.
fn server(
    component: &'static str,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Json, component);
    tokio::runtime::Runtime::new()?.block_on(run)
}

/// Runs a client command; its errors are printed as one line with exit code 2 for user errors.
fn client(run: impl std::future::Future<Output = Result<(), ClientError>>) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text, "client");
    let result = tokio::runtime::Runtime::new()?.block_on(run);
    if let Err(err) = result {
        eprintln!("error: {err}");
        std::process::exit(err.exit_code());
    }
    Ok(())
}

/// Prints a local tool's error as one line and exits with its code (2 for user errors).
fn exit_on_tool_error(
    result: Result<(), gridwatch::client::tool_error::ToolError>,
) -> anyhow::Result<()> {
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(error.exit_code());
    }
    Ok(())
}
