//! `Queue` on Redis Streams. A task is one stream entry (job, chunk, attempt, spec) in its
//! priority's stream; its input bytes sit in `job:{id}:chunks` until the chunk is acked. A lease is
//! one delivery to a consumer, and its token names the entry (`{stream index}/{entry id}`), so a
//! retry, which is always a new entry, makes every older token stale.

use std::time::Duration;

use ::redis::Value;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::keys::{self, DEAD_LETTER_CAP, DEAD_LETTER_STREAM, GROUP, RECLAIMER, TASK_STREAMS};
use super::{backend_error, RedisBackend};
use crate::backend::{BackendError, BackendResult, Lease, NackOutcome, NewTask, Queue, TaskId};

/// What one run of the lease script found.
enum LeaseAttempt {
    Leased(Lease),
    /// Every stream is drained; the newest entry id of each, to block for anything newer.
    Drained([String; 3]),
}

/// Extra time a blocking read may take beyond its own timeout before the server is presumed hung.
const BLOCK_GRACE: Duration = Duration::from_secs(5);

#[async_trait]
impl Queue for RedisBackend {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        let new_batch = || {
            let mut batch = self.scripts.enqueue.prepare_invoke();
            batch.key(&TASK_STREAMS[..]).arg(self.options.max_attempts);
            batch
        };
        let mut batch = new_batch();
        let (mut batch_tasks, mut batch_bytes) = (0usize, 0usize);
        for task in &tasks {
            batch
                .arg(keys::priority_index(task.priority))
                .arg(&task.id.job)
                .arg(task.id.chunk)
                .arg(task.spec.to_string())
                .arg(task.data.as_ref());
            batch_tasks += 1;
            batch_bytes += task.data.len();
            if batch_bytes >= self.options.enqueue_batch_bytes || batch_tasks >= 1024 {
                self.invoke::<i64>(&batch).await?;
                batch = new_batch();
                (batch_tasks, batch_bytes) = (0, 0);
            }
        }
        if batch_tasks > 0 {
            self.invoke::<i64>(&batch).await?;
        }
        Ok(())
    }

    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        let deadline = Instant::now() + wait;
        loop {
            match self.try_lease(worker).await? {
                LeaseAttempt::Leased(lease) => return Ok(Some(lease)),
                LeaseAttempt::Drained(newest) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    self.wait_for_entries_after(&newest, deadline - now).await?;
                }
            }
        }
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        let (stream_index, entry_id) = parse_token(&lease.token)?;
        let extended: i64 = self
            .invoke(
                self.scripts
                    .extend
                    .key(TASK_STREAMS[stream_index - 1])
                    .arg(GROUP)
                    .arg(entry_id)
                    .arg(&lease.worker),
            )
            .await?;
        Ok(extended == 1)
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        let (stream_index, entry_id) = parse_token(&lease.token)?;
        let _held: i64 = self
            .invoke(
                self.scripts
                    .ack
                    .key(&TASK_STREAMS[..])
                    .arg(GROUP)
                    .arg(stream_index)
                    .arg(entry_id)
                    .arg(&lease.id.job)
                    .arg(lease.id.chunk),
            )
            .await?;
        Ok(())
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        let (stream_index, entry_id) = parse_token(&lease.token)?;
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .nack
                    .key(&TASK_STREAMS[..])
                    .key(DEAD_LETTER_STREAM)
                    .arg(GROUP)
                    .arg(stream_index)
                    .arg(entry_id)
                    .arg(&lease.worker)
                    .arg(error)
                    .arg(self.options.max_attempts)
                    .arg(DEAD_LETTER_CAP),
            )
            .await?;
        Ok(match outcome {
            0 => NackOutcome::DeadLettered,
            next if next > 0 => NackOutcome::Retrying {
                next_attempt: next as u32,
            },
            _ => NackOutcome::Stale,
        })
    }

    async fn reclaim_worker(&self, worker: &str) -> BackendResult<usize> {
        let reclaimed: i64 = self
            .invoke(
                self.scripts
                    .reclaim_worker
                    .key(&TASK_STREAMS[..])
                    .key(DEAD_LETTER_STREAM)
                    .arg(GROUP)
                    .arg(worker)
                    .arg(RECLAIMER)
                    .arg(self.options.max_attempts)
                    .arg(DEAD_LETTER_CAP),
            )
            .await?;
        Ok(reclaimed as usize)
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        let min_idle_ms = self.options.visibility_timeout.as_millis().max(1) as u64;
        let reclaimed: i64 = self
            .invoke(
                self.scripts
                    .reclaim_expired
                    .key(&TASK_STREAMS[..])
                    .key(DEAD_LETTER_STREAM)
                    .arg(GROUP)
                    .arg(RECLAIMER)
                    .arg(min_idle_ms)
                    .arg(self.options.max_attempts)
                    .arg(DEAD_LETTER_CAP),
            )
            .await?;
        Ok(reclaimed as usize)
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        let removed: i64 = self
            .invoke(
                self.scripts
                    .cancel
                    .key(&TASK_STREAMS[..])
                    .key(keys::job_tasks(job))
                    .key(keys::job_chunks(job))
                    .arg(GROUP),
            )
            .await?;
        Ok(removed as usize)
    }
}

impl RedisBackend {
    /// One non-blocking pass over the streams, highest priority first.
    async fn try_lease(&self, worker: &str) -> BackendResult<LeaseAttempt> {
        let reply: Vec<Value> = self
            .invoke(
                self.scripts
                    .lease
                    .key(&TASK_STREAMS[..])
                    .key(DEAD_LETTER_STREAM)
                    .arg(GROUP)
                    .arg(worker)
                    .arg(DEAD_LETTER_CAP),
            )
            .await?;
        parse_lease_reply(reply, worker)
    }

    /// Blocks until some stream has an entry newer than `newest` or `timeout` passes. It does not
    /// consume anything (plain XREAD), so the caller's next lease pass still picks by priority.
    async fn wait_for_entries_after(
        &self,
        newest: &[String; 3],
        timeout: Duration,
    ) -> BackendResult<()> {
        let block_ms = timeout.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut conn = self.blocking_connection().await?;
        let mut xread = ::redis::cmd("XREAD");
        xread
            .arg("BLOCK")
            .arg(block_ms)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&TASK_STREAMS[..])
            .arg(&newest[..]);
        let read = xread.query_async::<Value>(&mut conn);
        match tokio::time::timeout(timeout + BLOCK_GRACE, read).await {
            Ok(Ok(_)) => {
                self.return_blocking_connection(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(backend_error(e)),
            Err(_) => Err(BackendError::Unavailable(
                "redis did not answer a blocking read in time".into(),
            )),
        }
    }
}

fn parse_token(token: &str) -> BackendResult<(usize, &str)> {
    let parsed = token.split_once('/').and_then(|(index, id)| {
        let index: usize = index.parse().ok()?;
        (1..=TASK_STREAMS.len())
            .contains(&index)
            .then_some((index, id))
    });
    parsed.ok_or_else(|| {
        BackendError::Other(format!(
            "lease token {token:?} does not come from the redis backend"
        ))
    })
}

fn parse_lease_reply(reply: Vec<Value>, worker: &str) -> BackendResult<LeaseAttempt> {
    let corrupt = |what: &str| BackendError::Corrupt(format!("lease reply: {what}"));
    let mut items = reply.into_iter();
    let stream_index: i64 = field(items.next(), "stream index")?;
    if stream_index == 0 {
        let mut newest: [String; 3] = Default::default();
        for slot in &mut newest {
            *slot = field(items.next(), "newest entry id")?;
        }
        return Ok(LeaseAttempt::Drained(newest));
    }
    let entry_id: String = field(items.next(), "entry id")?;
    let job: String = field(items.next(), "job")?;
    let chunk: u32 = field(items.next(), "chunk")?;
    let attempt: u32 = field(items.next(), "attempt")?;
    let spec_text: String = field(items.next(), "spec")?;
    let data: Vec<u8> = field(items.next(), "data")?;
    let spec = serde_json::from_str(&spec_text).map_err(|e| corrupt(&format!("spec: {e}")))?;
    Ok(LeaseAttempt::Leased(Lease {
        id: TaskId { job, chunk },
        spec,
        data: Bytes::from(data),
        worker: worker.to_string(),
        attempt,
        token: format!("{stream_index}/{entry_id}"),
    }))
}

fn field<T: ::redis::FromRedisValue>(value: Option<Value>, name: &str) -> BackendResult<T> {
    let value = value.ok_or_else(|| BackendError::Corrupt(format!("lease reply: no {name}")))?;
    ::redis::from_owned_redis_value(value)
        .map_err(|e| BackendError::Corrupt(format!("lease reply: {name}: {e}")))
}
