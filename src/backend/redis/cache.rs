//! The Redis backend's result cache: `cache:{key}` is the set of jobs recorded under a key, and
//! each such job's info hash names its key (`cache_key`), so deleting the job takes it out of the
//! set. A copy of a completed job's answer is one Lua script (`lua/copy_answer.lua`), which
//! checks that the source is still completed before it copies anything.

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::keys::{self, JOBS_INDEX};
use super::RedisBackend;
use crate::backend::capability::{AnswerCopy, JobStore, ResultCache};
use crate::backend::{short_summary, BackendError, BackendResult, JobRecord, JobStatus};

#[async_trait]
impl ResultCache for RedisBackend {
    async fn remember_answer(&self, key: &str, job: &str) -> BackendResult<()> {
        let (set, info) = (keys::result_cache(key), keys::job_info(job));
        self.request(|mut conn| {
            let (set, info) = (&set, &info);
            async move {
                ::redis::pipe()
                    .atomic()
                    .hset(info, "cache_key", key)
                    .ignore()
                    .sadd(set, job)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    async fn cached_answer(&self, key: &str) -> BackendResult<Option<JobRecord>> {
        let set = keys::result_cache(key);
        let members: Vec<String> = self
            .request(|mut conn| {
                let set = &set;
                async move { conn.smembers(set).await }
            })
            .await?;
        let mut newest: Option<JobRecord> = None;
        for member in members {
            match self.job(&member).await? {
                Some(job) if job.status == JobStatus::Completed => {
                    let finished = |job: &JobRecord| job.finished_at.unwrap_or(job.created_at);
                    let newer = match &newest {
                        Some(best) => finished(&job) > finished(best),
                        None => true,
                    };
                    if newer {
                        newest = Some(job);
                    }
                }
                // Still running: it may answer later.
                Some(job) if !job.status.is_finished() => {}
                // Deleted, failed or cancelled: it never answers.
                _ => {
                    self.request(|mut conn| {
                        let (set, member) = (&set, &member);
                        async move { conn.srem::<_, _, ()>(set, member).await }
                    })
                    .await?;
                }
            }
        }
        Ok(newest)
    }

    async fn copy_answer(
        &self,
        key: &str,
        source: &str,
        job: &JobRecord,
    ) -> BackendResult<AnswerCopy> {
        let spec = serde_json::to_string(&job.spec)
            .map_err(|e| BackendError::Other(format!("job {:?} spec: {e}", job.id)))?;
        let finished_at = job.finished_at.unwrap_or(job.created_at);
        let outcome: i64 = self
            .invoke(
                self.scripts
                    .copy_answer
                    .key(keys::result_cache(key))
                    .key(JOBS_INDEX)
                    .arg(source)
                    .arg(&job.id)
                    .arg(&job.kind)
                    .arg(spec)
                    .arg(job.created_at.to_string())
                    .arg(job.total_chunks)
                    .arg(finished_at.to_string())
                    .arg(short_summary(&job.summary))
                    .arg(job.priority.as_str())
                    .arg(key),
            )
            .await?;
        Ok(match outcome {
            1 => AnswerCopy::Copied,
            0 => AnswerCopy::IdTaken,
            _ => AnswerCopy::SourceGone,
        })
    }
}
