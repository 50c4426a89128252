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
enum Command {}

// Until the first subcommand lands, `Command` is uninhabited.
#[allow(unreachable_code, unused_variables)]
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
