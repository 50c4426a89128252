//! The queue half of the embedded backend: SQL run on the database thread. A task row moves
//! queued → leased → (deleted on ack | queued again | dead). Each delivery gets a fresh random
//! `token`, so an ack, nack or extension from an older delivery, or from anyone but the worker
//! holding the lease, is recognised as stale, and no one can guess the current one.

use std::collections::HashSet;

use bytes::Bytes;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::backend::{
    BackendResult, Completion, CompletionOutcome, Lease, NackOutcome, NewTask, Priority,
    ResultCheck, TaskId, WorkerOffer, RETRY_ELSEWHERE,
};

use super::db::{sql_error, DbState, SpoolRange};
use super::EmbeddedConfig;

fn priority_rank(priority: Priority) -> i64 {
    match priority {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

/// Per priority with a queued task, the submission time of the oldest job that has one.
pub(super) fn oldest_waiting(state: &mut DbState) -> BackendResult<Vec<(Priority, f64)>> {
    let mut statement = state
        .conn
        .prepare_cached(
            "SELECT tasks.priority, MIN(jobs.created_at) FROM tasks JOIN jobs ON jobs.id = tasks.job
             WHERE tasks.state = 'queued' GROUP BY tasks.priority",
        )
        .map_err(sql_error)?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, f64>(1)?)))
        .map_err(sql_error)?;
    let mut oldest = Vec::new();
    for row in rows {
        let (rank, created_at) = row.map_err(sql_error)?;
        let priority = [Priority::High, Priority::Medium, Priority::Low]
            .into_iter()
            .find(|p| priority_rank(*p) == rank);
        if let Some(priority) = priority {
            oldest.push((priority, created_at));
        }
    }
    Ok(oldest)
}

/// Spools each task's bytes, then records the tasks in one transaction.
pub(super) fn enqueue(state: &mut DbState, tasks: Vec<NewTask>) -> BackendResult<()> {
    let mut placed = Vec::with_capacity(tasks.len());
    for task in &tasks {
        // Tasks without input (parameter ranges) open no spool file: a queue of many such jobs
        // would otherwise hold one file descriptor per job.
        if task.data.is_empty() {
            placed.push(0);
            continue;
        }
        let offset = state.spool_append(&task.id.job, &task.data)?;
        placed.push(offset);
    }
    let tx = state.conn.transaction().map_err(sql_error)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO tasks
                    (job, chunk, priority, kind, spec, state, spool_offset, spool_len, max_matches,
                     slots)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9)",
            )
            .map_err(sql_error)?;
        for (task, offset) in tasks.iter().zip(placed) {
            insert
                .execute(params![
                    task.id.job,
                    task.id.chunk,
                    priority_rank(task.priority),
                    task.kind,
                    task.spec.to_string(),
                    offset as i64,
                    task.data.len() as i64,
                    i64::try_from(task.max_matches).unwrap_or(i64::MAX),
                    task.slots.max(1),
                ])
                .map_err(sql_error)?;
        }
    }
    tx.commit().map_err(sql_error)
}

/// Leases the oldest queued task of the highest priority that `offer` allows, if any (a command
/// task only when the worker runs them, takes no more slots than it has, and did not just fail
/// on it, see [`RETRY_ELSEWHERE`]): a batch of one, so a task leased alone is made a lease
/// exactly as one leased in a batch (a spec that does not decode included). The lease's `data`
/// is empty: the caller reads the returned spool range off the database thread.
pub(super) fn lease(
    state: &mut DbState,
    config: &EmbeddedConfig,
    worker: &str,
    offer: WorkerOffer,
) -> BackendResult<Option<(Lease, SpoolRange)>> {
    Ok(lease_batch(state, config, worker, 1, offer)?.pop())
}

/// A queued task as the lease query reads it: rowid, job, chunk, spec, attempts, spool offset,
/// spool length, kind.
type QueuedRow = (i64, String, u32, String, u32, i64, i64, String);

/// Leases up to `max` queued tasks in one transaction, highest priority first then oldest, each
/// with its own fresh token and deadline. The leases' `data` are empty: the caller reads the
/// returned spool ranges off the database thread.
pub(super) fn lease_batch(
    state: &mut DbState,
    config: &EmbeddedConfig,
    worker: &str,
    max: usize,
    offer: WorkerOffer,
) -> BackendResult<Vec<(Lease, SpoolRange)>> {
    let now = state.now();
    let deadline = now + config.visibility_timeout.as_secs_f64();
    let tx = state.conn.transaction().map_err(sql_error)?;
    let rows: Vec<QueuedRow> = {
        let mut select = tx
            .prepare_cached(
                "SELECT rowid, job, chunk, spec, attempts, spool_offset, spool_len, kind FROM tasks
                 WHERE state = 'queued'
                   AND (kind != 'command'
                        OR (?2 AND slots <= ?3
                            AND NOT (avoid_worker IS ?4 AND avoid_until > ?5)))
                 ORDER BY priority, rowid LIMIT ?1",
            )
            .map_err(sql_error)?;
        let params = params![max as i64, offer.commands, offer.slots, worker, now];
        let rows = select
            .query_map(params, |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ))
            })
            .map_err(sql_error)?;
        rows.collect::<Result<_, _>>().map_err(sql_error)?
    };
    let mut leased = Vec::with_capacity(rows.len());
    {
        let mut update = tx
            .prepare_cached(
                "UPDATE tasks SET state = 'leased', worker = ?2, deadline = ?3, attempts = ?4,
                    token = ?5
                 WHERE rowid = ?1",
            )
            .map_err(sql_error)?;
        for (rowid, job, chunk, spec, attempts, offset, len, kind) in rows {
            let token = new_token();
            update
                .execute(params![rowid, worker, deadline, attempts + 1, token])
                .map_err(sql_error)?;
            leased.push((job, chunk, spec, attempts + 1, offset, len, kind, token));
        }
    }
    tx.commit().map_err(sql_error)?;
    let mut leases = Vec::with_capacity(leased.len());
    for (job, chunk, spec, attempt, offset, len, kind, token) in leased {
        // A spec that does not decode still becomes a lease: its worker fails and nacks it, as
        // it would one leased alone, instead of the whole batch being lost in limbo.
        let spec = serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null);
        let range = SpoolRange {
            path: state.spool_file(&job),
            offset: offset as u64,
            len: len as u64,
        };
        let lease = Lease {
            id: TaskId { job, chunk },
            kind,
            spec,
            data: Bytes::new(),
            worker: worker.to_string(),
            attempt,
            token,
        };
        leases.push((lease, range));
    }
    Ok(leases)
}

/// Stores each item's result and acks its lease in one transaction: one WAL commit for the whole
/// batch. Each item runs in a savepoint, so an item refused (stale token, out of range) is rolled
/// back alone while the others commit; an item is acked only after its result is recorded. Each
/// job's status is settled once, after all of its results.
pub(super) fn complete_batch(
    state: &mut DbState,
    items: &[Completion],
    check: Option<&dyn ResultCheck>,
) -> BackendResult<Vec<CompletionOutcome>> {
    state.conn.execute_batch("BEGIN").map_err(sql_error)?;
    match complete_in_transaction(state, items, check) {
        Ok((outcomes, jobs)) => {
            state.conn.execute_batch("COMMIT").map_err(sql_error)?;
            // Spools are files, outside the transaction: freed only once the acks are durable.
            for job in jobs {
                release_spool_if_drained(state, &job)?;
            }
            Ok(outcomes)
        }
        Err(err) => {
            let _ = state.conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

/// The outcomes, and the jobs that had an item settled.
type Settled = (Vec<CompletionOutcome>, Vec<String>);

fn complete_in_transaction(
    state: &mut DbState,
    items: &[Completion],
    check: Option<&dyn ResultCheck>,
) -> BackendResult<Settled> {
    let mut outcomes = Vec::with_capacity(items.len());
    let mut jobs: Vec<String> = Vec::new();
    for item in items {
        state
            .conn
            .execute_batch("SAVEPOINT item")
            .map_err(sql_error)?;
        let outcome = super::store::record_result(state, &item.lease, &item.result, 0, check)
            .and_then(|first| delete_acked(state, &item.lease).map(|_| first));
        match &outcome {
            Ok(_) => {
                if !jobs.contains(&item.lease.id.job) {
                    jobs.push(item.lease.id.job.clone());
                }
                state
                    .conn
                    .execute_batch("RELEASE item")
                    .map_err(sql_error)?;
            }
            Err(_) => state
                .conn
                .execute_batch("ROLLBACK TO item; RELEASE item")
                .map_err(sql_error)?,
        }
        outcomes.push(outcome);
    }
    for job in &jobs {
        super::store::settle_status(state, job)?;
    }
    Ok((outcomes, jobs))
}

/// A delivery's token: 128 random bits from the operating system, in hex behind a letter (so
/// SQLite never mistakes it for a number), unguessable by other connections.
fn new_token() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// Pushes a held lease's deadline forward.
pub(super) fn extend(
    state: &mut DbState,
    config: &EmbeddedConfig,
    lease: &Lease,
) -> BackendResult<bool> {
    let deadline = state.now() + config.visibility_timeout.as_secs_f64();
    let changed = state
        .conn
        .prepare_cached(
            "UPDATE tasks SET deadline = ?5
             WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND worker = ?4 AND state = 'leased'",
        )
        .map_err(sql_error)?
        .execute(params![
            lease.id.job,
            lease.id.chunk,
            lease.token,
            lease.worker,
            deadline
        ])
        .map_err(sql_error)?;
    Ok(changed == 1)
}

/// Deletes an acked task; frees the job's spool once no task of the job remains.
pub(super) fn ack(state: &mut DbState, lease: &Lease) -> BackendResult<()> {
    if delete_acked(state, lease)? {
        release_spool_if_drained(state, &lease.id.job)?;
    }
    Ok(())
}

/// Deletes the task of a held lease; false if the lease is not held (a stale ack is ignored).
fn delete_acked(state: &mut DbState, lease: &Lease) -> BackendResult<bool> {
    let changed = state
        .conn
        .prepare_cached(
            "DELETE FROM tasks
             WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND worker = ?4 AND state = 'leased'",
        )
        .map_err(sql_error)?
        .execute(params![
            lease.id.job,
            lease.id.chunk,
            lease.token,
            lease.worker
        ])
        .map_err(sql_error)?;
    Ok(changed == 1)
}

/// Returns a failed task: queued again, or dead-lettered (failing its job) at `max_attempts`.
pub(super) fn nack(
    state: &mut DbState,
    config: &EmbeddedConfig,
    lease: &Lease,
    error: &str,
) -> BackendResult<NackOutcome> {
    let now = state.now();
    let tx = state.conn.transaction().map_err(sql_error)?;
    let attempts: Option<u32> = tx
        .prepare_cached(
            "SELECT attempts FROM tasks
             WHERE job = ?1 AND chunk = ?2 AND token = ?3 AND worker = ?4 AND state = 'leased'",
        )
        .map_err(sql_error)?
        .query_row(
            params![lease.id.job, lease.id.chunk, lease.token, lease.worker],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    let Some(attempts) = attempts else {
        return Ok(NackOutcome::Stale);
    };
    let outcome = if attempts >= config.max_attempts {
        dead_letter(&tx, &lease.id, error, now)?;
        NackOutcome::DeadLettered
    } else {
        tx.prepare_cached(
            "UPDATE tasks SET state = 'queued', worker = NULL, deadline = NULL, last_error = ?3,
                avoid_worker = ?4, avoid_until = ?5
             WHERE job = ?1 AND chunk = ?2",
        )
        .map_err(sql_error)?
        .execute(params![
            lease.id.job,
            lease.id.chunk,
            error,
            lease.worker,
            now + RETRY_ELSEWHERE.as_secs_f64()
        ])
        .map_err(sql_error)?;
        NackOutcome::Retrying {
            next_attempt: attempts + 1,
        }
    };
    tx.commit().map_err(sql_error)?;
    Ok(outcome)
}

/// Marks a task dead and fails its job with `error` (unless the job already finished).
fn dead_letter(tx: &Transaction<'_>, id: &TaskId, error: &str, now: f64) -> BackendResult<()> {
    tx.prepare_cached(
        "UPDATE tasks SET state = 'dead', worker = NULL, deadline = NULL, last_error = ?3
         WHERE job = ?1 AND chunk = ?2",
    )
    .map_err(sql_error)?
    .execute(params![id.job, id.chunk, error])
    .map_err(sql_error)?;
    let message = format!("chunk {} failed: {error}", id.chunk);
    tx.prepare_cached(
        "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3
         WHERE id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled')",
    )
    .map_err(sql_error)?
    .execute(params![id.job, message, now])
    .map_err(sql_error)?;
    Ok(())
}

/// Returns leases matching `condition` to the queue, except those whose token is in `keep`; a
/// task already delivered `max_attempts` times is dead-lettered instead, so a chunk that kills
/// every worker cannot loop forever.
fn reclaim_where(
    state: &mut DbState,
    config: &EmbeddedConfig,
    condition: &str,
    param: rusqlite::types::Value,
    keep: &HashSet<String>,
) -> BackendResult<usize> {
    let now = state.now();
    let tx = state.conn.transaction().map_err(sql_error)?;
    let leases: Vec<(String, u32, u32, Option<String>)> = {
        let sql = format!(
            "SELECT job, chunk, attempts, worker, token FROM tasks
             WHERE state = 'leased' AND {condition}"
        );
        let mut select = tx.prepare(&sql).map_err(sql_error)?;
        let rows = select
            .query_map([param], |row| {
                // Rows leased before tokens were text hold the number 0: no worker holds those.
                let token = match row.get(4)? {
                    rusqlite::types::Value::Text(token) => Some(token),
                    _ => None,
                };
                Ok(((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?), token))
            })
            .map_err(sql_error)?;
        let rows: Vec<_> = rows.collect::<Result<_, _>>().map_err(sql_error)?;
        rows.into_iter()
            .filter(|(_, token)| !token.as_ref().is_some_and(|t| keep.contains(t)))
            .map(|(lease, _)| lease)
            .collect()
    };
    for (job, chunk, attempts, worker) in &leases {
        let id = TaskId {
            job: job.clone(),
            chunk: *chunk,
        };
        if *attempts >= config.max_attempts {
            let worker = worker.as_deref().unwrap_or("?");
            let error = format!("lost {attempts} times (last by worker {worker})");
            dead_letter(&tx, &id, &error, now)?;
        } else {
            tx.prepare_cached(
                "UPDATE tasks SET state = 'queued', worker = NULL, deadline = NULL
                 WHERE job = ?1 AND chunk = ?2",
            )
            .map_err(sql_error)?
            .execute(params![id.job, id.chunk])
            .map_err(sql_error)?;
        }
    }
    tx.commit().map_err(sql_error)?;
    Ok(leases.len())
}

/// Returns every lease of `worker` to the queue.
pub(super) fn reclaim_worker(
    state: &mut DbState,
    config: &EmbeddedConfig,
    worker: &str,
) -> BackendResult<usize> {
    reclaim_where(
        state,
        config,
        "worker = ?1",
        worker.to_string().into(),
        &HashSet::new(),
    )
}

/// Returns every lease of `worker` to the queue except those whose tokens are in `held`.
pub(super) fn release_unheld(
    state: &mut DbState,
    config: &EmbeddedConfig,
    worker: &str,
    held: &HashSet<String>,
) -> BackendResult<usize> {
    reclaim_where(
        state,
        config,
        "worker = ?1",
        worker.to_string().into(),
        held,
    )
}

/// Returns every lease past its deadline to the queue.
pub(super) fn reclaim_expired(
    state: &mut DbState,
    config: &EmbeddedConfig,
) -> BackendResult<usize> {
    let now = state.now();
    reclaim_where(state, config, "deadline < ?1", now.into(), &HashSet::new())
}

/// Returns every lease to the queue without counting it as a failed delivery (see
/// `EmbeddedBackend::release_all_leases`).
pub(super) fn release_all_leases(state: &mut DbState) -> BackendResult<usize> {
    state
        .conn
        .prepare_cached(
            "UPDATE tasks SET state = 'queued', worker = NULL, deadline = NULL,
                attempts = MAX(attempts - 1, 0)
             WHERE state = 'leased'",
        )
        .map_err(sql_error)?
        .execute([])
        .map_err(sql_error)
}

/// Removes a job's queued and leased tasks (a holder's next extend finds its lease lost).
pub(super) fn cancel_job(state: &mut DbState, job: &str) -> BackendResult<usize> {
    // Leased tasks go too, so their holders' next extend finds the lease lost and stops the
    // task; the count is of queued tasks only, as the caller reports it.
    let queued: i64 = state
        .conn
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE job = ?1 AND state = 'queued'")
        .map_err(sql_error)?
        .query_row(params![job], |row| row.get(0))
        .map_err(sql_error)?;
    let delete = |state: &mut DbState| {
        state
            .conn
            .prepare_cached("DELETE FROM tasks WHERE job = ?1 AND state IN ('queued', 'leased')")?
            .execute(params![job])
    };
    let removed = match delete(state) {
        Ok(removed) => removed,
        Err(err) if is_disk_full(&err) => {
            // Even a DELETE needs room in the write-ahead log. The job is being given up, so its
            // spool (most likely what filled the disk) goes first, then the DELETE runs again.
            state.spool_remove(job);
            delete(state).map_err(sql_error)?
        }
        Err(err) => return Err(sql_error(err)),
    };
    release_spool_if_drained(state, job)?;
    Ok(removed.min(queued.max(0) as usize))
}

/// Removes all of a job's tasks if nothing of it started (see `QueueAdmin::cancel_if_unstarted`): no
/// task ever delivered (`attempts` counts deliveries, and a leased or dead task has one), no
/// stored result, and the job not finished. Calls run one at a time on the database thread, so
/// no lease can slip between the check and the delete; the transaction keeps them one commit.
/// A lease the master handed back at its own restart is not counted as a delivery: no result of
/// it can be stored, so it did not start anything.
pub(super) fn cancel_if_unstarted(state: &mut DbState, job: &str) -> BackendResult<bool> {
    let cancelled = match delete_unstarted(state, job) {
        Ok(cancelled) => cancelled,
        Err(err) if is_disk_full(&err) => {
            // As in `cancel_job`: the DELETE needs room in the write-ahead log. Only the DELETE
            // writes, so the job was found unstarted, and nothing else runs on this thread to
            // change that: its spool goes to make the room, and the DELETE runs again.
            state.spool_remove(job);
            delete_unstarted(state, job).map_err(sql_error)?
        }
        Err(err) => return Err(sql_error(err)),
    };
    if cancelled {
        release_spool_if_drained(state, job)?;
    }
    Ok(cancelled)
}

/// The check and the delete of `cancel_if_unstarted`, in one transaction.
fn delete_unstarted(state: &mut DbState, job: &str) -> rusqlite::Result<bool> {
    let tx = state.conn.transaction()?;
    if job_started(&tx, job)? {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM tasks WHERE job = ?1")?
        .execute(params![job])?;
    tx.commit()?;
    Ok(true)
}

/// Whether any of `job` started: finished, a result stored, or a task delivered at least once.
fn job_started(conn: &rusqlite::Connection, job: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1
                    AND status IN ('completed', 'failed', 'cancelled'))
             OR EXISTS (SELECT 1 FROM results WHERE job = ?1)
             OR EXISTS (SELECT 1 FROM tasks WHERE job = ?1 AND (state != 'queued' OR attempts > 0))",
    )?
    .query_row(params![job], |row| row.get(0))
}

fn is_disk_full(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::DiskFull
    )
}

fn release_spool_if_drained(state: &mut DbState, job: &str) -> BackendResult<()> {
    let remaining: bool = state
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tasks WHERE job = ?1 AND state != 'dead')")
        .map_err(sql_error)?
        .query_row(params![job], |row| row.get(0))
        .map_err(sql_error)?;
    if !remaining {
        state.spool_remove(job);
    }
    Ok(())
}
