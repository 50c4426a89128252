//! The store half of the embedded backend: jobs, first-write-wins chunk results, alerts and
//! worker metrics, as SQL run on the database thread. A job's status follows its stored results:
//! the first result moves it to processing, the last (once its chunk count is known) completes it.
//! A result counts only from the holder of its task's current lease (`fence`); a large payload is
//! staged in parts under that lease and made visible by the one transaction that stores the result.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, Row};

use crate::backend::{
    BackendError, BackendResult, ChunkResult, CreateOutcome, JobRecord, JobStatus, JobSummary,
    Lease, Priority, Progress, RefusalReason, ResultCheck, StoredResult, WorkerId,
    RESULT_PART_BYTES,
};

use super::db::{sql_error, DbState};
use super::records;

/// Alerts kept in the history (oldest dropped first).
const ALERT_HISTORY: i64 = 1000;

fn parse_status(name: &str) -> rusqlite::Result<JobStatus> {
    JobStatus::from_word(name).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(
            3,
            format!("status {name:?}"),
            rusqlite::types::Type::Text,
        )
    })
}

fn parse_priority(word: &str) -> rusqlite::Result<Priority> {
    Priority::from_word(word).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(
            9,
            format!("priority {word:?}"),
            rusqlite::types::Type::Text,
        )
    })
}

/// A job's columns as read; the spec lives in `job_specs`, so reading or updating a job's status
/// never walks a spec that may be many megabytes long.
const JOB_COLUMNS: &str = "id, kind, (SELECT spec FROM job_specs WHERE job_specs.id = jobs.id),
    status, total_chunks, error, created_at, finished_at, summary, priority";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let spec: String = row
        .get::<_, Option<String>>(2)?
        .unwrap_or_else(|| "null".into());
    let status: String = row.get(3)?;
    Ok(JobRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        spec: serde_json::from_str(&spec).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(err))
        })?,
        summary: row.get(8)?,
        priority: parse_priority(&row.get::<_, String>(9)?)?,
        status: parse_status(&status)?,
        total_chunks: row.get(4)?,
        error: row.get(5)?,
        created_at: row.get(6)?,
        finished_at: row.get(7)?,
    })
}

/// Fetches one job.
pub(super) fn job(state: &mut DbState, id: &str) -> BackendResult<Option<JobRecord>> {
    state
        .conn
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(sql_error)?
        .query_row(params![id], job_from_row)
        .optional()
        .map_err(sql_error)
}

/// Records a job unless its id exists.
pub(super) fn create_job(state: &mut DbState, job: &JobRecord) -> BackendResult<CreateOutcome> {
    if let Some(existing) = self::job(state, &job.id)? {
        return Ok(CreateOutcome::Exists(existing));
    }
    state
        .conn
        .prepare_cached(
            "INSERT INTO jobs
                (id, kind, spec, status, total_chunks, error, created_at, finished_at, summary,
                 priority)
             VALUES (?1, ?2, '', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(sql_error)?
        .execute(params![
            job.id,
            job.kind,
            JobStatus::as_str(job.status),
            job.total_chunks,
            job.error,
            job.created_at,
            job.finished_at,
            crate::backend::short_summary(&job.summary),
            job.priority.as_str(),
        ])
        .map_err(sql_error)?;
    write_spec(state, &job.id, &job.spec)?;
    Ok(CreateOutcome::Created)
}

/// Records jobs as [`create_job`] does, all in one transaction (one WAL commit).
pub(super) fn create_jobs(
    state: &mut DbState,
    jobs: &[JobRecord],
) -> BackendResult<Vec<CreateOutcome>> {
    in_transaction(state, |state| {
        jobs.iter().map(|job| create_job(state, job)).collect()
    })
}

/// Accepts jobs as [`accept_job`] does, all in one transaction.
pub(super) fn accept_jobs(state: &mut DbState, jobs: &[(String, u32)]) -> BackendResult<()> {
    in_transaction(state, |state| {
        jobs.iter()
            .try_for_each(|(id, total_chunks)| accept_job(state, id, *total_chunks))
    })
}

/// Runs `work` in one transaction: committed if it succeeds, rolled back if it fails.
pub(super) fn in_transaction<R>(
    state: &mut DbState,
    work: impl FnOnce(&mut DbState) -> BackendResult<R>,
) -> BackendResult<R> {
    state.conn.execute_batch("BEGIN").map_err(sql_error)?;
    match work(state) {
        Ok(value) => {
            state.conn.execute_batch("COMMIT").map_err(sql_error)?;
            Ok(value)
        }
        Err(err) => {
            let _ = state.conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

/// Replaces a job that was never accepted (failed or uploading with no chunk count) by `job`:
/// its tasks, results, spec and spool go, then `job` is created, all in one transaction.
pub(super) fn restart_upload(state: &mut DbState, job: &JobRecord) -> BackendResult<bool> {
    let restartable = self::job(state, &job.id)?.is_some_and(|old| {
        old.total_chunks == 0 && matches!(old.status, JobStatus::Failed | JobStatus::Uploading)
    });
    if !restartable {
        return Ok(false);
    }
    let tx = state.conn.transaction().map_err(sql_error)?;
    for table in ["tasks", "results", "result_parts"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE job = ?1"),
            params![job.id],
        )
        .map_err(sql_error)?;
    }
    for table in ["job_specs", "jobs"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE id = ?1"),
            params![job.id],
        )
        .map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)?;
    state.spool_remove(&job.id);
    Ok(matches!(create_job(state, job)?, CreateOutcome::Created))
}

/// All jobs, newest first.
pub(super) fn jobs(state: &mut DbState) -> BackendResult<Vec<JobRecord>> {
    let mut select = state
        .conn
        .prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC"
        ))
        .map_err(sql_error)?;
    let rows = select.query_map([], job_from_row).map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

/// Sets the chunk count, then settles the status from the results already stored (chunks may
/// finish while the upload is still streaming).
pub(super) fn accept_job(state: &mut DbState, id: &str, total_chunks: u32) -> BackendResult<()> {
    let changed = state
        .conn
        .prepare_cached(
            "UPDATE jobs SET total_chunks = ?2, status = 'pending'
             WHERE id = ?1 AND status = 'uploading'",
        )
        .map_err(sql_error)?
        .execute(params![id, total_chunks])
        .map_err(sql_error)?;
    if changed == 0 && self::job(state, id)?.is_none() {
        return Err(BackendError::NoSuchJob(id.to_string()));
    }
    settle_status(state, id)
}

/// Moves an unfinished, accepted job to processing or completed according to its results (a
/// command job with failed tasks to failed).
pub(super) fn settle_status(state: &mut DbState, id: &str) -> BackendResult<()> {
    let now = state.now();
    state
        .conn
        .prepare_cached(
            "UPDATE jobs SET
                status = CASE WHEN done < total_chunks THEN 'processing'
                    WHEN kind = 'command' AND failed > 0 THEN 'failed' ELSE 'completed' END,
                error = CASE WHEN done >= total_chunks AND kind = 'command' AND failed > 0
                    THEN failed || ' command task(s) failed: `gridwatch results` names them'
                    ELSE error END,
                finished_at = CASE WHEN done >= total_chunks THEN ?2 ELSE NULL END
             FROM (SELECT COUNT(*) AS done, COALESCE(SUM(matches), 0) AS failed
                   FROM results WHERE job = ?1)
             WHERE id = ?1 AND status IN ('pending', 'processing') AND done > 0",
        )
        .map_err(sql_error)?
        .execute(params![id, now])
        .map_err(sql_error)?;
    Ok(())
}

/// Replaces a job's spec.
pub(super) fn update_job_spec(
    state: &mut DbState,
    id: &str,
    spec: &serde_json::Value,
) -> BackendResult<()> {
    let known: bool = state
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)")
        .map_err(sql_error)?
        .query_row(params![id], |row| row.get(0))
        .map_err(sql_error)?;
    if !known {
        return Err(BackendError::NoSuchJob(id.to_string()));
    }
    write_spec(state, id, spec)
}

fn write_spec(state: &mut DbState, id: &str, spec: &serde_json::Value) -> BackendResult<()> {
    state
        .conn
        .prepare_cached("INSERT OR REPLACE INTO job_specs (id, spec) VALUES (?1, ?2)")
        .map_err(sql_error)?
        .execute(params![id, spec.to_string()])
        .map_err(sql_error)?;
    Ok(())
}

/// Sets a status unless the job already finished.
pub(super) fn set_status(
    state: &mut DbState,
    id: &str,
    status: JobStatus,
    error: Option<&str>,
) -> BackendResult<()> {
    let finished_at = status.is_finished().then(|| state.now());
    let changed = state
        .conn
        .prepare_cached(
            "UPDATE jobs SET status = ?2, error = COALESCE(?3, error), finished_at = ?4
             WHERE id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled')",
        )
        .map_err(sql_error)?
        .execute(params![id, JobStatus::as_str(status), error, finished_at])
        .map_err(sql_error)?;
    if changed == 0 && self::job(state, id)?.is_none() {
        return Err(BackendError::NoSuchJob(id.to_string()));
    }
    Ok(())
}

/// The bound on `lease`'s matches if `lease` is its task's current lease (`None`: a task queued
/// before bounds were stored); a refusal naming why not otherwise.
fn fence(state: &mut DbState, lease: &Lease) -> BackendResult<Option<i64>> {
    let held: Option<Option<i64>> = state
        .conn
        .prepare_cached(
            "SELECT max_matches FROM tasks
             WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND worker = ?4 AND state = 'leased'",
        )
        .map_err(sql_error)?
        .query_row(
            params![lease.id.job, lease.id.chunk, lease.token, lease.worker],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    if let Some(bound) = held {
        return Ok(bound);
    }
    let known: bool = state
        .conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE job = ?1 AND chunk = ?2)
                 OR EXISTS (SELECT 1 FROM results WHERE job = ?1 AND chunk = ?2)",
        )
        .map_err(sql_error)?
        .query_row(params![lease.id.job, lease.id.chunk], |row| row.get(0))
        .map_err(sql_error)?;
    Err(if known {
        BackendError::refused(
            lease,
            RefusalReason::NotHolder,
            format!(
                "worker {:?} does not hold this task's current lease",
                lease.worker
            ),
        )
    } else {
        BackendError::refused(lease, RefusalReason::NoSuchTask, "no such task in the job")
    })
}

fn is_cancelled(state: &mut DbState, job: &str) -> BackendResult<bool> {
    state
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND status = 'cancelled')")
        .map_err(sql_error)?
        .query_row(params![job], |row| row.get(0))
        .map_err(sql_error)
}

/// Stages one part of a large result payload under its lease.
pub(super) fn put_result_part(
    state: &mut DbState,
    lease: &Lease,
    part: u32,
    bytes: &[u8],
) -> BackendResult<()> {
    fence(state, lease)?;
    if stored_token(state, lease)?.is_some() {
        // The chunk's result is stored (maybe by this very delivery, retrying): its visible parts
        // must not change, and the commit that follows will report a duplicate.
        return Ok(());
    }
    if bytes.len() > RESULT_PART_BYTES {
        return Err(BackendError::Other(format!(
            "result part of {} bytes is larger than {RESULT_PART_BYTES}",
            bytes.len()
        )));
    }
    state
        .conn
        .prepare_cached(
            "INSERT OR REPLACE INTO result_parts (job, chunk, token, part, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql_error)?
        .execute(params![
            lease.id.job,
            lease.id.chunk,
            lease.token,
            part,
            bytes
        ])
        .map_err(sql_error)?;
    Ok(())
}

/// The delivery token of the chunk's stored result, if one is stored.
fn stored_token(state: &mut DbState, lease: &Lease) -> BackendResult<Option<String>> {
    state
        .conn
        .prepare_cached("SELECT token FROM results WHERE job = ?1 AND chunk = ?2")
        .map_err(sql_error)?
        .query_row(params![lease.id.job, lease.id.chunk], |row| row.get(0))
        .optional()
        .map_err(sql_error)
}

/// Stores a result (fenced by its lease) unless one exists for (job, chunk) or the job was
/// cancelled, makes its staged parts visible and settles the job's status, in one transaction
/// (one WAL commit per result).
pub(super) fn commit_chunk_result(
    state: &mut DbState,
    lease: &Lease,
    result: &ChunkResult,
    parts: u32,
    check: Option<&dyn ResultCheck>,
) -> BackendResult<bool> {
    in_transaction(state, |state| {
        store_result(state, lease, result, parts, check)
    })
}

fn store_result(
    state: &mut DbState,
    lease: &Lease,
    result: &ChunkResult,
    parts: u32,
    check: Option<&dyn ResultCheck>,
) -> BackendResult<bool> {
    let first = record_result(state, lease, result, parts, check)?;
    settle_status(state, &lease.id.job)?;
    Ok(first)
}

/// [`store_result`] without settling the job's status: a batch settles each of its jobs once,
/// after all its results, since settling counts the job's stored results.
pub(super) fn record_result(
    state: &mut DbState,
    lease: &Lease,
    result: &ChunkResult,
    parts: u32,
    check: Option<&dyn ResultCheck>,
) -> BackendResult<bool> {
    let (job, chunk) = (&lease.id.job, lease.id.chunk);
    if result.chunk != chunk {
        return Err(BackendError::Other(format!(
            "result names chunk {} but its lease is for chunk {chunk}",
            result.chunk
        )));
    }
    if is_cancelled(state, job)? {
        if stored_token(state, lease)?.as_deref() != Some(lease.token.as_str()) {
            drop_own_parts(state, lease)?;
        }
        return Ok(false);
    }
    let bound = fence(state, lease)?;
    let matches = i64::try_from(result.matches).unwrap_or(i64::MAX);
    if let Some(bound) = bound.filter(|bound| matches > *bound) {
        return Err(BackendError::refused(
            lease,
            RefusalReason::OutOfRange,
            format!("{} matches; the task holds at most {bound}", result.matches),
        ));
    }
    if let Some(winner) = stored_token(state, lease)? {
        if winner != lease.token {
            drop_own_parts(state, lease)?;
        }
        return Ok(false);
    }
    if let Some(check) = check {
        check_payload(state, lease, result, parts, check)?;
        if passes_job_cap(state, lease, result, check)? {
            drop_own_parts(state, lease)?;
            return Ok(false);
        }
    }
    let payload = if parts == 0 {
        result.payload.to_string()
    } else {
        check_staged_parts(state, lease, parts)?;
        String::new()
    };
    let run = records::stored_run(state, lease, &result.run)?;
    let run_text = serde_json::to_string(&run)
        .map_err(|e| BackendError::Other(format!("job {job:?} chunk {chunk} record: {e}")))?;
    let inserted = state
        .conn
        .prepare_cached(
            "INSERT OR IGNORE INTO results (job, chunk, matches, payload, worker, parts, token, run)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(sql_error)?
        .execute(params![
            job,
            chunk,
            matches,
            payload,
            lease.worker,
            parts,
            lease.token,
            run_text
        ])
        .map_err(sql_error)?;
    if inserted == 1 {
        records::count_task(state, &lease.worker, &run)?;
    }
    drop_unread_parts(state, lease, parts)?;
    Ok(inserted == 1)
}

/// Refuses (`bad_payload`, staged parts dropped) a result that `check` finds is not a result of
/// the task's kind. A payload in parts is read back whole: its size is bounded by the task's
/// output cap.
fn check_payload(
    state: &mut DbState,
    lease: &Lease,
    result: &ChunkResult,
    parts: u32,
    check: &dyn ResultCheck,
) -> BackendResult<()> {
    let (kind, spec): (String, String) = state
        .conn
        .prepare_cached("SELECT kind, spec FROM tasks WHERE job = ?1 AND chunk = ?2")
        .map_err(sql_error)?
        .query_row(params![lease.id.job, lease.id.chunk], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(sql_error)?;
    let spec: serde_json::Value = serde_json::from_str(&spec)
        .map_err(|e| BackendError::Corrupt(format!("job {:?} task spec: {e}", lease.id.job)))?;
    let text = if parts == 0 {
        result.payload_text()?
    } else {
        check_staged_parts(state, lease, parts)?;
        staged_text(state, lease, parts)?.into()
    };
    let verdict = check.check(&kind, &spec, result.matches, &text);
    verdict.map_err(|why| {
        let _ = drop_own_parts(state, lease);
        BackendError::refused(lease, RefusalReason::BadPayload, why)
    })
}

/// Whether storing `result` would take its job past the job's cap on matches; if so the job is
/// failed (nothing more of it is worth storing) and the result is dropped.
fn passes_job_cap(
    state: &mut DbState,
    lease: &Lease,
    result: &ChunkResult,
    check: &dyn ResultCheck,
) -> BackendResult<bool> {
    let (kind, spec): (String, String) = state
        .conn
        .prepare_cached("SELECT kind, spec FROM tasks WHERE job = ?1 AND chunk = ?2")
        .map_err(sql_error)?
        .query_row(params![lease.id.job, lease.id.chunk], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(sql_error)?;
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap_or_default();
    let Some((cap, error)) = check.job_cap(&kind, &spec) else {
        return Ok(false);
    };
    let stored: i64 = state
        .conn
        .prepare_cached("SELECT COALESCE(SUM(matches), 0) FROM results WHERE job = ?1")
        .map_err(sql_error)?
        .query_row(params![lease.id.job], |row| row.get(0))
        .map_err(sql_error)?;
    if (stored.max(0) as u64).saturating_add(result.matches) <= cap {
        return Ok(false);
    }
    set_status(state, &lease.id.job, JobStatus::Failed, Some(&error))?;
    Ok(true)
}

/// The text of parts `0..parts` staged under the lease, in order.
fn staged_text(state: &mut DbState, lease: &Lease, parts: u32) -> BackendResult<Vec<u8>> {
    let mut statement = state
        .conn
        .prepare_cached(
            "SELECT bytes FROM result_parts
             WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND part < ?4 ORDER BY part",
        )
        .map_err(sql_error)?;
    let rows = statement
        .query_map(
            params![lease.id.job, lease.id.chunk, lease.token, parts],
            |row| row.get::<_, Vec<u8>>(0),
        )
        .map_err(sql_error)?;
    let mut text = Vec::new();
    for row in rows {
        text.extend_from_slice(&row.map_err(sql_error)?);
    }
    Ok(text)
}

/// Fails unless parts `0..parts` are all staged under the lease.
fn check_staged_parts(state: &mut DbState, lease: &Lease, parts: u32) -> BackendResult<()> {
    let staged: u32 = state
        .conn
        .prepare_cached(
            "SELECT COUNT(*) FROM result_parts
             WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND part < ?4",
        )
        .map_err(sql_error)?
        .query_row(
            params![lease.id.job, lease.id.chunk, lease.token, parts],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    if staged != parts {
        return Err(BackendError::Other(format!(
            "result of chunk {} announces {parts} parts but {staged} were staged",
            lease.id.chunk
        )));
    }
    Ok(())
}

/// Deletes the parts staged under this lease (its result was not the first, or never will be).
fn drop_own_parts(state: &mut DbState, lease: &Lease) -> BackendResult<()> {
    state
        .conn
        .prepare_cached("DELETE FROM result_parts WHERE job = ?1 AND chunk = ?2 AND token = ?3")
        .map_err(sql_error)?
        .execute(params![lease.id.job, lease.id.chunk, lease.token])
        .map_err(sql_error)?;
    Ok(())
}

/// Deletes parts no reader will ask for once this lease's `parts`-part result is stored: other
/// deliveries' and any beyond the count.
fn drop_unread_parts(state: &mut DbState, lease: &Lease, parts: u32) -> BackendResult<()> {
    state
        .conn
        .prepare_cached(
            "DELETE FROM result_parts
             WHERE job = ?1 AND chunk = ?2 AND (token != ?3 OR part >= ?4)",
        )
        .map_err(sql_error)?
        .execute(params![lease.id.job, lease.id.chunk, lease.token, parts])
        .map_err(sql_error)?;
    Ok(())
}

/// Totals derived from the stored results; matches are summed as floats, which never overflow
/// (and are exact below 2^53), then saturate into a u64.
pub(super) fn progress(state: &mut DbState, job: &str) -> BackendResult<Progress> {
    let total: Option<u32> = state
        .conn
        .prepare_cached("SELECT total_chunks FROM jobs WHERE id = ?1")
        .map_err(sql_error)?
        .query_row(params![job], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    let (done, matches): (u32, f64) = state
        .conn
        .prepare_cached("SELECT COUNT(*), TOTAL(matches) FROM results WHERE job = ?1")
        .map_err(sql_error)?
        .query_row(params![job], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sql_error)?;
    let Some(total_chunks) = total else {
        return Err(BackendError::NoSuchJob(job.to_string()));
    };
    Ok(Progress {
        total_chunks,
        done_chunks: done,
        matches: matches as u64,
    })
}

/// The newest `limit` jobs without their specs, with progress.
pub(super) fn job_summaries(state: &mut DbState, limit: usize) -> BackendResult<Vec<JobSummary>> {
    let mut select = state
        .conn
        .prepare_cached(
            "SELECT id, kind, summary, status, total_chunks, error, created_at, finished_at,
                (SELECT COUNT(*) FROM results WHERE results.job = jobs.id),
                (SELECT TOTAL(matches) FROM results WHERE results.job = jobs.id),
                priority
             FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1",
        )
        .map_err(sql_error)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = select
        .query_map(params![limit], |row| {
            let status: String = row.get(3)?;
            Ok(JobSummary {
                id: row.get(0)?,
                kind: row.get(1)?,
                summary: row.get(2)?,
                priority: parse_priority(&row.get::<_, String>(10)?)?,
                status: parse_status(&status)?,
                error: row.get(5)?,
                created_at: row.get(6)?,
                finished_at: row.get(7)?,
                progress: Progress {
                    total_chunks: row.get(4)?,
                    done_chunks: row.get(8)?,
                    matches: row.get::<_, f64>(9)? as u64,
                },
                redeliveries: None,
            })
        })
        .map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

/// Every stored result of a job without its payload, by chunk.
pub(super) fn result_headers(state: &mut DbState, job: &str) -> BackendResult<Vec<StoredResult>> {
    result_headers_in(state, job, 0..u32::MAX)
}

/// The stored results of tasks `tasks` of a job, without payloads, by chunk index.
pub(super) fn result_headers_in(
    state: &mut DbState,
    job: &str,
    tasks: std::ops::Range<u32>,
) -> BackendResult<Vec<StoredResult>> {
    let mut select = state
        .conn
        .prepare_cached(
            "SELECT chunk, matches, worker, parts, run FROM results \
             WHERE job = ?1 AND chunk >= ?2 AND chunk < ?3 ORDER BY chunk",
        )
        .map_err(sql_error)?;
    let rows = select
        .query_map(params![job, tasks.start, tasks.end], |row| {
            Ok(StoredResult {
                chunk: row.get(0)?,
                matches: row.get::<_, i64>(1)?.max(0) as u64,
                worker: row.get(2)?,
                parts: row.get::<_, u32>(3)?.max(1),
                // A record that does not decode is shown as none rather than hiding the result.
                run: serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or_default(),
            })
        })
        .map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

/// One part of a stored result's payload text.
pub(super) fn result_part(
    state: &mut DbState,
    job: &str,
    chunk: u32,
    part: u32,
) -> BackendResult<Vec<u8>> {
    let missing = || {
        BackendError::Other(format!(
            "job {job:?} has no result part {part} of chunk {chunk}"
        ))
    };
    let stored: Option<(u32, String, Option<String>)> = state
        .conn
        .prepare_cached(
            "SELECT parts, token, CASE WHEN parts = 0 THEN payload END
             FROM results WHERE job = ?1 AND chunk = ?2",
        )
        .map_err(sql_error)?
        .query_row(params![job, chunk], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
        .map_err(sql_error)?;
    match stored {
        None => Err(missing()),
        Some((0, _, inline)) if part == 0 => Ok(inline.unwrap_or_default().into_bytes()),
        Some((0, _, _)) => Err(missing()),
        Some((_, token, _)) => state
            .conn
            .prepare_cached(
                "SELECT bytes FROM result_parts
                 WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND part = ?4",
            )
            .map_err(sql_error)?
            .query_row(params![job, chunk, token, part], |row| row.get(0))
            .optional()
            .map_err(sql_error)?
            .ok_or_else(missing),
    }
}

/// Appends an alert and trims the history.
pub(super) fn push_alert(state: &mut DbState, alert: &serde_json::Value) -> BackendResult<()> {
    state
        .conn
        .prepare_cached("INSERT INTO alerts (alert) VALUES (?1)")
        .map_err(sql_error)?
        .execute(params![alert.to_string()])
        .map_err(sql_error)?;
    state
        .conn
        .prepare_cached("DELETE FROM alerts WHERE id <= (SELECT MAX(id) FROM alerts) - ?1")
        .map_err(sql_error)?
        .execute(params![ALERT_HISTORY])
        .map_err(sql_error)?;
    Ok(())
}

/// The newest `limit` alerts.
pub(super) fn alerts(state: &mut DbState, limit: usize) -> BackendResult<Vec<serde_json::Value>> {
    let mut select = state
        .conn
        .prepare("SELECT alert FROM alerts ORDER BY id DESC LIMIT ?1")
        .map_err(sql_error)?;
    let rows = select
        .query_map(params![limit as i64], |row| row.get::<_, String>(0))
        .map_err(sql_error)?;
    let mut alerts = Vec::new();
    for row in rows {
        let text = row.map_err(sql_error)?;
        alerts.push(
            serde_json::from_str(&text)
                .map_err(|err| BackendError::Corrupt(format!("alert: {err}")))?,
        );
    }
    Ok(alerts)
}

/// Stores a worker's latest metrics with an expiry.
pub(super) fn put_worker_metrics(
    state: &mut DbState,
    worker: &str,
    metrics: &serde_json::Value,
    ttl: Duration,
) -> BackendResult<()> {
    let expires_at = state.now() + ttl.as_secs_f64();
    state
        .conn
        .prepare_cached(
            "INSERT INTO worker_metrics (worker, metrics, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (worker) DO UPDATE SET metrics = ?2, expires_at = ?3",
        )
        .map_err(sql_error)?
        .execute(params![worker, metrics.to_string(), expires_at])
        .map_err(sql_error)?;
    Ok(())
}

/// Removes a worker's metrics; false if it had none.
pub(super) fn forget_worker_metrics(state: &mut DbState, worker: &str) -> BackendResult<bool> {
    let removed = state
        .conn
        .prepare_cached("DELETE FROM worker_metrics WHERE worker = ?1")
        .map_err(sql_error)?
        .execute(params![worker])
        .map_err(sql_error)?;
    Ok(removed > 0)
}

/// Latest metrics of every worker whose entry has not expired.
pub(super) fn worker_metrics(
    state: &mut DbState,
) -> BackendResult<Vec<(WorkerId, serde_json::Value)>> {
    let now = state.now();
    let mut select = state
        .conn
        .prepare("SELECT worker, metrics FROM worker_metrics WHERE expires_at > ?1 ORDER BY worker")
        .map_err(sql_error)?;
    let rows = select
        .query_map(params![now], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(sql_error)?;
    let mut out = Vec::new();
    for row in rows {
        let (worker, text) = row.map_err(sql_error)?;
        let metrics = serde_json::from_str(&text)
            .map_err(|err| BackendError::Corrupt(format!("worker metrics: {err}")))?;
        out.push((worker, metrics));
    }
    Ok(out)
}
