//! Deleting finished jobs from Redis: every `job:{id}:*` key the job has, any stream entry it
//! still holds, and its place in the jobs index. Space is measured as Redis's `used_memory`
//! before and after. Workers' task counts and times are read here too: they are kept apart from
//! job data, so a prune leaves them.

use std::collections::HashMap;

use ::redis::AsyncCommands;

use super::keys::{self, GROUP, JOBS_INDEX};
use super::RedisBackend;
use crate::backend::{BackendResult, JobStore, PruneReport};

/// Deletes every finished job that finished at or before `finished_before`.
pub(super) async fn prune_finished(
    backend: &RedisBackend,
    finished_before: f64,
) -> BackendResult<PruneReport> {
    let before = used_memory(backend).await?;
    let mut report = PruneReport::default();
    for job in backend.job_summaries(usize::MAX).await? {
        let finished_at = job.finished_at.unwrap_or(job.created_at);
        if !job.status.is_finished() || finished_at > finished_before {
            continue;
        }
        report.results += delete_job(backend, &job.id).await?;
        report.job_ids.push(job.id);
    }
    if !report.job_ids.is_empty() {
        tracing::info!(
            component = "redis",
            jobs = report.job_ids.len(),
            results = report.results,
            "pruned finished jobs"
        );
    }
    report.bytes_freed = before.saturating_sub(used_memory(backend).await?);
    Ok(report)
}

/// Deletes one job's keys and stream entries; returns how many results it had.
pub(super) async fn delete_job(backend: &RedisBackend, job: &str) -> BackendResult<u64> {
    let (results_key, tasks_key) = (keys::job_results(job), keys::job_tasks(job));
    let info_key = keys::job_info(job);
    let (chunks, live, cache_key): (Vec<u32>, HashMap<u32, String>, Option<String>) = backend
        .request(|mut conn| {
            let (results_key, tasks_key, info_key) = (&results_key, &tasks_key, &info_key);
            async move {
                ::redis::pipe()
                    .hkeys(results_key)
                    .hgetall(tasks_key)
                    .hget(info_key, "cache_key")
                    .query_async(&mut conn)
                    .await
            }
        })
        .await?;
    let mut pipe = ::redis::pipe();
    pipe.atomic();
    // A task still leased when its job finished (a cancelled job's) leaves its stream entry.
    for entry in live.values() {
        let Some((index, id)) = entry.split_once('/') else {
            continue;
        };
        let Some(stream) = index
            .parse::<usize>()
            .ok()
            .and_then(|i| keys::ALL_STREAMS.get(i.wrapping_sub(1)))
        else {
            continue;
        };
        pipe.xack(*stream, GROUP, &[id]).ignore();
        pipe.xdel(*stream, &[id]).ignore();
    }
    for chunk in &chunks {
        pipe.del(keys::job_result_parts(job, *chunk)).ignore();
    }
    pipe.del(&[
        keys::job_status(job),
        keys::job_info(job),
        keys::job_stats(job),
        results_key.clone(),
        keys::job_fences(job),
        tasks_key.clone(),
        keys::job_chunks(job),
    ])
    .ignore();
    pipe.zrem(JOBS_INDEX, job).ignore();
    if let Some(key) = cache_key {
        pipe.srem(keys::result_cache(&key), job).ignore();
    }
    backend
        .request(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await?;
    Ok(chunks.len() as u64)
}

/// Redis's `used_memory`, in bytes.
pub(super) async fn used_memory(backend: &RedisBackend) -> BackendResult<u64> {
    let info: String = backend
        .request(|mut conn| async move {
            ::redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut conn)
                .await
        })
        .await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}

/// Used by the store's `task_times`: every worker's counts and recent times, per kind.
pub(super) async fn task_times(
    backend: &RedisBackend,
) -> BackendResult<Vec<crate::backend::TaskTimes>> {
    let mut workers: Vec<String> = backend
        .request(|mut conn| async move { conn.smembers(keys::TASK_WORKERS_INDEX).await })
        .await?;
    workers.sort();
    let mut out = Vec::new();
    for worker in workers {
        let counts_key = keys::worker_tasks_completed(&worker);
        let mut counts: Vec<(String, u64)> = backend
            .request(|mut conn| {
                let counts_key = &counts_key;
                async move { conn.hgetall(counts_key).await }
            })
            .await?;
        counts.sort();
        for (kind, completed) in counts {
            let times_key = keys::worker_task_times(&worker, &kind);
            let stored: Vec<String> = backend
                .request(|mut conn| {
                    let times_key = &times_key;
                    async move { conn.lrange(times_key, 0, -1).await }
                })
                .await?;
            out.push(crate::backend::TaskTimes {
                worker: worker.clone(),
                kind,
                completed,
                recent_secs: stored.iter().filter_map(|s| s.parse().ok()).collect(),
            });
        }
    }
    Ok(out)
}
