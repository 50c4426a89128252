//! Job, result, monitor and genome stores on plain Redis keys: `job:{id}:status` (a word), `job:{id}:info` and `job:{id}:stats`
//! (hashes), `job:{id}:results` (chunk → result header, first write wins) with each result's
//! payload in parts (`job:{id}:result:{chunk}`), `worker:{id}:metrics` (JSON with a TTL) and the
//! capped `alerts:history` list. Result writes pass the lease fence inside their Lua script.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::{AsyncCommands, ScriptInvocation};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::keys::{
    self, ALERT_HISTORY, GROUP, JOBS_INDEX, RESULTS_REFUSED, STAGING_TTL_MS, TASK_STREAMS,
    TASK_WORKERS_INDEX, WORKERS_INDEX,
};
use super::token::parse_token;
use super::RedisBackend;
use crate::backend::capability::{
    put_in_parts, GenomeStore, JobStore, MonitorSink, MonitorStore, ResultSink, ResultStore,
};
use crate::backend::genome::is_genome_hash;
use crate::backend::{
    short_summary, BackendError, BackendResult, ChunkResult, CreateOutcome, GenomeRecord,
    GenomeRemoval, GenomeWriter, JobRecord, JobStatus, JobSummary, Lease, Priority, Progress,
    PruneReport, RefusalReason, StoredKind, StoredResult, TaskTimes, WorkerId, RESULT_PART_BYTES,
    TASK_TIMES_KEPT,
};

/// How many job scripts a group sends before it waits for the first reply: enough to hide
/// the round trip, few enough that one group's replies stay small.
const IN_FLIGHT: usize = 256;

/// The raw keys of one job, as read in one round trip.
type RawJob = (Option<String>, HashMap<String, String>, Option<u32>);

#[async_trait]
impl JobStore for RedisBackend {
    async fn create_job(&self, job: &JobRecord) -> BackendResult<CreateOutcome> {
        let spec = serde_json::to_string(&job.spec)
            .map_err(|e| BackendError::Other(format!("job {:?} spec: {e}", job.id)))?;
        let created: i64 = self
            .invoke(
                self.scripts
                    .create_job
                    .key(keys::job_status(&job.id))
                    .key(keys::job_info(&job.id))
                    .key(keys::job_stats(&job.id))
                    .key(JOBS_INDEX)
                    .arg(&job.id)
                    .arg(&job.kind)
                    .arg(spec)
                    .arg(job.created_at.to_string())
                    .arg(job.status.as_str())
                    .arg(job.total_chunks)
                    .arg(job.error.as_deref().unwrap_or(""))
                    .arg(job.finished_at.map(|t| t.to_string()).unwrap_or_default())
                    .arg(short_summary(&job.summary))
                    .arg(job.priority.as_str()),
            )
            .await?;
        if created == 1 {
            return Ok(CreateOutcome::Created);
        }
        match self.job(&job.id).await? {
            Some(existing) => Ok(CreateOutcome::Exists(existing)),
            None => Err(BackendError::Corrupt(format!(
                "job {:?} exists but cannot be read",
                job.id
            ))),
        }
    }

    /// Sends the group's scripts without waiting for each reply: the shared connection is
    /// multiplexed, so up to [`IN_FLIGHT`] of them travel as one pipeline and a batch of
    /// thousands costs a few round trips, not one each. Outcomes keep the input order.
    async fn create_jobs(&self, jobs: &[JobRecord]) -> BackendResult<Vec<CreateOutcome>> {
        let calls: Vec<_> = jobs.iter().map(|job| self.create_job(job)).collect();
        stream::iter(calls).buffered(IN_FLIGHT).try_collect().await
    }

    /// Accepts the group as [`JobStore::create_jobs`] creates it: pipelined, in order.
    async fn accept_jobs(&self, jobs: &[(String, u32)]) -> BackendResult<()> {
        let calls: Vec<_> = jobs
            .iter()
            .map(|(id, total)| self.accept_job(id, *total))
            .collect();
        stream::iter(calls)
            .buffered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn job(&self, id: &str) -> BackendResult<Option<JobRecord>> {
        let query = job_query(id);
        let raw: RawJob = self
            .request(|mut conn| {
                let query = &query;
                async move { query.query_async(&mut conn).await }
            })
            .await?;
        decode_job(id, raw)
    }

    async fn jobs(&self) -> BackendResult<Vec<JobRecord>> {
        let ids: Vec<String> = self
            .request(|mut conn| async move { conn.zrevrange(JOBS_INDEX, 0, -1).await })
            .await?;
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.get(keys::job_status(id))
                .hgetall(keys::job_info(id))
                .hget(keys::job_stats(id), "total_chunks");
        }
        let flat: Vec<::redis::Value> = if ids.is_empty() {
            Vec::new()
        } else {
            self.request(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await?
        };
        let raws = decode_triples(flat)?;
        let mut jobs = Vec::with_capacity(ids.len());
        for (id, raw) in ids.iter().zip(raws) {
            jobs.extend(decode_job(id, raw)?);
        }
        Ok(jobs)
    }

    async fn accept_job(&self, id: &str, total_chunks: u32) -> BackendResult<()> {
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .accept_job
                    .key(keys::job_status(id))
                    .key(keys::job_stats(id))
                    .key(keys::job_info(id))
                    .arg(total_chunks),
            )
            .await?;
        known_job(id, outcome).map(drop)
    }

    async fn update_job_spec(&self, id: &str, spec: &serde_json::Value) -> BackendResult<()> {
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .update_spec
                    .key(keys::job_status(id))
                    .key(keys::job_info(id))
                    .arg(spec.to_string()),
            )
            .await?;
        known_job(id, outcome).map(drop)
    }

    async fn set_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> BackendResult<()> {
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .set_status
                    .key(keys::job_status(id))
                    .key(keys::job_info(id))
                    .arg(status.as_str())
                    .arg(error.unwrap_or("")),
            )
            .await?;
        known_job(id, outcome).map(drop)
    }

    async fn job_summaries(&self, limit: usize) -> BackendResult<Vec<JobSummary>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let last = isize::try_from(limit).map_or(-1, |limit| limit - 1);
        let ids: Vec<String> = self
            .request(|mut conn| async move { conn.zrevrange(JOBS_INDEX, 0, last).await })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.get(keys::job_status(id))
                .hget(
                    keys::job_info(id),
                    &[
                        "kind",
                        "summary",
                        "error",
                        "created_at",
                        "finished_at",
                        "priority",
                    ],
                )
                .hget(
                    keys::job_stats(id),
                    &[
                        "total_chunks",
                        "chunks_processed",
                        "total_matches",
                        "redeliveries",
                    ],
                );
        }
        let flat: Vec<::redis::Value> = self
            .request(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        let mut summaries = Vec::with_capacity(ids.len());
        for (id, triple) in ids.iter().zip(flat.chunks(3)) {
            summaries.extend(decode_summary(id, triple)?);
        }
        Ok(summaries)
    }

    async fn mark_ends_logged(&self, jobs: &[String]) -> BackendResult<Option<Vec<bool>>> {
        if jobs.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut invocation = self.scripts.mark_ends_logged.prepare_invoke();
        for job in jobs {
            invocation.key(keys::job_info(job));
        }
        let fresh: Vec<i64> = self.invoke(&invocation).await?;
        Ok(Some(fresh.into_iter().map(|fresh| fresh == 1).collect()))
    }

    async fn restart_upload(&self, job: &JobRecord) -> BackendResult<bool> {
        // Only this master streams uploads, and it holds the id as in progress while it
        // restarts one, so the look and the replace need no shared transaction.
        let restartable = self.job(&job.id).await?.is_some_and(|old| {
            old.total_chunks == 0 && matches!(old.status, JobStatus::Failed | JobStatus::Uploading)
        });
        if !restartable {
            return Ok(false);
        }
        super::retention::delete_job(self, &job.id).await?;
        Ok(matches!(
            self.create_job(job).await?,
            CreateOutcome::Created
        ))
    }

    async fn prune_finished(&self, finished_before: f64) -> BackendResult<PruneReport> {
        super::retention::prune_finished(self, finished_before).await
    }
}

#[async_trait]
impl ResultSink for RedisBackend {
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool> {
        put_in_parts(self, lease, result).await
    }
}

#[async_trait]
impl ResultStore for RedisBackend {
    async fn put_result_part(&self, lease: &Lease, part: u32, bytes: Bytes) -> BackendResult<()> {
        if bytes.len() > RESULT_PART_BYTES {
            return Err(BackendError::Other(format!(
                "result part of {} bytes is larger than {RESULT_PART_BYTES}",
                bytes.len()
            )));
        }
        let token = parse_token(&lease.token);
        let (job, chunk) = (&lease.id.job, lease.id.chunk);
        let (code, detail): (i64, String) = self
            .invoke(
                self.scripts
                    .stage_part
                    .key(&TASK_STREAMS[..])
                    .key(keys::job_result_staging(job, chunk, token.entry_id))
                    .key(RESULTS_REFUSED)
                    .arg(GROUP)
                    .arg(token.stream_index)
                    .arg(token.entry_id)
                    .arg(&lease.worker)
                    .arg(job)
                    .arg(chunk)
                    .arg(token.nonce)
                    .arg(part)
                    .arg(bytes.as_ref())
                    .arg(STAGING_TTL_MS),
            )
            .await?;
        script_outcome(lease, code, detail).map(drop)
    }

    async fn commit_chunk_result(
        &self,
        lease: &Lease,
        result: &ChunkResult,
        parts: u32,
    ) -> BackendResult<bool> {
        let (job, chunk) = (&lease.id.job, lease.id.chunk);
        if result.chunk != chunk {
            return Err(BackendError::Other(format!(
                "result names chunk {} but its lease is for chunk {chunk}",
                result.chunk
            )));
        }
        let inline = if parts == 0 {
            serde_json::to_vec(&result.payload)
                .map_err(|e| BackendError::Other(format!("job {job:?} chunk result: {e}")))?
        } else {
            Vec::new()
        };
        let verdict = self.payload_verdict(lease, result, parts).await?;
        if verdict.is_none()
            && self
                .passes_job_cap(lease, result, &mut HashMap::new())
                .await?
        {
            return Ok(false);
        }
        let mut invocation = result_invocation(&self.scripts.put_result);
        push_result(
            &mut invocation,
            lease,
            result,
            parts,
            inline,
            crate::time::unix_now(),
            verdict.is_some(),
        )?;
        let (code, detail): (i64, String) = self.invoke(&invocation).await?;
        let outcome = script_outcome(lease, code, detail);
        with_verdict(outcome, verdict).map(|stored| stored == 1)
    }

    async fn progress(&self, job: &str) -> BackendResult<Progress> {
        let stats = keys::job_stats(job);
        let fields = ["total_chunks", "chunks_processed", "total_matches"];
        let (total, done, matches): (Option<u32>, Option<u32>, Option<u64>) = self
            .request(|mut conn| {
                let stats = &stats;
                async move { conn.hget(stats, &fields).await }
            })
            .await?;
        let Some(total_chunks) = total else {
            return Err(BackendError::NoSuchJob(job.to_string()));
        };
        Ok(Progress {
            total_chunks,
            done_chunks: done.unwrap_or(0),
            matches: matches.unwrap_or(0),
        })
    }

    async fn result_headers(&self, job: &str) -> BackendResult<Vec<StoredResult>> {
        let results = keys::job_results(job);
        let stored: HashMap<u32, String> = self
            .request(|mut conn| {
                let results = &results;
                async move { conn.hgetall(results).await }
            })
            .await?;
        let mut headers = stored
            .into_values()
            .map(|json| decode_header(job, &json))
            .collect::<BackendResult<Vec<_>>>()?;
        headers.sort_by_key(|r| r.chunk);
        Ok(headers)
    }

    async fn result_headers_in(
        &self,
        job: &str,
        tasks: std::ops::Range<u32>,
    ) -> BackendResult<Vec<StoredResult>> {
        let results = keys::job_results(job);
        let chunks: Vec<u32> = tasks.collect();
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        // HMGET of one field is sent as HGET, which answers a value rather than a list.
        let stored: Vec<Option<String>> = if let [chunk] = chunks[..] {
            let one: Option<String> = self
                .request(|mut conn| {
                    let results = &results;
                    async move { conn.hget(results, chunk).await }
                })
                .await?;
            vec![one]
        } else {
            self.request(|mut conn| {
                let (results, chunks) = (&results, &chunks);
                async move { conn.hget(results, chunks).await }
            })
            .await?
        };
        stored
            .into_iter()
            .flatten()
            .map(|json| decode_header(job, &json))
            .collect()
    }

    async fn result_part(&self, job: &str, chunk: u32, part: u32) -> BackendResult<Bytes> {
        let parts_key = keys::job_result_parts(job, chunk);
        let index = part as isize;
        let stored: Option<Vec<u8>> = self
            .request(|mut conn| {
                let parts_key = &parts_key;
                async move { conn.lindex(parts_key, index).await }
            })
            .await?;
        if let Some(bytes) = stored {
            return Ok(Bytes::from(bytes));
        }
        // Results stored before payloads had parts carry the payload in their header.
        let results = keys::job_results(job);
        let header: Option<String> = self
            .request(|mut conn| {
                let results = &results;
                async move { conn.hget(results, chunk).await }
            })
            .await?;
        let legacy = header
            .filter(|_| part == 0)
            .and_then(|json| serde_json::from_str::<ChunkResult>(&json).ok());
        match legacy {
            Some(result) => serde_json::to_vec(&result.payload)
                .map(Bytes::from)
                .map_err(|e| BackendError::Corrupt(format!("job {job:?} chunk {chunk}: {e}"))),
            None => Err(BackendError::Other(format!(
                "job {job:?} has no result part {part} of chunk {chunk}"
            ))),
        }
    }

    async fn refused_results(&self) -> BackendResult<Vec<(RefusalReason, u64)>> {
        let counts: HashMap<String, u64> = self
            .request(|mut conn| async move { conn.hgetall(RESULTS_REFUSED).await })
            .await?;
        Ok(RefusalReason::ALL
            .iter()
            .map(|reason| (*reason, counts.get(reason.as_str()).copied().unwrap_or(0)))
            .collect())
    }

    async fn task_times(&self) -> BackendResult<Vec<TaskTimes>> {
        super::retention::task_times(self).await
    }
}

#[async_trait]
impl MonitorSink for RedisBackend {
    async fn push_alert(&self, alert: &serde_json::Value) -> BackendResult<()> {
        let cap = self.options.alert_history_cap.max(1) as isize;
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .lpush(ALERT_HISTORY, alert.to_string())
            .ignore()
            .ltrim(ALERT_HISTORY, 0, cap - 1)
            .ignore();
        self.request(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn put_worker_metrics(
        &self,
        worker: &str,
        metrics: &serde_json::Value,
        ttl: Duration,
    ) -> BackendResult<()> {
        let ttl_ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .pset_ex(keys::worker_metrics(worker), metrics.to_string(), ttl_ms)
            .ignore()
            .sadd(WORKERS_INDEX, worker)
            .ignore();
        self.request(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn worker_metrics(&self) -> BackendResult<Vec<(WorkerId, serde_json::Value)>> {
        let mut workers: Vec<String> = self
            .request(|mut conn| async move { conn.smembers(WORKERS_INDEX).await })
            .await?;
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        workers.sort();
        let metric_keys: Vec<String> = workers.iter().map(|w| keys::worker_metrics(w)).collect();
        let stored: Vec<Option<String>> = self
            .request(|mut conn| {
                let metric_keys = &metric_keys;
                async move { conn.mget(metric_keys).await }
            })
            .await?;
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (worker, json) in workers.into_iter().zip(stored) {
            match json {
                Some(json) => {
                    let metrics = serde_json::from_str(&json).map_err(|e| {
                        BackendError::Corrupt(format!("metrics of worker {worker:?}: {e}"))
                    })?;
                    live.push((worker, metrics));
                }
                None => expired.push(worker),
            }
        }
        if !expired.is_empty() {
            // Keeps the index from growing with every worker id ever seen.
            let _: i64 = self
                .request(|mut conn| {
                    let expired = &expired;
                    async move { conn.srem(WORKERS_INDEX, expired).await }
                })
                .await?;
        }
        Ok(live)
    }
}

#[async_trait]
impl MonitorStore for RedisBackend {
    async fn alerts(&self, limit: usize) -> BackendResult<Vec<serde_json::Value>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let last = limit as isize - 1;
        let stored: Vec<String> = self
            .request(|mut conn| async move { conn.lrange(ALERT_HISTORY, 0, last).await })
            .await?;
        stored
            .iter()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| BackendError::Corrupt(format!("{ALERT_HISTORY}: {e}")))
            })
            .collect()
    }

    async fn forget_worker_metrics(&self, worker: &str) -> BackendResult<bool> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .del(keys::worker_metrics(worker))
            .srem(WORKERS_INDEX, worker);
        let (deleted, _): (u64, u64) = self
            .request(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl crate::backend::InputSource for RedisBackend {
    async fn read_input(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        crate::backend::read_input_piece(self, hash, offset, len).await
    }
}

#[async_trait]
impl GenomeStore for RedisBackend {
    async fn begin_genome(&self, kind: StoredKind) -> BackendResult<Box<dyn GenomeWriter>> {
        Ok(Box::new(
            super::genomes::RedisGenomeWriter::begin(self, kind).await?,
        ))
    }

    async fn use_genome(&self, hash: &str, job: &str) -> BackendResult<Option<GenomeRecord>> {
        if !is_genome_hash(hash) {
            return Ok(None);
        }
        super::genomes::use_genome(self, hash, job).await
    }

    async fn read_genome(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        if !is_genome_hash(hash) {
            return Err(BackendError::Other(format!(
                "{hash:?} is not a genome hash"
            )));
        }
        let storage = super::genomes::storage_of(self, hash)
            .await?
            .ok_or_else(|| BackendError::Other(format!("no genome {hash} is stored")))?;
        super::genome_read::read_stored(self, &storage, offset, len).await
    }

    async fn read_stored(&self, storage: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        if !is_genome_hash(storage) {
            return Err(BackendError::Other(format!(
                "{storage:?} is not a storage id"
            )));
        }
        super::genome_read::read_stored(self, storage, offset, len).await
    }

    async fn sweep_spares(&self) -> BackendResult<Vec<String>> {
        super::genomes::sweep_spares(self).await
    }

    async fn genomes(&self) -> BackendResult<Vec<GenomeRecord>> {
        super::genomes::genomes(self).await
    }

    async fn remove_genome(&self, hash: &str) -> BackendResult<GenomeRemoval> {
        if !is_genome_hash(hash) {
            return Ok(GenomeRemoval::NotFound);
        }
        super::genomes::remove_genome(self, hash).await
    }

    async fn prune_genomes(&self, unused_before: f64) -> BackendResult<Vec<String>> {
        super::genomes::prune_genomes(self, unused_before).await
    }
}

fn job_query(id: &str) -> ::redis::Pipeline {
    let mut pipe = ::redis::pipe();
    pipe.get(keys::job_status(id))
        .hgetall(keys::job_info(id))
        .hget(keys::job_stats(id), "total_chunks");
    pipe
}

/// Splits a pipeline reply of (GET status, HGETALL info, HGET total_chunks) triples.
fn decode_triples(flat: Vec<::redis::Value>) -> BackendResult<Vec<RawJob>> {
    flat.chunks(3)
        .map(|triple| {
            ::redis::from_redis_value(&::redis::Value::Array(triple.to_vec()))
                .map_err(|e| BackendError::Corrupt(format!("job listing: {e}")))
        })
        .collect()
}

fn decode_job(id: &str, (status, info, total_chunks): RawJob) -> BackendResult<Option<JobRecord>> {
    let Some(status) = status else {
        return Ok(None);
    };
    let corrupt = |what: String| BackendError::Corrupt(format!("job {id:?}: {what}"));
    let status =
        JobStatus::from_word(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?;
    let text = |field: &str| info.get(field).cloned();
    let seconds = |field: &str| -> BackendResult<Option<f64>> {
        text(field)
            .map(|t| {
                t.parse()
                    .map_err(|e| corrupt(format!("{field} {t:?}: {e}")))
            })
            .transpose()
    };
    let spec_text = text("spec").ok_or_else(|| corrupt("no spec".into()))?;
    Ok(Some(JobRecord {
        id: id.to_string(),
        kind: text("kind").ok_or_else(|| corrupt("no kind".into()))?,
        spec: serde_json::from_str(&spec_text).map_err(|e| corrupt(format!("spec: {e}")))?,
        summary: text("summary").unwrap_or_default(),
        priority: stored_priority(text("priority").as_deref()),
        status,
        total_chunks: total_chunks.unwrap_or(0),
        error: text("error"),
        created_at: seconds("created_at")?.unwrap_or(0.0),
        finished_at: seconds("finished_at")?,
    }))
}

/// A job's stored priority; jobs stored before priorities were read as the default.
fn stored_priority(word: Option<&str>) -> Priority {
    word.and_then(Priority::from_word).unwrap_or_default()
}

/// A script's -1 means the job does not exist.
fn known_job(id: &str, outcome: i64) -> BackendResult<i64> {
    if outcome < 0 {
        Err(BackendError::NoSuchJob(id.to_string()))
    } else {
        Ok(outcome)
    }
}

/// A stored result's header; results stored before payloads had parts decode as one part.
fn decode_header(job: &str, json: &str) -> BackendResult<StoredResult> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| BackendError::Corrupt(format!("job {job:?}: stored chunk result: {e}")))?;
    let mut header: StoredResult = if value.get("parts").is_some() {
        serde_json::from_value(value)
    } else {
        serde_json::from_value::<ChunkResult>(value).map(|r| StoredResult {
            chunk: r.chunk,
            matches: r.matches,
            worker: r.worker,
            parts: 1,
            run: *r.run,
        })
    }
    .map_err(|e| BackendError::Corrupt(format!("job {job:?}: stored chunk result: {e}")))?;
    header.parts = header.parts.max(1);
    Ok(header)
}

/// One job's (GET status, HMGET info fields, HMGET stats fields) reply as a summary; `None` if
/// the job vanished between the index read and the pipeline.
fn decode_summary(id: &str, triple: &[::redis::Value]) -> BackendResult<Option<JobSummary>> {
    type Info = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<f64>,
        Option<f64>,
        Option<String>,
    );
    type Stats = (Option<u32>, Option<u32>, Option<u64>, Option<u64>);
    let corrupt = |what: String| BackendError::Corrupt(format!("job {id:?}: {what}"));
    let [status, info, stats] = triple else {
        return Err(corrupt("short listing reply".into()));
    };
    let status: Option<String> =
        ::redis::from_redis_value(status).map_err(|e| corrupt(e.to_string()))?;
    let Some(status) = status else {
        return Ok(None);
    };
    let status =
        JobStatus::from_word(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?;
    let (kind, summary, error, created_at, finished_at, priority): Info =
        ::redis::from_redis_value(info).map_err(|e| corrupt(e.to_string()))?;
    let (total, done, matches, redeliveries): Stats =
        ::redis::from_redis_value(stats).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(JobSummary {
        id: id.to_string(),
        kind: kind.ok_or_else(|| corrupt("no kind".into()))?,
        summary: summary.unwrap_or_default(),
        priority: stored_priority(priority.as_deref()),
        status,
        error,
        created_at: created_at.unwrap_or(0.0),
        finished_at,
        progress: Progress {
            total_chunks: total.unwrap_or(0),
            done_chunks: done.unwrap_or(0),
            matches: matches.unwrap_or(0),
        },
        redeliveries: Some(redeliveries.unwrap_or(0)),
    }))
}

/// Maps a result script's {code, detail} reply: 1 stored, 0 not the first, -1 no job, -2 refused
/// (detail: the reason), -3 parts missing.
pub(super) fn script_outcome(lease: &Lease, code: i64, detail: String) -> BackendResult<i64> {
    match code {
        -1 => Err(BackendError::NoSuchJob(lease.id.job.clone())),
        -2 => {
            let reason = RefusalReason::from_word(&detail).unwrap_or(RefusalReason::NotHolder);
            let why = match reason {
                RefusalReason::OutOfRange => "more matches than the task can hold",
                RefusalReason::BadPayload => "the payload is not a result of the task's kind",
                RefusalReason::NoSuchTask => "no such task in the job",
                RefusalReason::NotHolder => "the worker does not hold this task's current lease",
            };
            Err(BackendError::refused(lease, reason, why))
        }
        -3 => Err(BackendError::Other(format!(
            "result of chunk {}: {detail}",
            lease.id.chunk
        ))),
        code => Ok(code),
    }
}

/// A `bad_payload` refusal that says what the check found wrong.
pub(super) fn with_verdict(
    outcome: BackendResult<i64>,
    verdict: Option<String>,
) -> BackendResult<i64> {
    match (outcome, verdict) {
        (
            Err(BackendError::Refused {
                job,
                chunk,
                reason: RefusalReason::BadPayload,
                ..
            }),
            Some(why),
        ) => Err(BackendError::Refused {
            job,
            chunk,
            reason: RefusalReason::BadPayload,
            detail: why,
        }),
        (outcome, _) => outcome,
    }
}

/// Starts an invocation of a result script (`put_result`, `complete`) with what its results
/// share; [`push_result`] adds each result.
pub(super) fn result_invocation(script: &::redis::Script) -> ScriptInvocation<'_> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&TASK_STREAMS[..])
        .key(RESULTS_REFUSED)
        .key(TASK_WORKERS_INDEX)
        .arg(GROUP)
        .arg(TASK_TIMES_KEPT);
    invocation
}

/// Adds one result's arguments to an invocation of a result script (`lua/results.lua` reads
/// them): `put_result` sends one, `complete` (result then ack) sends several in a row.
/// `parts` is 0 when the payload travels `inline`, else the number of parts already staged.
/// `bad_payload` makes the script refuse the result once its lease is fenced.
pub(super) fn push_result(
    invocation: &mut ScriptInvocation<'_>,
    lease: &Lease,
    result: &ChunkResult,
    parts: u32,
    inline: Vec<u8>,
    now: f64,
    bad_payload: bool,
) -> BackendResult<()> {
    let (job, chunk) = (&lease.id.job, lease.id.chunk);
    let token = parse_token(&lease.token);
    let run = result.run.stored(lease, now);
    let header = StoredResult {
        chunk,
        matches: result.matches,
        worker: lease.worker.clone(),
        parts: parts.max(1),
        run: run.clone(),
    };
    let header = serde_json::to_string(&header)
        .map_err(|e| BackendError::Other(format!("job {job:?} chunk result: {e}")))?;
    invocation
        .arg(job)
        .arg(chunk)
        .arg(header)
        .arg(result.matches)
        .arg(token.stream_index)
        .arg(token.entry_id)
        .arg(&lease.worker)
        .arg(token.nonce)
        .arg(parts)
        .arg(inline)
        .arg(&run.kind)
        .arg(run.elapsed_secs.map(|s| s.to_string()).unwrap_or_default())
        .arg(if bad_payload { "1" } else { "" });
    Ok(())
}
