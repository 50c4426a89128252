//! `gridwatch prune`: deletes finished jobs now (by default every finished job) and prints what
//! went and how much space came back, as the master's retention sweep would in its time.

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use gridwatch::protocol::Message;

/// `gridwatch prune [--older-than DURATION]`.
#[derive(Clone, Debug, clap::Args)]
pub struct PruneArgs {
    /// Only jobs finished at least this long ago (7d, 12h, 30m, 90s or seconds); 0, the
    /// default, takes every finished job. Jobs still queued or running are never deleted.
    #[arg(long, default_value = "0", value_parser = gridwatch::time::parse_duration)]
    pub older_than: std::time::Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// Runs `gridwatch prune`.
pub async fn prune(args: PruneArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    let message = Message::Prune {
        older_than_secs: args.older_than.as_secs_f64(),
    };
    let report = match client.request(&message).await? {
        Message::Pruned { report } => report,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        let json = serde_json::to_string(&report)
            .map_err(|e| ClientError::Usage(format!("prune report: {e}")))?;
        println!("{json}");
    } else {
        println!(
            "Deleted {} with {}; freed {}",
            super::count_of(report.job_ids.len() as u64, "finished job"),
            super::count_of(report.results, "task result"),
            human_bytes(report.bytes_freed)
        );
    }
    Ok(())
}

/// `611.2 MiB`, `12 KiB`, `800 B`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(800), "800 B");
        assert_eq!(human_bytes(12 * 1024), "12.0 KiB");
        assert_eq!(human_bytes(611 * 1024 * 1024 + 200 * 1024), "611.2 MiB");
    }
}
