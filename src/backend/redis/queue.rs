//! Leases, queue admin and worker ids on Redis Streams. A task is one stream entry (job, chunk, attempt, kind, spec) in its
//! priority's stream; its input bytes sit in `job:{id}:chunks` until the chunk is acked. A lease is
//! one delivery to a consumer, and its token names the entry and a random nonce recorded with the
//! delivery (`{stream index}/{entry id}/{nonce}`): a retry, which is always a new entry, makes
//! every older token stale, and no one can forge the current one from the entry id alone.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ::redis::streams::{StreamInfoConsumersReply, StreamInfoGroupsReply, StreamRangeReply};
use ::redis::{AsyncCommands, Value};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::keys::{
    self, ALL_STREAMS, COMMAND_SLOTS, DEAD_LETTER_CAP, DEAD_LETTER_STREAM, GROUP, RECLAIMER,
    TASK_STREAMS,
};
use super::store::{push_result, result_invocation, script_outcome, with_verdict};
use super::token::parse_token;
use super::{backend_error, RedisBackend};
use crate::backend::live_output::{LiveOutput, OutputPiece};
use crate::backend::{
    BackendError, BackendResult, Completion, CompletionOutcome, Lease, Leases, NackOutcome,
    NewTask, QueueAdmin, ResultSink, TaskId, WorkerId, WorkerIds, WorkerOffer, MAX_BATCH,
    RESULT_PART_BYTES, RETRY_ELSEWHERE,
};

/// The slots a worker offers command tasks: 0 when it runs none.
fn command_slots(offer: WorkerOffer) -> u32 {
    match offer.commands {
        true => offer.slots.max(1),
        false => 0,
    }
}

/// What one run of the lease script found.
enum LeaseAttempt {
    /// A task, with its input unless that was too large to return inline.
    Leased(Lease, InputBytes),
    /// Every stream is drained; the newest entry id of each, to block for anything newer.
    Drained([String; 6]),
}

/// Whether a lease reply carried the task's input.
enum InputBytes {
    Inline,
    Fetch,
}

/// Inputs up to this size come back inside the lease script's reply; larger ones are read with a
/// plain HGET, which copies them fewer times.
const INLINE_INPUT_LIMIT: usize = 64 << 10;

/// Extra time a blocking read may take beyond its own timeout before the server is presumed hung.
const BLOCK_GRACE: Duration = Duration::from_secs(5);

#[async_trait]
impl Leases for RedisBackend {
    /// Records the worker's command slots in this process (its leases read the command
    /// streams, see `lease.lua`) and in [`COMMAND_SLOTS`], where a master finds whether any live
    /// worker runs commands, and how wide a task one can take.
    async fn set_offer(&self, worker: &str, offer: WorkerOffer) -> BackendResult<()> {
        let slots = command_slots(offer);
        {
            let mut workers = self
                .command_slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match slots {
                0 => workers.remove(worker),
                n => workers.insert(worker.to_string(), n),
            };
        }
        let worker = worker.to_string();
        self.request(|mut conn| {
            let worker = worker.clone();
            async move {
                match slots {
                    0 => conn.hdel::<_, _, ()>(COMMAND_SLOTS, worker).await,
                    n => conn.hset::<_, _, _, ()>(COMMAND_SLOTS, worker, n).await,
                }
            }
        })
        .await
    }

    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        let deadline = Instant::now() + wait;
        loop {
            let attempt = self.lease_pass(worker, 1).await?.into_iter().next();
            match attempt.ok_or_else(|| BackendError::Corrupt("empty lease reply".into()))? {
                LeaseAttempt::Leased(lease, InputBytes::Inline) => return Ok(Some(lease)),
                LeaseAttempt::Leased(lease, InputBytes::Fetch) => {
                    if let Some(lease) = self.with_input(lease).await? {
                        return Ok(Some(lease));
                    }
                }
                LeaseAttempt::Drained(newest) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    self.wait_for_entries_after(worker, &newest, deadline - now)
                        .await?;
                }
            }
        }
    }

    /// Leases the batch with one run of the lease script: one round trip, each delivery with its
    /// own nonce, in priority order as leased one by one.
    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let replies = self.lease_pass(worker, max).await?;
            let mut leases = Vec::new();
            let mut newest = None;
            for reply in replies {
                match reply {
                    LeaseAttempt::Leased(lease, InputBytes::Inline) => leases.push(lease),
                    LeaseAttempt::Leased(lease, InputBytes::Fetch) => {
                        if let Some(lease) = self.with_input(lease).await? {
                            leases.push(lease);
                        }
                    }
                    LeaseAttempt::Drained(last) => {
                        newest.get_or_insert(last);
                    }
                }
            }
            if !leases.is_empty() {
                return Ok(leases);
            }
            let Some(newest) = newest else { continue };
            let now = Instant::now();
            if now >= deadline {
                return Ok(leases);
            }
            self.wait_for_entries_after(worker, &newest, deadline - now)
                .await?;
        }
    }

    /// Settles the batch with one script (`complete.lua`: store each result, then ack it):
    /// one round trip. A result whose payload is too large for one part is stored in
    /// parts, as alone, and settled on its own.
    async fn complete_batch(
        &self,
        _results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let now = crate::time::unix_now();
        let mut invocation = result_invocation(&self.scripts.complete);
        let mut batched = 0usize;
        let mut outcomes: Vec<Option<CompletionOutcome>> = Vec::with_capacity(items.len());
        let mut verdicts = Vec::new();
        let mut stored_matches = HashMap::new();
        for item in items {
            let (lease, result) = (&item.lease, &item.result);
            let (job, chunk) = (&lease.id.job, lease.id.chunk);
            if result.chunk != chunk {
                outcomes.push(Some(Err(BackendError::Other(format!(
                    "result names chunk {} but its lease is for chunk {chunk}",
                    result.chunk
                )))));
                continue;
            }
            let inline = serde_json::to_vec(&result.payload)
                .map_err(|e| BackendError::Other(format!("job {job:?} chunk result: {e}")))?;
            if result.encoded.is_some() || inline.len() > RESULT_PART_BYTES {
                let outcome = match self.put_chunk_result(lease, result).await {
                    Ok(first) => self.ack(lease).await.map(|()| first),
                    Err(err) => Err(err),
                };
                outcomes.push(Some(outcome));
                continue;
            }
            let verdict = self.payload_verdict(lease, result, 0).await?;
            if verdict.is_none()
                && self
                    .passes_job_cap(lease, result, &mut stored_matches)
                    .await?
            {
                outcomes.push(Some(self.ack(lease).await.map(|()| false)));
                continue;
            }
            push_result(
                &mut invocation,
                lease,
                result,
                0,
                inline,
                now,
                verdict.is_some(),
            )?;
            batched += 1;
            outcomes.push(None);
            verdicts.push(verdict);
        }
        let replies: Vec<(i64, String)> = if batched == 0 {
            Vec::new()
        } else {
            self.invoke(&invocation).await?
        };
        let mut replies = replies.into_iter().zip(verdicts);
        // Stored (or refused): none of these tasks runs under its lease any more.
        self.forget_live(items.iter().map(|item| &item.lease)).await;
        Ok(items
            .iter()
            .zip(outcomes)
            .map(|(item, outcome)| match outcome {
                Some(outcome) => outcome,
                None => match replies.next() {
                    Some(((code, detail), verdict)) => {
                        let outcome = script_outcome(&item.lease, code, detail);
                        with_verdict(outcome, verdict).map(|stored| stored == 1)
                    }
                    None => Err(BackendError::Other("batch reply missing".into())),
                },
            })
            .collect())
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        let token = parse_token(&lease.token);
        let extended: i64 = self
            .invoke(
                self.scripts
                    .extend
                    .key(&TASK_STREAMS[..])
                    .arg(GROUP)
                    .arg(token.stream_index)
                    .arg(token.entry_id)
                    .arg(&lease.worker)
                    .arg(&lease.id.job)
                    .arg(lease.id.chunk)
                    .arg(token.nonce)
                    .arg(RETRY_ELSEWHERE.as_millis() as u64),
            )
            .await?;
        Ok(extended == 1)
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        let held = self.extend(lease).await?;
        if held {
            self.append_live(lease, piece).await?;
        }
        Ok(held)
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        self.forget_live([lease]).await;
        let token = parse_token(&lease.token);
        let _held: i64 = self
            .invoke(
                self.scripts
                    .ack
                    .key(&TASK_STREAMS[..])
                    .arg(GROUP)
                    .arg(token.stream_index)
                    .arg(token.entry_id)
                    .arg(&lease.id.job)
                    .arg(lease.id.chunk)
                    .arg(&lease.worker)
                    .arg(token.nonce)
                    .arg(RETRY_ELSEWHERE.as_millis() as u64),
            )
            .await?;
        Ok(())
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        self.forget_live([lease]).await;
        let token = parse_token(&lease.token);
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .nack
                    .key(&TASK_STREAMS[..])
                    .key(DEAD_LETTER_STREAM)
                    .arg(GROUP)
                    .arg(token.stream_index)
                    .arg(token.entry_id)
                    .arg(&lease.worker)
                    .arg(error)
                    .arg(self.options.max_attempts)
                    .arg(DEAD_LETTER_CAP)
                    .arg(&lease.id.job)
                    .arg(lease.id.chunk)
                    .arg(token.nonce)
                    .arg(RETRY_ELSEWHERE.as_millis() as u64),
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

    async fn release_unheld(&self, worker: &str, held: &[String]) -> BackendResult<usize> {
        let mut invocation = self.scripts.release_unheld.prepare_invoke();
        invocation
            .key(&TASK_STREAMS[..])
            .key(DEAD_LETTER_STREAM)
            .arg(GROUP)
            .arg(worker)
            .arg(RECLAIMER)
            .arg(self.options.max_attempts)
            .arg(DEAD_LETTER_CAP);
        for token in held {
            let token = parse_token(token);
            invocation.arg(format!("{}/{}", token.stream_index, token.entry_id));
        }
        let released: i64 = self.invoke(&invocation).await?;
        Ok(released as usize)
    }
}

#[async_trait]
impl QueueAdmin for RedisBackend {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> BackendResult<()> {
        let mut batch_start = 0;
        let mut batch_bytes = 0;
        for (index, task) in tasks.iter().enumerate() {
            batch_bytes += task.data.len();
            let batch_len = index + 1 - batch_start;
            if batch_bytes >= self.options.enqueue_batch_bytes || batch_len >= 1024 {
                self.enqueue_batch(&tasks[batch_start..=index]).await?;
                (batch_start, batch_bytes) = (index + 1, 0);
            }
        }
        if batch_start < tasks.len() {
            self.enqueue_batch(&tasks[batch_start..]).await?;
        }
        Ok(())
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

    async fn live_output(&self, job: &str, chunk: u32) -> BackendResult<Option<LiveOutput>> {
        self.read_live(job, chunk).await
    }

    async fn live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        self.read_live_tasks(job).await
    }

    async fn cancel_job(&self, job: &str) -> BackendResult<usize> {
        self.forget_live_job(job).await?;
        let removed: i64 = self
            .invoke(
                self.scripts
                    .cancel
                    .key(&TASK_STREAMS[..])
                    .key(keys::job_tasks(job))
                    .key(keys::job_chunks(job))
                    .key(keys::job_fences(job))
                    .arg(GROUP),
            )
            .await?;
        Ok(removed as usize)
    }

    async fn cancel_if_unstarted(&self, job: &str) -> BackendResult<bool> {
        let cancelled: i64 = self
            .invoke(
                self.scripts
                    .cancel_unstarted
                    .key(&TASK_STREAMS[..])
                    .key(keys::job_tasks(job))
                    .key(keys::job_chunks(job))
                    .key(keys::job_fences(job))
                    .key(keys::job_results(job))
                    .key(keys::job_status(job))
                    .arg(GROUP),
            )
            .await?;
        Ok(cancelled == 1)
    }

    async fn oldest_waiting(&self) -> BackendResult<Vec<(crate::backend::Priority, f64)>> {
        let priorities = [
            crate::backend::Priority::High,
            crate::backend::Priority::Medium,
            crate::backend::Priority::Low,
        ];
        let mut oldest = Vec::new();
        let mut oldest_by_priority: [Option<u64>; 3] = [None; 3];
        for (index, stream) in ALL_STREAMS.into_iter().enumerate() {
            let first: Option<String> = self
                .request(|mut conn| async move {
                    let groups: StreamInfoGroupsReply = conn.xinfo_groups(stream).await?;
                    let delivered = groups
                        .groups
                        .into_iter()
                        .find(|g| g.name == GROUP)
                        .map_or_else(|| "0-0".to_string(), |g| g.last_delivered_id);
                    let after = format!("({delivered}");
                    let range: StreamRangeReply = conn.xrange_count(stream, after, "+", 1).await?;
                    Ok(range.ids.into_iter().next().map(|entry| entry.id))
                })
                .await?;
            // An entry id is `{unix milliseconds}-{sequence}`, stamped by Redis when it was added.
            let millis = first.and_then(|id| id.split('-').next()?.parse::<u64>().ok());
            let slot =
                &mut oldest_by_priority[keys::priority_index(keys::stream_priority(index + 1)) - 1];
            if let Some(millis) = millis {
                *slot = Some(slot.map_or(millis, |seen| seen.min(millis)));
            }
        }
        for (priority, millis) in priorities.into_iter().zip(oldest_by_priority) {
            if let Some(millis) = millis {
                oldest.push((priority, millis as f64 / 1000.0));
            }
        }
        Ok(oldest)
    }

    async fn recent_workers(&self, window: Duration) -> BackendResult<Option<Vec<WorkerId>>> {
        let window_ms = window.as_millis() as usize;
        let mut recent = BTreeSet::new();
        for stream in ALL_STREAMS {
            let reply: StreamInfoConsumersReply = self
                .request(|mut conn| async move { conn.xinfo_consumers(stream, GROUP).await })
                .await?;
            recent.extend(
                reply
                    .consumers
                    .into_iter()
                    .filter(|c| c.idle < window_ms && c.name != RECLAIMER)
                    .map(|c| c.name),
            );
        }
        // Idle workers blocked on an empty queue lease nothing, but renew their id claim.
        let seen: Vec<String> = self
            .request(|mut conn| async move {
                let (secs, micros): (u64, u64) =
                    ::redis::cmd("TIME").query_async(&mut conn).await?;
                let now_ms = secs * 1000 + micros / 1000;
                let since = now_ms.saturating_sub(window_ms as u64);
                conn.zrangebyscore(keys::WORKERS_SEEN, since, "+inf").await
            })
            .await?;
        recent.extend(seen);
        Ok(Some(recent.into_iter().collect()))
    }

    /// The most slots of a worker in [`COMMAND_SLOTS`] that renewed its id claim within
    /// `window` (an idle worker leases nothing for a while, yet renews its claim).
    async fn command_slots_live(&self, window: Duration) -> BackendResult<Option<u32>> {
        let window_ms = window.as_millis() as u64;
        let live = self
            .request(|mut conn| async move {
                let (secs, micros): (u64, u64) =
                    ::redis::cmd("TIME").query_async(&mut conn).await?;
                let since = (secs * 1000 + micros / 1000).saturating_sub(window_ms);
                let offers: Vec<(String, u32)> = conn.hgetall(COMMAND_SLOTS).await?;
                let mut widest = 0;
                for (worker, slots) in offers {
                    let seen: Option<f64> = conn.zscore(keys::WORKERS_SEEN, &worker).await?;
                    if seen.is_some_and(|ms| ms >= since as f64) {
                        widest = widest.max(slots);
                    }
                }
                Ok(widest)
            })
            .await?;
        Ok(Some(live))
    }
}

#[async_trait]
impl WorkerIds for RedisBackend {
    async fn hold_worker_id(&self, worker: &str, holder: &str) -> BackendResult<bool> {
        let held = self.try_hold_worker_id(worker, holder, None).await?;
        Ok(held == super::Hold::Held)
    }

    async fn release_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()> {
        self.give_up_worker_id(worker, holder).await
    }
}

impl RedisBackend {
    /// The command slots `worker` offers: 0 when it runs no command task (it never reads their
    /// streams). The lease scripts take it as is.
    fn command_slots(&self, worker: &str) -> u32 {
        self.command_slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(worker)
            .copied()
            .unwrap_or(0)
    }

    /// Reads a leased task's input. If it vanished meanwhile (its job was cancelled), the lease
    /// is returned and `None` tells the caller to lease again.
    async fn with_input(&self, mut lease: Lease) -> BackendResult<Option<Lease>> {
        let chunks = keys::job_chunks(&lease.id.job);
        let chunk = lease.id.chunk;
        let data: Option<Vec<u8>> = self
            .request(|mut conn| {
                let chunks = &chunks;
                async move { conn.hget(chunks, chunk).await }
            })
            .await?;
        match data {
            Some(data) => {
                lease.data = Bytes::from(data);
                Ok(Some(lease))
            }
            None => {
                self.nack(&lease, "input bytes vanished before they were read")
                    .await?;
                Ok(None)
            }
        }
    }

    /// Writes a batch's input bytes with plain HSETs and runs the enqueue script, in one
    /// MULTI/EXEC so no worker ever sees a task without its input.
    async fn enqueue_batch(&self, tasks: &[NewTask]) -> BackendResult<()> {
        let mut invocation = self.scripts.enqueue.prepare_invoke();
        invocation
            .key(&TASK_STREAMS[..])
            .arg(self.options.max_attempts);
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for task in tasks {
            pipe.hset(
                keys::job_chunks(&task.id.job),
                task.id.chunk,
                task.data.as_ref(),
            )
            .ignore();
            invocation
                .arg(keys::stream_index(task.priority, &task.kind))
                .arg(&task.id.job)
                .arg(task.id.chunk)
                .arg(&task.kind)
                .arg(task.spec.to_string())
                .arg(task.max_matches)
                .arg(task.slots.max(1));
        }
        pipe.invoke_script(&invocation).ignore();
        let run = |mut conn: ::redis::aio::ConnectionManager| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        };
        match self.send(run).await {
            // After a Redis restart the script cache is empty: load it and run the batch again
            // (the HSETs and the script are safe to repeat).
            Err(e) if e.kind() == ::redis::ErrorKind::NoScriptError => {
                let load = |mut conn: ::redis::aio::ConnectionManager| async move {
                    self.scripts
                        .enqueue
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await
                };
                self.send(load).await.map_err(backend_error)?;
                self.send(run).await.map_err(backend_error)
            }
            result => result.map_err(backend_error),
        }
    }

    /// One non-blocking pass of the lease script over the streams, highest priority first, for
    /// up to `count` tasks, each delivery with a nonce of its own: what it leased, in order, or
    /// the one reply saying every stream is drained.
    async fn lease_pass(&self, worker: &str, count: usize) -> BackendResult<Vec<LeaseAttempt>> {
        let nonces: Vec<String> = (0..count)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let mut invocation = self.scripts.lease.prepare_invoke();
        invocation
            .key(&TASK_STREAMS[..])
            .key(DEAD_LETTER_STREAM)
            .arg(GROUP)
            .arg(worker)
            .arg(DEAD_LETTER_CAP)
            .arg(INLINE_INPUT_LIMIT)
            .arg(self.command_slots(worker))
            .arg(count);
        for nonce in &nonces {
            invocation.arg(nonce);
        }
        let replies: Vec<Vec<Value>> = self.invoke_once(&invocation).await?;
        replies
            .into_iter()
            .zip(&nonces)
            .map(|(reply, nonce)| parse_lease_reply(reply, worker, nonce))
            .collect()
    }

    /// Blocks until some stream `worker` reads has an entry newer than `newest` or `timeout`
    /// passes. It does not consume anything (plain XREAD), so the caller's next lease pass still
    /// picks by priority.
    async fn wait_for_entries_after(
        &self,
        worker: &str,
        newest: &[String; 6],
        timeout: Duration,
    ) -> BackendResult<()> {
        let read = match self.command_slots(worker) {
            0 => TASK_STREAMS.len(),
            _ => ALL_STREAMS.len(),
        };
        let block_ms = timeout.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut conn = self.blocking_connection().await?;
        let mut xread = ::redis::cmd("XREAD");
        xread
            .arg("BLOCK")
            .arg(block_ms)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&ALL_STREAMS[..read])
            .arg(&newest[..read]);
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

fn parse_lease_reply(reply: Vec<Value>, worker: &str, nonce: &str) -> BackendResult<LeaseAttempt> {
    let mut items = reply.into_iter();
    let stream_index: i64 = field(items.next(), "stream index")?;
    if stream_index == 0 {
        let mut newest: [String; 6] = Default::default();
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
    let data: Option<Vec<u8>> = field(items.next(), "data")?;
    let kind: String = field(items.next(), "kind")?;
    // A spec that does not decode still becomes a lease: its worker fails and nacks it at once,
    // rather than the task staying invisible, leased to nobody who knows, until it expires.
    let spec = serde_json::from_str(&spec_text).unwrap_or(serde_json::Value::Null);
    let input = match data {
        Some(_) => InputBytes::Inline,
        None => InputBytes::Fetch,
    };
    let lease = Lease {
        id: TaskId { job, chunk },
        kind,
        spec,
        data: data.map(Bytes::from).unwrap_or_default(),
        worker: worker.to_string(),
        attempt,
        token: format!("{stream_index}/{entry_id}/{nonce}"),
    };
    Ok(LeaseAttempt::Leased(lease, input))
}

fn field<T: ::redis::FromRedisValue>(value: Option<Value>, name: &str) -> BackendResult<T> {
    let value = value.ok_or_else(|| BackendError::Corrupt(format!("lease reply: no {name}")))?;
    ::redis::from_owned_redis_value(value)
        .map_err(|e| BackendError::Corrupt(format!("lease reply: {name}: {e}")))
}
