//! Per-task records and per-worker task times in SQLite. A result's record (`results.run`)
//! takes the task's kind and parameters from the task row, since a worker leasing through the
//! master only proves its lease with a token; task counts and a bounded history of times per
//! worker and kind live in `task_counts` and `task_times`, apart from job data.

use rusqlite::{params, OptionalExtension};

use crate::backend::{BackendResult, Lease, TaskRun, TaskTimes, TASK_TIMES_KEPT};

use super::db::{sql_error, DbState};

/// The record to store with `lease`'s result: the worker's measures, the task's kind and
/// parameters as enqueued, and the store's time.
pub(super) fn stored_run(
    state: &mut DbState,
    lease: &Lease,
    measured: &TaskRun,
) -> BackendResult<TaskRun> {
    let task: Option<(String, String)> = state
        .conn
        .prepare_cached("SELECT kind, spec FROM tasks WHERE job = ?1 AND chunk = ?2")
        .map_err(sql_error)?
        .query_row(params![lease.id.job, lease.id.chunk], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(sql_error)?;
    let mut run = measured.stored(lease, state.now());
    if let Some((kind, spec)) = task {
        run.kind = kind;
        run.parameters = serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null);
    }
    Ok(run)
}

/// Counts a task `worker` completed and keeps its time, trimming the history to the newest
/// [`TASK_TIMES_KEPT`] of that worker and kind.
pub(super) fn count_task(state: &mut DbState, worker: &str, run: &TaskRun) -> BackendResult<()> {
    state
        .conn
        .prepare_cached(
            "INSERT INTO task_counts (worker, kind, completed) VALUES (?1, ?2, 1)
             ON CONFLICT (worker, kind) DO UPDATE SET completed = completed + 1",
        )
        .map_err(sql_error)?
        .execute(params![worker, run.kind])
        .map_err(sql_error)?;
    let Some(elapsed) = run.elapsed_secs else {
        return Ok(());
    };
    state
        .conn
        .prepare_cached("INSERT INTO task_times (worker, kind, elapsed_secs) VALUES (?1, ?2, ?3)")
        .map_err(sql_error)?
        .execute(params![worker, run.kind, elapsed])
        .map_err(sql_error)?;
    state
        .conn
        .prepare_cached(
            "DELETE FROM task_times WHERE worker = ?1 AND kind = ?2 AND id <= (
                 SELECT id FROM task_times WHERE worker = ?1 AND kind = ?2
                 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
        )
        .map_err(sql_error)?
        .execute(params![worker, run.kind, TASK_TIMES_KEPT as i64])
        .map_err(sql_error)?;
    Ok(())
}

/// Every worker's counts and recent times, per kind.
pub(super) fn task_times(state: &mut DbState) -> BackendResult<Vec<TaskTimes>> {
    let counts: Vec<(String, String, i64)> = state
        .conn
        .prepare_cached("SELECT worker, kind, completed FROM task_counts ORDER BY worker, kind")
        .map_err(sql_error)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let mut out = Vec::with_capacity(counts.len());
    for (worker, kind, completed) in counts {
        let recent_secs = state
            .conn
            .prepare_cached(
                "SELECT elapsed_secs FROM task_times WHERE worker = ?1 AND kind = ?2
                 ORDER BY id DESC",
            )
            .map_err(sql_error)?
            .query_map(params![worker, kind], |row| row.get(0))
            .map_err(sql_error)?
            .collect::<Result<Vec<f64>, _>>()
            .map_err(sql_error)?;
        out.push(TaskTimes {
            worker,
            kind,
            completed: completed.max(0) as u64,
            recent_secs,
        });
    }
    Ok(out)
}
