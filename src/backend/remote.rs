//! The worker's view of an embedded-backend master: `Queue` and `Store` calls sent over the
//! protocol (`lease`, `extend`, `put_result`, `ack`, `nack`). One connection, opened on first use
//! and reopened after any failure; a call that cannot reach the master fails `Unavailable`, which
//! the worker retries with backoff. Calls a worker never makes (enqueue, cancel, job listing)
//! are refused: the master keeps those for itself.

use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use bytes::Bytes;

use super::{
    BackendError, BackendResult, ChunkResult, CreateOutcome, JobRecord, JobStatus, JobSummary,
    Lease, NackOutcome, NewTask, Progress, Queue, RefusalReason, Store, StoredResult, TaskId,
    WorkerId, RESULT_PART_BYTES,
};
use crate::protocol::{Connection, ErrorCode, Message, NackReply, Role, PROTOCOL_VERSION};

/// How long to wait for the master to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time allowed for a reply beyond the lease wait.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A master reached over TCP, acting for one worker.
pub struct RemoteBackend {
    master: String,
    worker: String,
    token: Option<String>,
    conn: Mutex<Option<Connection<TcpStream>>>,
}

impl RemoteBackend {
    /// A backend for `worker` talking to the master at `master` (HOST:PORT). Connects lazily.
    pub fn new(
        master: impl Into<String>,
        worker: impl Into<String>,
        token: Option<String>,
    ) -> Self {
        Self {
            master: master.into(),
            worker: worker.into(),
            token,
            conn: Mutex::new(None),
        }
    }

    async fn connect(&self) -> BackendResult<Connection<TcpStream>> {
        let unavailable =
            |err: String| BackendError::Unavailable(format!("master {}: {err}", self.master));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.master))
            .await
            .map_err(|_| unavailable("connect timed out".into()))?
            .map_err(|err| unavailable(err.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection::new(stream).with_read_timeout(Some(REPLY_TIMEOUT));
        let hello = Message::Hello {
            role: Role::Worker,
            version: PROTOCOL_VERSION,
            token: self.token.clone(),
            id: Some(self.worker.clone()),
        };
        conn.write_message(&hello)
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        match conn.expect_message().await {
            Ok(Message::Welcome { .. }) => Ok(conn),
            Ok(Message::Error { code, message }) => Err(refused(code, message)),
            Ok(other) => Err(BackendError::Other(format!(
                "unexpected reply to hello: {other:?}"
            ))),
            Err(err) => Err(unavailable(err.to_string())),
        }
    }

    /// Sends one request and reads its reply; on a transport failure the connection is dropped
    /// so the next call reconnects. `Task` replies also read their data frame.
    async fn request(&self, message: Message) -> BackendResult<(Message, Option<Bytes>)> {
        match self.exchange(message, &[]).await? {
            (Message::Error { code, message }, _) => Err(refused(code, message)),
            reply => Ok(reply),
        }
    }

    /// Sends one request followed by `data` frames, and reads its reply, `error` replies
    /// included (see `request`).
    async fn exchange(
        &self,
        message: Message,
        data: &[&[u8]],
    ) -> BackendResult<(Message, Option<Bytes>)> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(BackendError::Unavailable("no connection".into()));
        };
        let exchange = async {
            conn.send_message(&message).await?;
            for frame in data {
                conn.send_frame(frame).await?;
            }
            conn.flush().await?;
            let reply = conn.expect_message().await?;
            let data = match &reply {
                Message::Task { .. } => Some(conn.read_data().await?),
                _ => None,
            };
            Ok::<_, crate::protocol::ProtocolError>((reply, data))
        }
        .await;
        match exchange {
            Ok(reply) => Ok(reply),
            Err(err) => {
                *guard = None;
                Err(BackendError::Unavailable(format!(
                    "master {}: {err}",
                    self.master
                )))
            }
        }
    }
}

fn refused(code: ErrorCode, message: String) -> BackendError {
    BackendError::Other(format!("master refused ({code:?}): {message}"))
}

fn unexpected(reply: &Message) -> BackendError {
    BackendError::Other(format!("unexpected reply from master: {reply:?}"))
}

fn not_for_workers(call: &str) -> BackendError {
    BackendError::Other(format!("{call} is not served to workers by the master"))
}

#[async_trait]
impl Queue for RemoteBackend {
    async fn enqueue(&self, _tasks: Vec<NewTask>) -> BackendResult<()> {
        Err(not_for_workers("enqueue"))
    }

    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        let wait_ms = wait.as_millis() as u64;
        match self.request(Message::Lease { wait_ms }).await? {
            (Message::NoTask, _) => Ok(None),
            (
                Message::Task {
                    job_id,
                    chunk,
                    kind,
                    spec,
                    attempt,
                    token,
                    ..
                },
                Some(data),
            ) => Ok(Some(Lease {
                id: TaskId { job: job_id, chunk },
                kind,
                spec,
                data,
                worker: worker.to_string(),
                attempt,
                token,
            })),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        let message = Message::Extend {
            job_id: lease.id.job.clone(),
            chunk: lease.id.chunk,
            token: lease.token.clone(),
        };
        match self.request(message).await? {
            (Message::Extended { held }, _) => Ok(held),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn ack(&self, lease: &Lease) -> BackendResult<()> {
        let message = Message::Ack {
            job_id: lease.id.job.clone(),
            chunk: lease.id.chunk,
            token: lease.token.clone(),
        };
        match self.request(message).await? {
            (Message::Acked, _) => Ok(()),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn nack(&self, lease: &Lease, error: &str) -> BackendResult<NackOutcome> {
        let message = Message::Nack {
            job_id: lease.id.job.clone(),
            chunk: lease.id.chunk,
            token: lease.token.clone(),
            error: error.to_string(),
        };
        match self.request(message).await? {
            (Message::Nacked { outcome }, _) => Ok(match outcome {
                NackReply::Retrying { next_attempt } => NackOutcome::Retrying { next_attempt },
                NackReply::DeadLettered => NackOutcome::DeadLettered,
                NackReply::Stale => NackOutcome::Stale,
            }),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn reclaim_worker(&self, _worker: &str) -> BackendResult<usize> {
        Err(not_for_workers("reclaim_worker"))
    }

    async fn reclaim_expired(&self) -> BackendResult<usize> {
        Err(not_for_workers("reclaim_expired"))
    }

    async fn cancel_job(&self, _job: &str) -> BackendResult<usize> {
        Err(not_for_workers("cancel_job"))
    }
}

#[async_trait]
impl Store for RemoteBackend {
    async fn create_job(&self, _job: &JobRecord) -> BackendResult<CreateOutcome> {
        Err(not_for_workers("create_job"))
    }

    async fn job(&self, _id: &str) -> BackendResult<Option<JobRecord>> {
        Err(not_for_workers("job"))
    }

    async fn jobs(&self) -> BackendResult<Vec<JobRecord>> {
        Err(not_for_workers("jobs"))
    }

    async fn accept_job(&self, _id: &str, _total_chunks: u32) -> BackendResult<()> {
        Err(not_for_workers("accept_job"))
    }

    async fn update_job_spec(&self, _id: &str, _spec: &serde_json::Value) -> BackendResult<()> {
        Err(not_for_workers("update_job_spec"))
    }

    async fn set_status(
        &self,
        _id: &str,
        _status: JobStatus,
        _error: Option<&str>,
    ) -> BackendResult<()> {
        Err(not_for_workers("set_status"))
    }

    async fn put_result_part(
        &self,
        _lease: &Lease,
        _part: u32,
        _bytes: Bytes,
    ) -> BackendResult<()> {
        Err(not_for_workers(
            "put_result_part (put_chunk_result sends the parts)",
        ))
    }

    async fn commit_chunk_result(
        &self,
        _lease: &Lease,
        _result: &ChunkResult,
        _parts: u32,
    ) -> BackendResult<bool> {
        Err(not_for_workers(
            "commit_chunk_result (put_chunk_result sends it)",
        ))
    }

    /// Sends the result with the lease's token; a payload too large for one part follows in
    /// data frames of at most [`RESULT_PART_BYTES`], which the master stores part by part.
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool> {
        let text = serde_json::to_vec(&result.payload)
            .map_err(|e| BackendError::Other(format!("chunk result payload: {e}")))?;
        let (result, frames): (ChunkResult, Vec<&[u8]>) = if text.len() <= RESULT_PART_BYTES {
            (result.clone(), Vec::new())
        } else {
            let header = ChunkResult {
                payload: serde_json::Value::Null,
                ..result.clone()
            };
            (header, text.chunks(RESULT_PART_BYTES).collect())
        };
        let message = Message::PutResult {
            job_id: lease.id.job.clone(),
            token: lease.token.clone(),
            parts: frames.len() as u32,
            result,
        };
        match self.exchange(message, &frames).await? {
            (Message::ResultStored { first }, _) => Ok(first),
            (
                Message::Error {
                    code: ErrorCode::ResultRefused,
                    message,
                },
                _,
            ) => Err(BackendError::refused(
                lease,
                RefusalReason::NotHolder,
                message,
            )),
            (Message::Error { code, message }, _) => Err(refused(code, message)),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn progress(&self, _job: &str) -> BackendResult<Progress> {
        Err(not_for_workers("progress"))
    }

    async fn result_headers(&self, _job: &str) -> BackendResult<Vec<StoredResult>> {
        Err(not_for_workers("result_headers"))
    }

    async fn result_part(&self, _job: &str, _chunk: u32, _part: u32) -> BackendResult<Bytes> {
        Err(not_for_workers("result_part"))
    }

    async fn job_summaries(&self, _limit: usize) -> BackendResult<Vec<JobSummary>> {
        Err(not_for_workers("job_summaries"))
    }

    async fn refused_results(&self) -> BackendResult<Vec<(RefusalReason, u64)>> {
        Err(not_for_workers("refused_results"))
    }

    async fn push_alert(&self, _alert: &serde_json::Value) -> BackendResult<()> {
        Err(not_for_workers("push_alert"))
    }

    async fn alerts(&self, _limit: usize) -> BackendResult<Vec<serde_json::Value>> {
        Err(not_for_workers("alerts"))
    }

    async fn put_worker_metrics(
        &self,
        _worker: &str,
        _metrics: &serde_json::Value,
        _ttl: Duration,
    ) -> BackendResult<()> {
        Err(not_for_workers("put_worker_metrics"))
    }

    async fn worker_metrics(&self) -> BackendResult<Vec<(WorkerId, serde_json::Value)>> {
        Err(not_for_workers("worker_metrics"))
    }
}
