//! The embedded backend's result cache: the `result_cache` table maps each remembered job to its
//! key, and a copy of a completed job's answer (its record, results and result parts) is made in
//! one transaction that first checks the source is still completed.

use rusqlite::{params, OptionalExtension};

use crate::backend::{AnswerCopy, BackendResult, CreateOutcome, JobRecord, JobStatus};

use super::db::{sql_error, DbState};
use super::store;

/// Records `job` under `key` (a job has one key; recording it again replaces it).
pub(super) fn remember_answer(state: &mut DbState, key: &str, job: &str) -> BackendResult<()> {
    state
        .conn
        .prepare_cached("INSERT OR REPLACE INTO result_cache (job, key) VALUES (?1, ?2)")
        .map_err(sql_error)?
        .execute(params![job, key])
        .map_err(sql_error)?;
    Ok(())
}

/// The most recently finished completed job under `key`.
pub(super) fn cached_answer(state: &mut DbState, key: &str) -> BackendResult<Option<JobRecord>> {
    let id: Option<String> = state
        .conn
        .prepare_cached(
            "SELECT jobs.id FROM result_cache JOIN jobs ON jobs.id = result_cache.job
             WHERE result_cache.key = ?1 AND jobs.status = 'completed'
             ORDER BY jobs.finished_at DESC, jobs.rowid DESC LIMIT 1",
        )
        .map_err(sql_error)?
        .query_row(params![key], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    match id {
        Some(id) => store::job(state, &id),
        None => Ok(None),
    }
}

/// Creates `job` with a copy of `source`'s results, if `source` is still completed.
pub(super) fn copy_answer(
    state: &mut DbState,
    key: &str,
    source: &str,
    job: &JobRecord,
) -> BackendResult<AnswerCopy> {
    store::in_transaction(state, |state| {
        let completed =
            store::job(state, source)?.is_some_and(|j| j.status == JobStatus::Completed);
        if !completed {
            return Ok(AnswerCopy::SourceGone);
        }
        if let CreateOutcome::Exists(_) = store::create_job(state, job)? {
            return Ok(AnswerCopy::IdTaken);
        }
        let tx = &state.conn;
        tx.execute(
            "INSERT INTO results (job, chunk, matches, payload, worker, parts, token, run)
             SELECT ?2, chunk, matches, payload, worker, parts, token, run
             FROM results WHERE job = ?1",
            params![source, job.id],
        )
        .map_err(sql_error)?;
        // Only the parts of stored results: parts staged by deliveries that never committed
        // are not part of the answer.
        tx.execute(
            "INSERT INTO result_parts (job, chunk, token, part, bytes)
             SELECT ?2, p.chunk, p.token, p.part, p.bytes
             FROM result_parts p JOIN results r
               ON r.job = p.job AND r.chunk = p.chunk AND r.token = p.token
             WHERE p.job = ?1 AND r.parts > 0",
            params![source, job.id],
        )
        .map_err(sql_error)?;
        remember_answer(state, key, &job.id)?;
        Ok(AnswerCopy::Copied)
    })
}
