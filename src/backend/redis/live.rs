//! Running command tasks' output tails on Redis: a worker appends each extension's piece to
//! `job:{id}:live:{chunk}` (one script, bounded per stream) and the master reads it back. Both
//! keys expire unless the next extension comes, so a task whose worker died leaves nothing
//! behind for long; a task that ends has its tail deleted by the worker that ran it, which alone
//! knows whether it sent one (a task that ends before its first lease check costs no extra
//! round trip).

use ::redis::AsyncCommands;

use super::keys;
use super::RedisBackend;
use crate::backend::live_output::{
    LiveOutput, LiveStream, OutputPiece, LIVE_TAIL_BYTES, MAX_LIVE_TASKS,
};
use crate::backend::{BackendError, BackendResult, Lease};

/// How long a tail outlives its last extension: a live worker extends a running task's lease
/// at least every --extend-interval (20 s by default).
const LIVE_TTL_MS: u64 = 120_000;

/// The fields of a tail, in the order [`decode`] reads them.
const FIELDS: [&str; 7] = [
    "worker",
    "started_at",
    "updated_at",
    "out_off",
    "out",
    "err_off",
    "err",
];

/// A tail's fields as read.
type RawTail = (
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<u64>,
    Option<Vec<u8>>,
    Option<u64>,
    Option<Vec<u8>>,
);

impl RedisBackend {
    /// Appends `piece` to the tail of `lease`'s delivery (call only while the lease is held).
    pub(super) async fn append_live(
        &self,
        lease: &Lease,
        piece: &OutputPiece,
    ) -> BackendResult<()> {
        let mut invocation = self.scripts.live_append.prepare_invoke();
        invocation
            .key(keys::job_live(&lease.id.job, lease.id.chunk))
            .key(keys::job_live_index(&lease.id.job))
            .arg(&lease.token)
            .arg(&lease.worker)
            .arg(crate::time::unix_now())
            .arg(piece.stdout_offset)
            .arg(piece.stdout.as_bytes())
            .arg(piece.stderr_offset)
            .arg(piece.stderr.as_bytes())
            .arg(LIVE_TAIL_BYTES)
            .arg(LIVE_TTL_MS)
            .arg(lease.id.chunk)
            .arg(MAX_LIVE_TASKS);
        let _kept: i64 = self.invoke(&invocation).await?;
        let mut live_sent = self.live_sent.lock().unwrap_or_else(|p| p.into_inner());
        // Deliveries dropped without an ack (a cancelled job's) would stay here: past the bound
        // the set starts afresh, and their tails expire on their own.
        if live_sent.len() >= MAX_LIVE_TASKS {
            live_sent.clear();
        }
        live_sent.insert(lease.token.clone());
        Ok(())
    }

    /// Deletes the tails of the deliveries among `leases` that sent one: their tasks ended.
    pub(super) async fn forget_live<'a>(&self, leases: impl IntoIterator<Item = &'a Lease>) {
        let sent: Vec<&Lease> = {
            let mut live_sent = self.live_sent.lock().unwrap_or_else(|p| p.into_inner());
            leases
                .into_iter()
                .filter(|lease| live_sent.remove(&lease.token))
                .collect()
        };
        if sent.is_empty() {
            return;
        }
        let mut pipe = ::redis::pipe();
        for lease in &sent {
            pipe.del(keys::job_live(&lease.id.job, lease.id.chunk))
                .ignore()
                .srem(keys::job_live_index(&lease.id.job), lease.id.chunk)
                .ignore();
        }
        let deleted: BackendResult<()> = self
            .request(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await;
        if let Err(err) = deleted {
            // The tails expire on their own; the stored results are what readers see first.
            tracing::debug!(component = "backend", error = %err, "deleting ended tasks' output tails failed");
        }
    }

    /// Deletes every tail of `job` (cancelled).
    pub(super) async fn forget_live_job(&self, job: &str) -> BackendResult<()> {
        let index = keys::job_live_index(job);
        let chunks: Vec<u32> = self
            .request(|mut conn| {
                let index = &index;
                async move { conn.smembers(index).await }
            })
            .await?;
        let mut pipe = ::redis::pipe();
        pipe.del(&index).ignore();
        for chunk in chunks {
            pipe.del(keys::job_live(job, chunk)).ignore();
        }
        self.request(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async(&mut conn).await }
        })
        .await
    }

    /// The tail of chunk `chunk` of `job`, if one is kept.
    pub(super) async fn read_live(
        &self,
        job: &str,
        chunk: u32,
    ) -> BackendResult<Option<LiveOutput>> {
        let key = keys::job_live(job, chunk);
        let raw: RawTail = self
            .request(|mut conn| {
                let key = &key;
                async move { conn.hget(key, &FIELDS[..]).await }
            })
            .await?;
        Ok(decode(chunk, raw))
    }

    /// The running tasks of `job` with a tail, by chunk, their text left out.
    pub(super) async fn read_live_tasks(&self, job: &str) -> BackendResult<Vec<LiveOutput>> {
        let index = keys::job_live_index(job);
        let mut chunks: Vec<u32> = self
            .request(|mut conn| {
                let index = &index;
                async move { conn.smembers(index).await }
            })
            .await?;
        chunks.sort_unstable();
        chunks.truncate(MAX_LIVE_TASKS);
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for chunk in &chunks {
            let key = keys::job_live(job, *chunk);
            pipe.cmd("HMGET")
                .arg(&key)
                .arg(&["worker", "started_at", "updated_at", "out_off", "err_off"][..])
                .cmd("HSTRLEN")
                .arg(&key)
                .arg("out")
                .cmd("HSTRLEN")
                .arg(&key)
                .arg("err");
        }
        // Three replies per chunk, in order.
        let replies: Vec<::redis::Value> = self
            .request(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        let mut found = Vec::with_capacity(chunks.len());
        for (chunk, reply) in chunks.into_iter().zip(replies.chunks(3)) {
            let [fields, out_len, err_len] = reply else {
                return Err(BackendError::Corrupt(format!(
                    "job {job:?}: a live tail's reply has {} parts",
                    reply.len()
                )));
            };
            let decoded = decode_sizes(fields, out_len, err_len);
            let ((worker, started, updated, out_off, err_off), out_len, err_len) = decoded
                .map_err(|e| BackendError::Corrupt(format!("job {job:?} live tail: {e}")))?;
            let Some(worker) = worker else { continue };
            found.push(LiveOutput {
                chunk,
                worker,
                started_at: started.unwrap_or_default(),
                updated_at: updated.unwrap_or_default(),
                // Text left out, the offset kept at the stream's end: its size so far.
                stdout: LiveStream {
                    offset: out_off.unwrap_or(0) + out_len,
                    text: String::new(),
                },
                stderr: LiveStream {
                    offset: err_off.unwrap_or(0) + err_len,
                    text: String::new(),
                },
            });
        }
        Ok(found)
    }
}

/// A tail's fields without its text (worker, started, updated, stdout and stderr offsets).
type Fields = (
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<u64>,
    Option<u64>,
);

/// One chunk's replies to the listing's three commands.
fn decode_sizes(
    fields: &::redis::Value,
    out_len: &::redis::Value,
    err_len: &::redis::Value,
) -> ::redis::RedisResult<(Fields, u64, u64)> {
    Ok((
        ::redis::from_redis_value(fields)?,
        ::redis::from_redis_value(out_len)?,
        ::redis::from_redis_value(err_len)?,
    ))
}

/// A tail as read; `None` when the key is gone.
fn decode(chunk: u32, raw: RawTail) -> Option<LiveOutput> {
    let (worker, started_at, updated_at, out_off, out, err_off, err) = raw;
    let text =
        |bytes: Option<Vec<u8>>| String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned();
    Some(LiveOutput {
        chunk,
        worker: worker?,
        started_at: started_at.unwrap_or_default(),
        updated_at: updated_at.unwrap_or_default(),
        stdout: LiveStream {
            offset: out_off.unwrap_or(0),
            text: text(out),
        },
        stderr: LiveStream {
            offset: err_off.unwrap_or(0),
            text: text(err),
        },
    })
}
