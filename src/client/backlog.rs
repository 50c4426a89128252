//! `gridwatch status --queue`: the queue's backlog per priority, the signal an autoscaler (or a
//! person deciding to add workers) acts on.

use std::io::Write;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use gridwatch::protocol::{Message, QueueLevel};

/// The master's backlog.
pub struct Backlog {
    /// One entry per priority, high first.
    pub priorities: Vec<QueueLevel>,
    /// Leases handed out by the master and not yet acknowledged or returned.
    pub leases_in_flight: u64,
    /// Workers seen recently.
    pub active_workers: u32,
}

impl Backlog {
    /// Tasks waiting, over every priority.
    pub fn waiting(&self) -> u64 {
        self.priorities.iter().map(|level| level.tasks).sum()
    }

    /// Seconds the oldest waiting task has waited, over every priority.
    pub fn oldest_age_seconds(&self) -> f64 {
        self.priorities
            .iter()
            .map(|level| level.oldest_task_age_seconds)
            .fold(0.0, f64::max)
    }
}

/// Asks the master at `master` for its backlog.
pub async fn query(master: &MasterAddr) -> Result<Backlog, ClientError> {
    let mut client = MasterClient::connect(master).await?;
    query_on(&mut client).await
}

/// Asks for the backlog on an open connection.
pub async fn query_on(client: &mut MasterClient) -> Result<Backlog, ClientError> {
    match client.request(&Message::QueryQueue).await? {
        Message::QueueBacklog {
            priorities,
            leases_in_flight,
            active_workers,
        } => Ok(Backlog {
            priorities,
            leases_in_flight,
            active_workers,
        }),
        other => Err(unexpected(&other)),
    }
}

/// Prints the backlog as a table, or as JSON.
pub async fn print_queue(master: &MasterAddr, json: bool) -> Result<(), ClientError> {
    let backlog = query(master).await?;
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "queue": backlog.priorities,
            "waiting_tasks": backlog.waiting(),
            "oldest_task_age_seconds": backlog.oldest_age_seconds(),
            "leases_in_flight": backlog.leases_in_flight,
            "active_workers": backlog.active_workers,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<9} {:>10} {:>14}",
        "PRIORITY", "WAITING", "OLDEST (s)"
    )?;
    for level in &backlog.priorities {
        writeln!(
            out,
            "{:<9} {:>10} {:>14.1}",
            level.priority.as_str(),
            level.tasks,
            level.oldest_task_age_seconds
        )?;
    }
    writeln!(
        out,
        "{} lease(s) in flight, {} active worker(s)",
        backlog.leases_in_flight, backlog.active_workers
    )?;
    Ok(())
}
