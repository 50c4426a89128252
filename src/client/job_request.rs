//! What every kind's `gridwatch submit` subcommand shares: the flags every submit takes, the job
//! a kind's flags describe, and `--priority`. The submit dispatcher, the kinds' subcommands and
//! the other commands that send jobs all read them here.

use std::path::PathBuf;

use super::connect::MasterAddr;
use gridwatch::backend::Priority;

/// Flags every kind's submit takes.
#[derive(Clone, Debug, clap::Args)]
pub struct SubmitCommon {
    /// Job id (default: a new UUID): 1-100 letters, digits, '-', '_', '.' or ':'; resubmitting
    /// the same id does not run the job twice.
    #[arg(long)]
    pub job_id: Option<String>,
    /// Queue priority.
    #[arg(long, value_enum, default_value_t = PriorityArg::Medium)]
    pub priority: PriorityArg,
    /// Wait for the job to finish and print its results.
    #[arg(long)]
    pub wait: bool,
    /// Output format of the results printed with --wait (the kind's formats; default: its first).
    #[arg(long)]
    pub format: Option<String>,
    /// Write the results printed with --wait to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// A job as a kind's subcommand describes it, ready to send.
#[derive(Clone, Debug)]
pub struct JobRequest {
    /// The kind's tag.
    pub kind: &'static str,
    /// The kind's submission (its spec fields).
    pub spec: serde_json::Value,
    /// The file to upload, for kinds that upload their input.
    pub upload: Option<PathBuf>,
    /// Files every task finds in its working directory (command jobs): each is stored on the
    /// master once, and the spec's `inputs` name them by hash.
    pub inputs: Vec<PathBuf>,
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
