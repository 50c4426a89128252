//! Deleting finished jobs and giving their space back. SQLite keeps freed pages in its file
//! unless told otherwise, so a prune ends with an incremental vacuum (a full VACUUM on a database
//! made before auto-vacuum was enabled, which converts it) and a truncating WAL checkpoint.

use rusqlite::params;

use crate::backend::{BackendResult, PruneReport};

use super::db::{sql_error, DbState};

/// Deletes every finished job that finished at or before `finished_before`, with its results,
/// staged parts, tasks and spool file, then shrinks the database files.
pub(super) fn prune_finished(
    state: &mut DbState,
    finished_before: f64,
) -> BackendResult<PruneReport> {
    let before = state.disk_usage();
    let job_ids: Vec<String> = state
        .conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')
                 AND COALESCE(finished_at, created_at) <= ?1
             ORDER BY created_at, rowid",
        )
        .map_err(sql_error)?
        .query_map(params![finished_before], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let mut results = 0u64;
    for job in &job_ids {
        results += delete_job(state, job)?;
        state.spool_remove(job);
    }
    if !job_ids.is_empty() {
        reclaim_space(state)?;
        tracing::info!(
            component = "embedded",
            jobs = job_ids.len(),
            results,
            "pruned finished jobs"
        );
    }
    let after = state.disk_usage();
    Ok(PruneReport {
        job_ids,
        results,
        bytes_freed: before.saturating_sub(after),
        genomes: Vec::new(),
    })
}

/// Deletes one job's rows in one transaction; returns how many results it had.
fn delete_job(state: &mut DbState, job: &str) -> BackendResult<u64> {
    let tx = state.conn.transaction().map_err(sql_error)?;
    let results = tx
        .execute("DELETE FROM results WHERE job = ?1", params![job])
        .map_err(sql_error)?;
    for sql in [
        "DELETE FROM result_parts WHERE job = ?1",
        "DELETE FROM tasks WHERE job = ?1",
        "DELETE FROM genome_jobs WHERE job = ?1",
        "DELETE FROM result_cache WHERE job = ?1",
        "DELETE FROM job_specs WHERE id = ?1",
        "DELETE FROM jobs WHERE id = ?1",
    ] {
        tx.execute(sql, params![job]).map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)?;
    Ok(results as u64)
}

/// Hands freed pages back to the file system and empties the write-ahead log.
fn reclaim_space(state: &mut DbState) -> BackendResult<()> {
    let mode: i64 = state
        .conn
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .map_err(sql_error)?;
    if mode == 2 {
        // Each step of this pragma frees one page: run it to its end.
        let mut vacuum = state
            .conn
            .prepare("PRAGMA incremental_vacuum")
            .map_err(sql_error)?;
        let mut steps = vacuum.query([]).map_err(sql_error)?;
        while steps.next().map_err(sql_error)?.is_some() {}
    } else {
        // The mode chosen at open takes effect on a database made before it only by a VACUUM.
        state
            .conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
            .map_err(sql_error)?;
    }
    state
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(sql_error)?;
    Ok(())
}
