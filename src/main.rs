//! `gridwatch`: one binary for every role. Parses arguments and dispatches; nothing else.

use clap::{Parser, Subcommand};

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
    /// Watch one worker: take its heartbeats over a Unix socket, report to the collector.
    Agent(gridwatch::agent::AgentConfig),
    /// Collect agents' reports, raise alerts, tell the master of dead workers.
    Collector(gridwatch::collector::CollectorConfig),
    /// Show every worker's liveness: active / unstable / inactive, round trip, tasks done.
    Workers(gridwatch::client::watch::WatchQueryArgs),
    /// Show the most recent alerts.
    Alerts(gridwatch::client::watch::AlertsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    use gridwatch::client::watch;
    use gridwatch::telemetry::{init, LogFormat};
    match cli.command {
        Command::Agent(config) => {
            init(LogFormat::Json, "agent");
            runtime.block_on(watch::run_agent(config))
        }
        Command::Collector(config) => {
            init(LogFormat::Json, "collector");
            runtime.block_on(watch::run_collector(config))
        }
        Command::Workers(args) => {
            init(LogFormat::Text, "workers");
            runtime.block_on(watch::workers(args))
        }
        Command::Alerts(args) => {
            init(LogFormat::Text, "alerts");
            runtime.block_on(watch::alerts(args))
        }
    }
}
