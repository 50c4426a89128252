//! Stored genomes on Redis: the decoded sequence in blocks of [`GENOME_BLOCK_BYTES`]
//! (`genome:{hash}:{i}`, read with `GETRANGE`), described by the hash `genome:{hash}`, with
//! the jobs using it in `genome:{hash}:jobs`. An upload writes its blocks under its own
//! expiring keys; one script renames them and writes the record, so the record always names
//! complete blocks. Lookups, removals and prunes are scripts too, atomic against each other.

use std::collections::HashMap;

use ::redis::aio::ConnectionManager;
use ::redis::Script;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::keys::{self, GENOMES_INDEX, GENOME_BLOCK_BYTES, GENOME_UPLOAD_TTL_MS};
use super::{backend_error, RedisBackend};
use crate::backend::{
    BackendError, BackendResult, GenomeRecord, GenomeRemoval, GenomeWriter, StoredKind,
};

/// A sequence being written in blocks as its upload streams in.
pub(super) struct RedisGenomeWriter {
    commands: ConnectionManager,
    upload: String,
    pending: BytesMut,
    blocks: u64,
}

impl RedisGenomeWriter {
    pub(super) fn new(backend: &RedisBackend) -> Self {
        Self {
            commands: backend.commands.clone(),
            upload: uuid::Uuid::new_v4().simple().to_string(),
            pending: BytesMut::new(),
            blocks: 0,
        }
    }

    async fn write_block(&mut self, block: Bytes) -> BackendResult<()> {
        let key = keys::genome_upload_block(&self.upload, self.blocks);
        let mut set = ::redis::cmd("SET");
        set.arg(&key)
            .arg(block.as_ref())
            .arg("PX")
            .arg(GENOME_UPLOAD_TTL_MS);
        set.query_async::<()>(&mut self.commands)
            .await
            .map_err(backend_error)?;
        self.blocks += 1;
        Ok(())
    }

    async fn drop_blocks(&mut self) {
        for index in 0..self.blocks {
            let key = keys::genome_upload_block(&self.upload, index);
            let _ = ::redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut self.commands)
                .await;
        }
    }
}

#[async_trait]
impl GenomeWriter for RedisGenomeWriter {
    async fn append(&mut self, bases: Bytes) -> BackendResult<()> {
        self.pending.extend_from_slice(&bases);
        while self.pending.len() as u64 >= GENOME_BLOCK_BYTES {
            let block = self.pending.split_to(GENOME_BLOCK_BYTES as usize).freeze();
            self.write_block(block).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, genome: &GenomeRecord, job: &str) -> BackendResult<()> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending).freeze();
            if let Err(err) = self.write_block(last).await {
                self.drop_blocks().await;
                return Err(err);
            }
        }
        let records = serde_json::to_string(&genome.records)
            .map_err(|e| BackendError::Other(format!("genome records: {e}")))?;
        let script = Script::new(include_str!("lua/genome_commit.lua"));
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&genome.hash)
            .arg(&self.upload)
            .arg(self.blocks)
            .arg(genome.size_bytes)
            .arg(genome.bases)
            .arg(records)
            .arg(&genome.filename)
            .arg(crate::time::unix_now())
            .arg(job)
            .arg(genome.kind.as_str());
        let committed: BackendResult<i64> = invocation
            .invoke_async(&mut self.commands)
            .await
            .map_err(backend_error);
        if committed.is_err() {
            self.drop_blocks().await;
        }
        committed.map(|_| ())
    }

    async fn discard(mut self: Box<Self>) {
        self.drop_blocks().await;
    }
}

/// A genome record from its stored fields; `None` if a field is missing or malformed.
fn record_from_fields(fields: &HashMap<String, String>) -> Option<GenomeRecord> {
    let number = |name: &str| fields.get(name)?.parse::<f64>().ok();
    Some(GenomeRecord {
        kind: StoredKind::parse(fields.get("kind").map_or("", String::as_str)),
        hash: fields.get("hash")?.clone(),
        size_bytes: fields.get("size_bytes")?.parse().ok()?,
        bases: fields.get("bases")?.parse().ok()?,
        records: serde_json::from_str(fields.get("records")?).ok()?,
        filename: fields.get("filename").cloned().unwrap_or_default(),
        created_at: number("created_at").unwrap_or(0.0),
        last_used: number("last_used").unwrap_or(0.0),
        jobs: 0,
    })
}

/// The stored genome, now used by `job`.
pub(super) async fn use_genome(
    backend: &RedisBackend,
    hash: &str,
    job: &str,
) -> BackendResult<Option<GenomeRecord>> {
    let script = Script::new(include_str!("lua/genome_use.lua"));
    let mut invocation = script.prepare_invoke();
    invocation.arg(hash).arg(job).arg(crate::time::unix_now());
    let fields: Option<HashMap<String, String>> = backend.invoke(&invocation).await?;
    match fields {
        None => Ok(None),
        Some(fields) => record_from_fields(&fields)
            .map(Some)
            .ok_or_else(|| BackendError::Corrupt(format!("genome {hash}: malformed record"))),
    }
}

/// `len` bases from `offset`: one `GETRANGE` per block the range touches, in one round trip.
pub(super) async fn read_genome(
    backend: &RedisBackend,
    hash: &str,
    offset: u64,
    len: u64,
) -> BackendResult<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let end = offset
        .checked_add(len)
        .ok_or_else(|| BackendError::Other(format!("genome range {offset}+{len}")))?;
    let mut pipe = ::redis::pipe();
    for index in offset / GENOME_BLOCK_BYTES..=(end - 1) / GENOME_BLOCK_BYTES {
        let block_start = index * GENOME_BLOCK_BYTES;
        let from = offset.max(block_start) - block_start;
        let to = end.min(block_start + GENOME_BLOCK_BYTES) - block_start - 1;
        pipe.cmd("GETRANGE")
            .arg(keys::genome_block(hash, index))
            .arg(from)
            .arg(to);
    }
    let parts: Vec<Vec<u8>> = backend
        .request(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async(&mut conn).await }
        })
        .await?;
    let mut bases = BytesMut::with_capacity(len as usize);
    for part in parts {
        bases.extend_from_slice(&part);
    }
    if bases.len() as u64 != len {
        return Err(BackendError::Corrupt(format!(
            "stored genome {hash}: bases {offset}..{end} are missing"
        )));
    }
    Ok(bases.freeze())
}

/// Every stored genome, oldest first, with the jobs that used it and still exist.
pub(super) async fn genomes(backend: &RedisBackend) -> BackendResult<Vec<GenomeRecord>> {
    let hashes: Vec<String> = backend
        .request(|mut conn| async move {
            ::redis::cmd("SMEMBERS")
                .arg(GENOMES_INDEX)
                .query_async(&mut conn)
                .await
        })
        .await?;
    let mut listed = Vec::new();
    for hash in hashes {
        let record_key = keys::genome_record(&hash);
        let (fields, users): (HashMap<String, String>, Vec<String>) = backend
            .request(|mut conn| {
                let record_key = &record_key;
                async move {
                    ::redis::pipe()
                        .hgetall(record_key)
                        .smembers(format!("{record_key}:jobs"))
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        let Some(mut genome) = record_from_fields(&fields) else {
            continue;
        };
        let mut pipe = ::redis::pipe();
        for job in &users {
            pipe.cmd("EXISTS").arg(keys::job_status(job));
            pipe.cmd("HGET").arg(keys::job_info(job)).arg("finished_at");
        }
        let answers: Vec<(bool, Option<String>)> = match users.is_empty() {
            true => Vec::new(),
            false => {
                let flat: Vec<::redis::Value> = backend
                    .request(|mut conn| {
                        let pipe = &pipe;
                        async move { pipe.query_async(&mut conn).await }
                    })
                    .await?;
                flat.chunks(2)
                    .map(|pair| {
                        let exists = matches!(pair.first(), Some(::redis::Value::Int(1)));
                        let finished = pair
                            .get(1)
                            .and_then(|v| ::redis::from_redis_value::<Option<String>>(v).ok())
                            .flatten();
                        (exists, finished)
                    })
                    .collect()
            }
        };
        for (exists, finished) in answers {
            if !exists {
                continue;
            }
            genome.jobs += 1;
            if let Some(at) = finished.and_then(|text| text.parse::<f64>().ok()) {
                genome.last_used = genome.last_used.max(at);
            }
        }
        listed.push(genome);
    }
    listed.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
    Ok(listed)
}

/// Runs the removal script: unconditionally (`cutoff` = `None`) or only for a genome unused
/// since the cutoff.
async fn remove_if(
    backend: &RedisBackend,
    hash: &str,
    cutoff: Option<f64>,
) -> BackendResult<Vec<String>> {
    let script = Script::new(include_str!("lua/genome_remove.lua"));
    let mut invocation = script.prepare_invoke();
    invocation
        .arg(hash)
        .arg(cutoff.map(|at| at.to_string()).unwrap_or_default());
    backend.invoke(&invocation).await
}

/// Deletes a genome unless an unfinished job uses it.
pub(super) async fn remove_genome(
    backend: &RedisBackend,
    hash: &str,
) -> BackendResult<GenomeRemoval> {
    let answer = remove_if(backend, hash, None).await?;
    match answer.split_first() {
        Some((word, _)) if word == "removed" => Ok(GenomeRemoval::Removed),
        Some((word, jobs)) if word == "in_use" => Ok(GenomeRemoval::InUse {
            jobs: jobs.to_vec(),
        }),
        _ => Ok(GenomeRemoval::NotFound),
    }
}

/// Deletes every genome no unfinished job uses and unused since `unused_before`.
pub(super) async fn prune_genomes(
    backend: &RedisBackend,
    unused_before: f64,
) -> BackendResult<Vec<String>> {
    let hashes: Vec<String> = backend
        .request(|mut conn| async move {
            ::redis::cmd("SMEMBERS")
                .arg(GENOMES_INDEX)
                .query_async(&mut conn)
                .await
        })
        .await?;
    let mut removed = Vec::new();
    for hash in hashes {
        let answer = remove_if(backend, &hash, Some(unused_before)).await?;
        if answer.first().is_some_and(|word| word == "removed") {
            removed.push(hash);
        }
    }
    Ok(removed)
}
