//! `gridwatch purge`: clears the queue. Cancels every queued job that has not started, none of
//! whose tasks a worker ever leased (optionally only of one priority or kind), and says how many.

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use super::job_request::PriorityArg;
use gridwatch::protocol::{Message, PurgeFilter};

/// `gridwatch purge [--priority P] [--kind K]`.
#[derive(Clone, Debug, clap::Args)]
pub struct PurgeArgs {
    /// Only jobs of this priority.
    #[arg(long, value_enum)]
    pub priority: Option<PriorityArg>,
    /// Only jobs of this kind (search, julia, particles).
    #[arg(long)]
    pub kind: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// Runs `gridwatch purge`.
pub async fn purge(args: PurgeArgs) -> Result<(), ClientError> {
    if let Some(kind) = &args.kind {
        gridwatch::jobs::require(kind).map_err(|e| ClientError::Usage(e.to_string()))?;
    }
    let mut client = MasterClient::connect(&args.master).await?;
    let message = Message::PurgeQueue {
        filter: PurgeFilter {
            priority: args.priority.map(Into::into),
            kind: args.kind.clone(),
        },
    };
    let job_ids = match client.request(&message).await? {
        Message::Purged { job_ids } => job_ids,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "cancelled": job_ids.len(), "job_ids": job_ids })
        );
    } else {
        println!("Cancelled {} queued jobs", job_ids.len());
    }
    Ok(())
}
