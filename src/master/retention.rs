//! Retention: finished jobs (completed, failed, cancelled) are deleted, results and stored input
//! with them, once they have been finished for `--keep-finished`. A background sweep applies it;
//! `gridwatch prune` applies it on demand. A job that is not finished is never deleted.
//!
//! Stored genomes follow `--keep-genomes`: one that no job has used for that long (counting from
//! a job's start or finish) is deleted by its own sweep; one an unfinished job uses never is.

use std::time::Duration;

use crate::backend::{BackendError, PruneReport};
use crate::master::MasterState;

/// How long finished jobs are kept: a duration, or forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// The default: a week.
pub const DEFAULT_KEEP_FINISHED: &str = "7d";

/// The default for stored genomes: a week unused.
pub const DEFAULT_KEEP_GENOMES: &str = "7d";

/// Reads `--keep-finished`: a duration (`7d`, `12h`, `30m`, `90s`, seconds; `0` deletes a job
/// at the first sweep after it finishes) or `never` / `off` to keep finished jobs forever. Zero
/// is not "forever", so that `--keep-finished 0` and `prune --older-than 0` mean the same age.
pub fn parse_retention(text: &str) -> Result<Retention, String> {
    let word = text.trim();
    if word.eq_ignore_ascii_case("never") || word.eq_ignore_ascii_case("off") {
        return Ok(Retention(None));
    }
    crate::time::parse_duration(word).map(|keep| Retention(Some(keep)))
}

/// Time between sweeps: a quarter of the retention, between 1 s and 10 min, so a job outlives
/// its retention by at most a quarter of it (or 10 minutes).
pub fn sweep_interval(keep: Duration) -> Duration {
    (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Deletes every finished job that finished at least `older_than_secs` ago.
pub async fn prune(state: &MasterState, older_than_secs: f64) -> Result<PruneReport, BackendError> {
    let finished_before = crate::time::unix_now() - older_than_secs;
    let report = state.store.prune_finished(finished_before).await?;
    if !report.job_ids.is_empty() {
        tracing::info!(
            component = "master",
            jobs = report.job_ids.len(),
            results = report.results,
            bytes_freed = report.bytes_freed,
            "pruned finished jobs"
        );
    }
    Ok(report)
}

/// What a retention sweep deletes.
#[derive(Clone, Copy, Debug)]
pub enum Sweep {
    /// Finished jobs older than the retention time ([`prune`]).
    FinishedJobs,
    /// Stored genomes unused for the retention time and used by no unfinished job
    /// ([`prune_genomes`]).
    UnusedGenomes,
}

/// Sweeps `what` every [`sweep_interval`] of `keep` until `stop` completes. A failed sweep is
/// logged and tried again at the next one.
pub async fn run(
    state: std::sync::Arc<MasterState>,
    what: Sweep,
    keep: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(sweep_interval(keep));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let older_than = keep.as_secs_f64();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {
                let swept = match what {
                    Sweep::FinishedJobs => prune(&state, older_than).await.map(drop),
                    Sweep::UnusedGenomes => prune_genomes(&state, older_than).await.map(drop),
                };
                if let Err(err) = swept {
                    tracing::warn!(component = "master", error = %err, sweep = ?what, "retention sweep failed");
                }
            }
        }
    }
}

/// `gridwatch prune`: deletes finished jobs as [`prune`] does, then the stored genomes that no
/// unfinished job uses and that were unused for as long, since a genome is a job's stored input.
pub async fn prune_on_demand(
    state: &MasterState,
    older_than_secs: f64,
) -> Result<PruneReport, BackendError> {
    let mut report = prune(state, older_than_secs).await?;
    match prune_genomes(state, older_than_secs).await {
        Ok(genomes) => report.genomes = genomes,
        Err(err) => {
            tracing::debug!(component = "master", error = %err, "no stored genomes pruned")
        }
    }
    Ok(report)
}

/// Deletes every stored genome unused for at least `unused_for_secs` that no unfinished job
/// uses; returns their hashes.
pub async fn prune_genomes(
    state: &MasterState,
    unused_for_secs: f64,
) -> Result<Vec<String>, BackendError> {
    let unused_before = crate::time::unix_now() - unused_for_secs;
    let removed = state.genome_store()?.prune_genomes(unused_before).await?;
    if !removed.is_empty() {
        tracing::info!(component = "master", genomes = ?removed, "pruned unused genomes");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_durations_and_never() {
        let days = |d: u64| Retention(Some(Duration::from_secs(d * 86400)));
        assert_eq!(parse_retention("7d"), Ok(days(7)));
        assert_eq!(
            parse_retention("12h"),
            Ok(Retention(Some(Duration::from_secs(43200))))
        );
        assert_eq!(
            parse_retention("30m"),
            Ok(Retention(Some(Duration::from_secs(1800))))
        );
        assert_eq!(parse_retention("0"), Ok(Retention(Some(Duration::ZERO))));
        assert_eq!(parse_retention("never"), Ok(Retention(None)));
        assert_eq!(parse_retention("OFF"), Ok(Retention(None)));
        assert!(parse_retention("a week").is_err());
    }

    #[test]
    fn sweeps_are_a_quarter_of_the_retention_within_bounds() {
        assert_eq!(sweep_interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            sweep_interval(Duration::from_secs(40)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(7 * 86400)),
            Duration::from_secs(600)
        );
    }
}
