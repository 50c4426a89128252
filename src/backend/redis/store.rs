//! `Store` on plain Redis keys with readable names: `job:{id}:status` (a word),
//! `job:{id}:info` and `job:{id}:stats` (hashes), `job:{id}:results` (chunk → result JSON, first
//! write wins), `worker:{id}:metrics` (JSON with a TTL) and the capped `alerts:history` list.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::keys::{self, ALERT_HISTORY, JOBS_INDEX, WORKERS_INDEX};
use super::RedisBackend;
use crate::backend::{
    BackendError, BackendResult, ChunkResult, CreateOutcome, JobRecord, JobStatus, Progress, Store,
    WorkerId,
};

/// The raw keys of one job, as read in one round trip.
type RawJob = (Option<String>, HashMap<String, String>, Option<u32>);

#[async_trait]
impl Store for RedisBackend {
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
                    .arg(job.finished_at.map(|t| t.to_string()).unwrap_or_default()),
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

    async fn put_chunk_result(&self, job: &str, result: &ChunkResult) -> BackendResult<bool> {
        let json = serde_json::to_string(result)
            .map_err(|e| BackendError::Other(format!("job {job:?} chunk result: {e}")))?;
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .put_result
                    .key(keys::job_status(job))
                    .key(keys::job_stats(job))
                    .key(keys::job_info(job))
                    .key(keys::job_results(job))
                    .arg(result.chunk)
                    .arg(json)
                    .arg(result.matches),
            )
            .await?;
        known_job(job, outcome).map(|stored| stored == 1)
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

    async fn chunk_results(&self, job: &str) -> BackendResult<Vec<ChunkResult>> {
        let results = keys::job_results(job);
        let stored: HashMap<u32, String> = self
            .request(|mut conn| {
                let results = &results;
                async move { conn.hgetall(results).await }
            })
            .await?;
        let mut results = stored
            .into_values()
            .map(|json| {
                serde_json::from_str::<ChunkResult>(&json).map_err(|e| {
                    BackendError::Corrupt(format!("job {job:?}: stored chunk result: {e}"))
                })
            })
            .collect::<BackendResult<Vec<_>>>()?;
        results.sort_by_key(|r| r.chunk);
        Ok(results)
    }

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
        status,
        total_chunks: total_chunks.unwrap_or(0),
        error: text("error"),
        created_at: seconds("created_at")?.unwrap_or(0.0),
        finished_at: seconds("finished_at")?,
    }))
}

/// A script's -1 means the job does not exist.
fn known_job(id: &str, outcome: i64) -> BackendResult<i64> {
    if outcome < 0 {
        Err(BackendError::NoSuchJob(id.to_string()))
    } else {
        Ok(outcome)
    }
}
