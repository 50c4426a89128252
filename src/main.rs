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
    /// Search a FASTA or plain sequence file on all local cores (no servers needed).
    Search(gridwatch::client::search::SearchArgs),
    /// Write a deterministic random genome as FASTA.
    Generate(gridwatch::client::generate::GenerateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Search(args) => exit_on_tool_error(gridwatch::client::search::run(&args)),
        Command::Generate(args) => exit_on_tool_error(gridwatch::client::generate::run(&args)),
    }
}

/// Prints a local tool's error as one line and exits with its code (2 for user errors).
fn exit_on_tool_error(
    result: Result<(), gridwatch::client::tool_error::ToolError>,
) -> anyhow::Result<()> {
    if let Err(error) = result {
        eprintln!("gridwatch: {error}");
        std::process::exit(error.exit_code());
    }
    Ok(())
}
