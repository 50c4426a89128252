//! The store half of the embedded backend: jobs, first-write-wins chunk results, alerts and
//! worker metrics, as SQL run on the database thread. A job's status follows its stored results:
//! the first result moves it to processing, the last (once its chunk count is known) completes it.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, Row};

use crate::backend::{
    BackendError, BackendResult, ChunkResult, CreateOutcome, JobRecord, JobStatus, Progress,
    WorkerId,
};

use super::db::{sql_error, DbState};

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

const JOB_COLUMNS: &str = "id, kind, spec, status, total_chunks, error, created_at, finished_at";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let spec: String = row.get(2)?;
    let status: String = row.get(3)?;
    Ok(JobRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        spec: serde_json::from_str(&spec).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(err))
        })?,
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
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![id],
            job_from_row,
        )
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
        .execute(
            &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                job.id,
                job.kind,
                job.spec.to_string(),
                JobStatus::as_str(job.status),
                job.total_chunks,
                job.error,
                job.created_at,
                job.finished_at,
            ],
        )
        .map_err(sql_error)?;
    Ok(CreateOutcome::Created)
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

/// Moves an unfinished, accepted job to processing or completed according to its results.
fn settle_status(state: &mut DbState, id: &str) -> BackendResult<()> {
    let now = state.now();
    state
        .conn
        .prepare_cached(
            "UPDATE jobs SET
                status = CASE WHEN done >= total_chunks THEN 'completed' ELSE 'processing' END,
                finished_at = CASE WHEN done >= total_chunks THEN ?2 ELSE NULL END
             FROM (SELECT COUNT(*) AS done FROM results WHERE job = ?1)
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
    let changed = state
        .conn
        .prepare_cached("UPDATE jobs SET spec = ?2 WHERE id = ?1")
        .map_err(sql_error)?
        .execute(params![id, spec.to_string()])
        .map_err(sql_error)?;
    if changed == 0 {
        return Err(BackendError::NoSuchJob(id.to_string()));
    }
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

/// Stores a result unless one exists for (job, chunk) or the job was cancelled, and settles the
/// job's status, in one transaction (one WAL commit per result).
pub(super) fn put_chunk_result(
    state: &mut DbState,
    job: &str,
    result: &ChunkResult,
) -> BackendResult<bool> {
    state.conn.execute_batch("BEGIN").map_err(sql_error)?;
    match store_result(state, job, result) {
        Ok(first) => {
            state.conn.execute_batch("COMMIT").map_err(sql_error)?;
            Ok(first)
        }
        Err(err) => {
            let _ = state.conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

fn store_result(state: &mut DbState, job: &str, result: &ChunkResult) -> BackendResult<bool> {
    let cancelled: bool = state
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND status = 'cancelled')")
        .map_err(sql_error)?
        .query_row(params![job], |row| row.get(0))
        .map_err(sql_error)?;
    if cancelled {
        return Ok(false);
    }
    let inserted = state
        .conn
        .prepare_cached(
            "INSERT OR IGNORE INTO results (job, chunk, matches, payload, worker)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql_error)?
        .execute(params![
            job,
            result.chunk,
            result.matches as i64,
            result.payload.to_string(),
            result.worker
        ])
        .map_err(sql_error)?;
    if inserted == 1 {
        settle_status(state, job)?;
    }
    Ok(inserted == 1)
}

/// Totals derived from the stored results.
pub(super) fn progress(state: &mut DbState, job: &str) -> BackendResult<Progress> {
    let total: Option<u32> = state
        .conn
        .prepare_cached("SELECT total_chunks FROM jobs WHERE id = ?1")
        .map_err(sql_error)?
        .query_row(params![job], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    let (done, matches): (u32, i64) = state
        .conn
        .prepare_cached("SELECT COUNT(*), COALESCE(SUM(matches), 0) FROM results WHERE job = ?1")
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

/// Every stored result of a job, by chunk.
pub(super) fn chunk_results(state: &mut DbState, job: &str) -> BackendResult<Vec<ChunkResult>> {
    let mut select = state
        .conn
        .prepare(
            "SELECT chunk, matches, payload, worker FROM results WHERE job = ?1 ORDER BY chunk",
        )
        .map_err(sql_error)?;
    let rows = select
        .query_map(params![job], |row| {
            let payload: String = row.get(2)?;
            Ok((row.get(0)?, row.get::<_, i64>(1)?, payload, row.get(3)?))
        })
        .map_err(sql_error)?;
    let mut results = Vec::new();
    for row in rows {
        let (chunk, matches, payload, worker) = row.map_err(sql_error)?;
        results.push(ChunkResult {
            chunk,
            matches: matches as u64,
            payload: serde_json::from_str(&payload)
                .map_err(|err| BackendError::Corrupt(format!("result payload: {err}")))?,
            worker,
        });
    }
    Ok(results)
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
