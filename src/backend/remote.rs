//! The embedded backend as a worker or the collector sees it: the capabilities the master serves
//! over the protocol, and only those. A worker's [`Leases`] (`lease`, `lease_batch`, `extend`,
//! `ack`, `complete_batch`, `nack`, `release_unheld`) and [`ResultSink`] (`put_result`); the
//! collector's [`MonitorSink`] (`record_alert`, `record_worker`, `list_workers`); a worker's
//! [`InputSource`] (`read_input`, command inputs in bounded pieces). Enqueueing,
//! cancelling, job state and reading results stay with the master: this type does not implement
//! those traits, so a call to them does not compile. Each concurrent call has a connection of its
//! own, taken from a pool of idle ones or opened on demand, so one slot's waiting lease never
//! holds up another's ack; a connection that fails is dropped. A call that cannot reach the
//! master fails `Unavailable`, which the caller retries with backoff.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Mutex;

use super::live_output::OutputPiece;
use super::{
    BackendError, BackendResult, ChunkResult, Completion, CompletionOutcome, InputSource, Lease,
    Leases, MonitorSink, NackOutcome, RefusalReason, ResultSink, TaskId, WorkerId, WorkerOffer,
    INPUT_PIECE_BYTES, MAX_BATCH, RESULT_PART_BYTES,
};
use crate::protocol::{
    ClientTls, CompletedTask, CompletionReply, Dial, ErrorCode, Greeting, Message, NackReply,
    RequestError, Requester, Role,
};

/// How long to wait for the master to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time allowed for a reply beyond the lease wait.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A master reached over TCP, acting for one worker (or the collector).
pub struct RemoteBackend {
    master: String,
    greeting: Greeting,
    tls: Option<ClientTls>,
    idle: Mutex<Vec<Requester>>,
    /// Said with every lease request: whether the worker runs command tasks, and its slots.
    offer: std::sync::Mutex<WorkerOffer>,
}

impl RemoteBackend {
    /// A backend for `worker` talking to the master at `master` (HOST:PORT). Connects lazily.
    pub fn new(
        master: impl Into<String>,
        worker: impl Into<String>,
        token: Option<String>,
    ) -> Self {
        let greeting = Greeting::new(Role::Worker)
            .with_id(worker)
            .with_token(token);
        Self::with_greeting(master, greeting)
    }

    /// A backend that says `greeting` to the master at `master` (HOST:PORT). Connects lazily.
    pub fn with_greeting(master: impl Into<String>, greeting: Greeting) -> Self {
        Self {
            master: master.into(),
            greeting,
            tls: None,
            idle: Mutex::new(Vec::new()),
            offer: std::sync::Mutex::new(WorkerOffer::default()),
        }
    }

    fn offer(&self) -> WorkerOffer {
        *self
            .offer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The same backend, reaching the master over TLS when `tls` is given.
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    async fn connect(&self) -> BackendResult<Requester> {
        let dial = Dial {
            connect_timeout: CONNECT_TIMEOUT,
            attempts: 1,
            read_timeout: Some(REPLY_TIMEOUT),
            tls: self.tls.clone(),
        };
        Requester::connect(&self.master, &self.greeting, &dial)
            .await
            .map_err(|err| self.failed(err))
    }

    /// Greets the master at once, keeping the connection for later calls: a hello the master
    /// refuses (a wrong token, a worker id in use) fails now rather than at the first lease.
    /// An unreachable master is not an error: calls retry until it is back.
    pub async fn greet_now(&self) -> BackendResult<()> {
        match self.connect().await {
            Ok(requester) => {
                self.idle.lock().await.push(requester);
                Ok(())
            }
            Err(BackendError::Unavailable(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A refusal stays a refusal; anything else means the master is away for now.
    fn failed(&self, err: RequestError) -> BackendError {
        match err {
            RequestError::Refused { code, message } => refused(code, message),
            RequestError::ResultRefused { reason, message } => BackendError::Refused {
                job: String::new(),
                chunk: 0,
                reason,
                detail: message,
            },
            // A certificate the CA does not vouch for will not change by retrying.
            RequestError::Tls { reason, .. } => refused(ErrorCode::Unauthorized, reason),
            RequestError::Unreachable { reason, .. } => {
                BackendError::Unavailable(format!("master {}: {reason}", self.master))
            }
            RequestError::Protocol(err) => {
                BackendError::Unavailable(format!("master {}: {err}", self.master))
            }
        }
    }

    /// Sends one request and reads its reply on an idle connection (or a new one); a connection
    /// that fails is dropped, one that answered goes back to the pool. `Task` replies also read
    /// their data frame, `Tasks` replies one per task.
    async fn request(&self, message: Message) -> BackendResult<(Message, Vec<Bytes>)> {
        self.request_with_data(message, &[]).await
    }

    /// Like `request`, with `data` frames sent right after the message.
    async fn request_with_data(
        &self,
        message: Message,
        data: &[&[u8]],
    ) -> BackendResult<(Message, Vec<Bytes>)> {
        let pooled = self.idle.lock().await.pop();
        let mut requester = match pooled {
            Some(requester) => requester,
            None => self.connect().await?,
        };
        let exchange = async {
            let conn = requester.connection();
            conn.send_message(&message).await?;
            for frame in data {
                conn.send_frame(frame).await?;
            }
            conn.flush().await?;
            let reply = requester.reply().await?;
            let frames = match &reply {
                Message::Task { .. } => 1,
                Message::Tasks { tasks } => tasks.len(),
                Message::InputPiece { .. } => 1,
                _ => 0,
            };
            let mut data = Vec::with_capacity(frames);
            for _ in 0..frames {
                data.push(requester.connection().read_data().await?);
            }
            Ok::<_, RequestError>((reply, data))
        }
        .await;
        match exchange {
            Ok(reply) => {
                self.idle.lock().await.push(requester);
                Ok(reply)
            }
            Err(RequestError::ResultRefused { reason, message }) => {
                self.idle.lock().await.push(requester);
                Err(BackendError::Refused {
                    job: String::new(),
                    chunk: 0,
                    reason,
                    detail: message,
                })
            }
            Err(err @ RequestError::Refused { .. }) => {
                self.idle.lock().await.push(requester);
                Err(self.failed(err))
            }
            Err(err) => Err(self.failed(err)),
        }
    }
}

impl RemoteBackend {
    /// Sends `extend`, with a running task's new output when there is some.
    async fn send_extend(&self, lease: &Lease, output: Option<OutputPiece>) -> BackendResult<bool> {
        let message = Message::Extend {
            job_id: lease.id.job.clone(),
            chunk: lease.id.chunk,
            token: lease.token.clone(),
            output,
        };
        match self.request(message).await? {
            (Message::Extended { held }, _) => Ok(held),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    /// Sends the `pending` completions as one `complete_batch` frame and files their outcomes.
    /// A frame the master could not be reached for leaves those items `Unavailable`, to be sent
    /// again; the items already answered keep their outcomes.
    async fn send_completions(
        &self,
        items: &[Completion],
        pending: &mut Vec<(usize, CompletedTask)>,
        outcomes: &mut [Option<CompletionOutcome>],
    ) -> BackendResult<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (indices, tasks): (Vec<usize>, Vec<CompletedTask>) =
            std::mem::take(pending).into_iter().unzip();
        let expected = tasks.len();
        let replies = match self.request(Message::CompleteBatch { tasks }).await {
            Ok((Message::BatchCompleted { outcomes }, _)) if outcomes.len() == expected => outcomes,
            Ok((reply, _)) => return Err(unexpected(&reply)),
            Err(BackendError::Unavailable(reason)) => {
                for index in indices {
                    outcomes[index] = Some(Err(BackendError::Unavailable(reason.clone())));
                }
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        for (index, reply) in indices.into_iter().zip(replies) {
            let lease = &items[index].lease;
            outcomes[index] = Some(match reply {
                CompletionReply::Stored { first } => Ok(first),
                CompletionReply::Refused { reason, message } => Err(BackendError::refused(
                    lease,
                    // A master that names no reason refuses a lease it does not see held.
                    reason.unwrap_or(RefusalReason::NotHolder),
                    message,
                )),
                CompletionReply::Failed { message } => Err(BackendError::Other(message)),
            });
        }
        Ok(())
    }
}

fn refused(code: ErrorCode, message: String) -> BackendError {
    BackendError::Other(format!("master refused ({code}): {message}"))
}

fn unexpected(reply: &Message) -> BackendError {
    BackendError::Other(format!("unexpected reply from master: {reply:?}"))
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    value: &serde_json::Value,
) -> BackendResult<T> {
    serde_json::from_value(value.clone())
        .map_err(|err| BackendError::Other(format!("{what} is not in the wire shape: {err}")))
}

#[async_trait]
impl InputSource for RemoteBackend {
    async fn read_input(&self, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        let message = Message::ReadInput {
            hash: hash.to_string(),
            offset,
            len: len.min(INPUT_PIECE_BYTES),
        };
        match self.request(message).await? {
            (Message::InputPiece { len }, mut data)
                if data.len() == 1 && data[0].len() as u64 == len =>
            {
                Ok(data.remove(0))
            }
            (reply, _) => Err(unexpected(&reply)),
        }
    }
}

#[async_trait]
impl Leases for RemoteBackend {
    async fn set_offer(&self, _worker: &str, offer: WorkerOffer) -> BackendResult<()> {
        *self
            .offer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = offer;
        Ok(())
    }

    async fn lease(&self, worker: &str, wait: Duration) -> BackendResult<Option<Lease>> {
        let wait_ms = wait.as_millis() as u64;
        match self
            .request(Message::Lease {
                wait_ms,
                commands: self.offer().commands,
                slots: Some(self.offer().slots),
                genome_files: self
                    .offer()
                    .genome_files
                    .map(crate::protocol::store_id_text),
                genome_partials: self.offer().genome_partials,
            })
            .await?
        {
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
                mut data,
            ) if data.len() == 1 => Ok(Some(Lease {
                id: TaskId { job: job_id, chunk },
                kind,
                spec,
                data: data.remove(0),
                worker: worker.to_string(),
                attempt,
                token,
            })),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn lease_batch(
        &self,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> BackendResult<Vec<Lease>> {
        let wait_ms = wait.as_millis() as u64;
        let max = max.min(MAX_BATCH) as u32;
        if max == 0 {
            return Ok(Vec::new());
        }
        match self
            .request(Message::LeaseBatch {
                wait_ms,
                max,
                commands: self.offer().commands,
                slots: Some(self.offer().slots),
                genome_files: self
                    .offer()
                    .genome_files
                    .map(crate::protocol::store_id_text),
                genome_partials: self.offer().genome_partials,
            })
            .await?
        {
            (Message::Tasks { tasks }, data) if data.len() == tasks.len() => Ok(tasks
                .into_iter()
                .zip(data)
                .map(|(task, data)| Lease {
                    id: TaskId {
                        job: task.job_id,
                        chunk: task.chunk,
                    },
                    kind: task.kind,
                    spec: task.spec,
                    data,
                    worker: worker.to_string(),
                    attempt: task.attempt,
                    token: task.token,
                })
                .collect()),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    /// Sends the batch in frames of at most [`RESULT_PART_BYTES`] of results each, so a frame
    /// stays well under the master's frame limit; a result too large for that is stored in
    /// parts and acked on its own, as alone.
    async fn complete_batch(
        &self,
        results: &dyn ResultSink,
        items: &[Completion],
    ) -> BackendResult<Vec<CompletionOutcome>> {
        let mut outcomes: Vec<Option<CompletionOutcome>> = Vec::with_capacity(items.len());
        let mut pending: Vec<(usize, CompletedTask)> = Vec::new();
        let mut pending_bytes = 0;
        for (index, item) in items.iter().enumerate() {
            outcomes.push(None);
            let size = serde_json::to_vec(&item.result)
                .map_err(|e| BackendError::Other(format!("chunk result: {e}")))?
                .len();
            if item.result.encoded.is_some() || size > RESULT_PART_BYTES {
                let outcome = match results.put_chunk_result(&item.lease, &item.result).await {
                    Ok(first) => self.ack(&item.lease).await.map(|()| first),
                    Err(err) => Err(err),
                };
                outcomes[index] = Some(outcome);
                continue;
            }
            if pending_bytes + size > RESULT_PART_BYTES || pending.len() >= MAX_BATCH {
                self.send_completions(items, &mut pending, &mut outcomes)
                    .await?;
                pending_bytes = 0;
            }
            pending_bytes += size;
            pending.push((
                index,
                CompletedTask {
                    job_id: item.lease.id.job.clone(),
                    token: item.lease.token.clone(),
                    result: item.result.clone(),
                },
            ));
        }
        self.send_completions(items, &mut pending, &mut outcomes)
            .await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Err(BackendError::Other("batch outcome missing".into())))
            })
            .collect())
    }

    async fn extend(&self, lease: &Lease) -> BackendResult<bool> {
        self.send_extend(lease, None).await
    }

    async fn extend_with_output(&self, lease: &Lease, piece: &OutputPiece) -> BackendResult<bool> {
        self.send_extend(lease, Some(piece.clone())).await
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

    async fn release_unheld(&self, _worker: &str, held: &[String]) -> BackendResult<usize> {
        // The master releases for the worker named in this connection's hello.
        let message = Message::ReleaseUnheld {
            held: held.to_vec(),
        };
        match self.request(message).await? {
            (Message::ReleasedUnheld { released }, _) => Ok(released as usize),
            (reply, _) => Err(unexpected(&reply)),
        }
    }
}

#[async_trait]
impl ResultSink for RemoteBackend {
    /// Sends the result with the lease's token; a payload too large for one part follows in
    /// data frames of at most [`RESULT_PART_BYTES`], which the master stores part by part.
    async fn put_chunk_result(&self, lease: &Lease, result: &ChunkResult) -> BackendResult<bool> {
        let text = result.payload_text()?;
        let (result, frames): (ChunkResult, Vec<&[u8]>) =
            if text.len() <= RESULT_PART_BYTES && result.encoded.is_none() {
                (result.clone(), Vec::new())
            } else {
                (result.header(), text.chunks(RESULT_PART_BYTES).collect())
            };
        let message = Message::PutResult {
            job_id: lease.id.job.clone(),
            token: lease.token.clone(),
            parts: frames.len() as u32,
            result,
        };
        match self.request_with_data(message, &frames).await {
            Ok((Message::ResultStored { first }, _)) => Ok(first),
            Ok((reply, _)) => Err(unexpected(&reply)),
            Err(BackendError::Refused { reason, detail, .. }) => {
                Err(BackendError::refused(lease, reason, detail))
            }
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl MonitorSink for RemoteBackend {
    async fn push_alert(&self, alert: &serde_json::Value) -> BackendResult<()> {
        let message = Message::RecordAlert {
            alert: decode("the alert", alert)?,
        };
        match self.request(message).await? {
            (Message::Recorded, _) => Ok(()),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    async fn put_worker_metrics(
        &self,
        _worker: &str,
        metrics: &serde_json::Value,
        ttl: Duration,
    ) -> BackendResult<()> {
        let message = Message::RecordWorker {
            worker: Box::new(decode("the worker view", metrics)?),
            ttl_secs: ttl.as_secs_f64(),
        };
        match self.request(message).await? {
            (Message::Recorded, _) => Ok(()),
            (reply, _) => Err(unexpected(&reply)),
        }
    }

    /// The master's stored worker views, as `gridwatch workers` reads them: what a restarted
    /// collector takes back.
    async fn worker_metrics(&self) -> BackendResult<Vec<(WorkerId, serde_json::Value)>> {
        match self.request(Message::ListWorkers).await? {
            (Message::Workers { workers }, _) => Ok(workers
                .into_iter()
                .filter_map(|view| {
                    let id = view.worker_id.clone();
                    serde_json::to_value(view).ok().map(|value| (id, value))
                })
                .collect()),
            (reply, _) => Err(unexpected(&reply)),
        }
    }
}
