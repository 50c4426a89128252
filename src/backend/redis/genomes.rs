//! Stored genomes on Redis, described by the hash `genome:{hash}`, with the jobs using it in
//! `genome:{hash}:jobs`. The bytes live under the storage id the upload chose (the record's
//! `storage`; a record written before storage ids is kept under its hash). A genome is kept
//! packed two bits a base in blocks of [`GENOME_BLOCK_BASES`] (`genome:{storage}:{i}`), each with
//! its exceptions (`genome:{storage}:{i}:x`, see `backend::packed`); a command input, or a genome
//! stored before genomes were packed, byte for byte in blocks of [`GENOME_BLOCK_BYTES`]. An
//! upload writes each block with the upload's expiry and, in the same pipeline, advances the
//! storage's meta key (`genome-storage:{storage}`: format, block size, blocks, readable bases),
//! so workers in other processes read the blocks written so far (`genome_read`). One script
//! then makes the blocks persistent and writes the record, so the record always names complete
//! blocks; when the genome was stored meanwhile the copy is kept as a spare (`genome-spares`)
//! until its job ends. Lookups, removals, prunes and sweeps are scripts too, atomic against
//! each other; a master that dies mid-upload leaves blocks that expire.

use std::collections::HashMap;

use ::redis::aio::ConnectionManager;
use ::redis::Script;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::keys::{
    self, GENOMES_INDEX, GENOME_BLOCK_BASES, GENOME_BLOCK_BYTES, GENOME_UPLOAD_TTL_MS,
};
use super::{backend_error, RedisBackend};
use crate::backend::genome::new_storage_id;
use crate::backend::packed::{BlockEncoder, PackedBlock, StoredFormat};
use crate::backend::{
    BackendError, BackendResult, GenomeRecord, GenomeRemoval, GenomeWriter, StoredKind,
};

/// How an upload's bytes are cut into blocks.
enum Blocks {
    /// Byte for byte: bytes not yet making a whole block.
    Raw(BytesMut),
    /// Packed, with the blocks finished and not yet written.
    Packed(Option<BlockEncoder>, Vec<PackedBlock>),
}

/// An object being written in blocks as its upload streams in.
pub(super) struct RedisGenomeWriter {
    commands: ConnectionManager,
    storage: String,
    blocks: Blocks,
    /// Blocks written.
    written: u64,
    /// Bases (or bytes) in the blocks written: what readers can read.
    readable: u64,
}

impl RedisGenomeWriter {
    /// Begins an upload: picks its storage id and writes its meta key, so readers know how its
    /// blocks are kept before the first one is written.
    pub(super) async fn begin(backend: &RedisBackend, kind: StoredKind) -> BackendResult<Self> {
        let blocks = match kind {
            StoredKind::Genome => Blocks::Packed(
                Some(BlockEncoder::new(GENOME_BLOCK_BASES as u32)),
                Vec::new(),
            ),
            StoredKind::Input => Blocks::Raw(BytesMut::new()),
        };
        let mut writer = Self {
            commands: backend.commands.clone(),
            storage: new_storage_id(),
            blocks,
            written: 0,
            readable: 0,
        };
        let (format, block_size) = writer.layout();
        let meta = keys::genome_storage_meta(&writer.storage);
        ::redis::pipe()
            .cmd("HSET")
            .arg(&meta)
            .arg("format")
            .arg(format.as_str())
            .arg("block_size")
            .arg(block_size)
            .arg("blocks")
            .arg(0)
            .arg("bases")
            .arg(0)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&meta)
            .arg(GENOME_UPLOAD_TTL_MS)
            .ignore()
            .query_async::<()>(&mut writer.commands)
            .await
            .map_err(backend_error)?;
        Ok(writer)
    }

    /// How the blocks are kept: the record's `format` and `block_size`.
    fn layout(&self) -> (StoredFormat, u64) {
        match self.blocks {
            Blocks::Raw(_) => (StoredFormat::Raw, GENOME_BLOCK_BYTES),
            Blocks::Packed(..) => (StoredFormat::Packed, GENOME_BLOCK_BASES),
        }
    }

    /// Writes the next block of `bases` bases (or bytes): its bytes, for a packed block its
    /// exceptions, then the meta key's count, in one round trip; Redis runs them in order, so a
    /// reader that sees the count sees the block.
    async fn write_block(
        &mut self,
        block: &[u8],
        exceptions: Option<&[u8]>,
        bases: u64,
    ) -> BackendResult<()> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET")
            .arg(keys::genome_block(&self.storage, self.written))
            .arg(block)
            .arg("PX")
            .arg(GENOME_UPLOAD_TTL_MS)
            .ignore();
        if let Some(exceptions) = exceptions {
            pipe.cmd("SET")
                .arg(keys::genome_exceptions(&self.storage, self.written))
                .arg(exceptions)
                .arg("PX")
                .arg(GENOME_UPLOAD_TTL_MS)
                .ignore();
        }
        let meta = keys::genome_storage_meta(&self.storage);
        pipe.cmd("HSET")
            .arg(&meta)
            .arg("blocks")
            .arg(self.written + 1)
            .arg("bases")
            .arg(self.readable + bases)
            .ignore();
        pipe.query_async::<()>(&mut self.commands)
            .await
            .map_err(backend_error)?;
        self.written += 1;
        self.readable += bases;
        Ok(())
    }

    /// Writes the packed blocks finished so far.
    async fn write_packed(&mut self) -> BackendResult<()> {
        let finished = match &mut self.blocks {
            Blocks::Packed(_, finished) => std::mem::take(finished),
            Blocks::Raw(_) => Vec::new(),
        };
        for block in finished {
            self.write_block(&block.packed, Some(&block.exceptions), block.bases)
                .await?;
        }
        Ok(())
    }

    /// A whole block of raw bytes, when that many are held.
    fn full_raw_block(&mut self) -> Option<Bytes> {
        match &mut self.blocks {
            Blocks::Raw(pending) if pending.len() as u64 >= GENOME_BLOCK_BYTES => {
                Some(pending.split_to(GENOME_BLOCK_BYTES as usize).freeze())
            }
            _ => None,
        }
    }

    /// Writes what is still held: the last block.
    async fn write_last(&mut self) -> BackendResult<()> {
        let last_raw = match &mut self.blocks {
            Blocks::Raw(pending) => (!pending.is_empty()).then(|| std::mem::take(pending).freeze()),
            Blocks::Packed(encoder, finished) => {
                finished.extend(encoder.take().and_then(BlockEncoder::finish));
                None
            }
        };
        if let Some(last) = last_raw {
            self.write_block(&last, None, last.len() as u64).await?;
        }
        self.write_packed().await
    }

    async fn drop_blocks(&mut self) {
        for index in 0..self.written {
            let _ = ::redis::cmd("DEL")
                .arg(keys::genome_block(&self.storage, index))
                .arg(keys::genome_exceptions(&self.storage, index))
                .query_async::<()>(&mut self.commands)
                .await;
        }
        let _ = ::redis::cmd("DEL")
            .arg(keys::genome_storage_meta(&self.storage))
            .query_async::<()>(&mut self.commands)
            .await;
    }
}

#[async_trait]
impl GenomeWriter for RedisGenomeWriter {
    fn storage(&self) -> &str {
        &self.storage
    }

    fn readable(&self) -> u64 {
        self.readable
    }

    async fn flush(&mut self) -> BackendResult<()> {
        self.write_last().await
    }

    async fn append(&mut self, bases: Bytes) -> BackendResult<()> {
        match &mut self.blocks {
            Blocks::Raw(pending) => pending.extend_from_slice(&bases),
            Blocks::Packed(encoder, finished) => {
                if let Some(encoder) = encoder.as_mut() {
                    encoder.push(&bases, finished);
                }
            }
        }
        while let Some(block) = self.full_raw_block() {
            self.write_block(&block, None, block.len() as u64).await?;
        }
        self.write_packed().await
    }

    async fn commit(mut self: Box<Self>, genome: &GenomeRecord, job: &str) -> BackendResult<()> {
        if let Err(err) = self.write_last().await {
            self.drop_blocks().await;
            return Err(err);
        }
        let records = serde_json::to_string(&genome.records)
            .map_err(|e| BackendError::Other(format!("genome records: {e}")))?;
        let (format, block_size) = self.layout();
        let script = Script::new(include_str!("lua/genome_commit.lua"));
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&genome.hash)
            .arg(&self.storage)
            .arg(self.written)
            .arg(genome.size_bytes)
            .arg(genome.bases)
            .arg(records)
            .arg(&genome.filename)
            .arg(crate::time::unix_now())
            .arg(job)
            .arg(genome.kind.as_str())
            .arg(format.as_str())
            .arg(block_size);
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
        storage: fields
            .get("storage")
            .or_else(|| fields.get("hash"))?
            .clone(),
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

/// Deletes the spare copies whose job has ended; returns their storage ids.
pub(super) async fn sweep_spares(backend: &RedisBackend) -> BackendResult<Vec<String>> {
    let script = Script::new(include_str!("lua/genome_sweep_spares.lua"));
    backend.invoke(&script.prepare_invoke()).await
}

/// The storage id the genome `hash` is kept under, if it is stored.
pub(super) async fn storage_of(
    backend: &RedisBackend,
    hash: &str,
) -> BackendResult<Option<String>> {
    let record = keys::genome_record(hash);
    let (exists, storage): (bool, Option<String>) = backend
        .request(|mut conn| {
            let record = &record;
            async move {
                ::redis::pipe()
                    .exists(record)
                    .hget(record, "storage")
                    .query_async(&mut conn)
                    .await
            }
        })
        .await?;
    Ok(exists.then(|| storage.unwrap_or_else(|| hash.to_string())))
}
