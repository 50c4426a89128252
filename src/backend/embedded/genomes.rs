//! Stored genomes on the embedded backend: the `genomes` table describes each stored object and
//! says how its bytes are kept, under the storage id its upload chose (a row written before
//! storage ids has none: its storage is its hash): a genome packed two bits a base in
//! `spool/genomes/<storage>.packed` (see `genome_file`), a command input byte for byte in
//! `spool/genomes/<storage>.seq` (as were genomes stored before packing, which still read). An
//! upload writes `<storage>.partial` off the database thread, and its whole blocks are readable
//! by storage id meanwhile: the master reads them through [`Uploads`], the backend's registry
//! of uploads in progress, and a worker on its host by the block list `<storage>.blocks` beside
//! the file. The commit renames the file and inserts the row in one step
//! on the database thread, so a row always names a complete file; a copy whose genome was
//! stored meanwhile becomes a spare (`spare_copies`), kept until its job ends because its tasks
//! read it. Checks and deletions run as one transaction there too, so they never race a submit
//! that starts using the genome.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, OptionalExtension, Row};
use tokio::io::AsyncWriteExt;

use super::db::{sql_error, Db, DbState};
use super::genome_file::{PackedFileWriter, SharedWritten};
use crate::backend::packed::StoredFormat;
use crate::backend::{
    BackendError, BackendResult, GenomeRecord, GenomeRemoval, GenomeWriter, StoredKind,
};

/// Statuses of a job that still needs its genome.
const UNFINISHED: &str = "('uploading', 'pending', 'processing')";

/// Uploads in progress by storage id, with what of each is readable.
pub(super) type Uploads = Arc<Mutex<HashMap<String, SharedWritten>>>;

/// What of the upload kept under `storage` is readable, if it is in progress.
pub(super) fn uploading(uploads: &Uploads, storage: &str) -> Option<SharedWritten> {
    let uploads = uploads.lock().unwrap_or_else(|e| e.into_inner());
    uploads.get(storage).cloned()
}

/// Where a complete object's bytes live, by its storage id and how they are kept.
pub(super) fn stored_path(dir: &Path, storage: &str, format: StoredFormat) -> PathBuf {
    match format {
        StoredFormat::Raw => dir.join(format!("{storage}.seq")),
        StoredFormat::Packed => dir.join(format!("{storage}.packed")),
    }
}

/// Where an upload in progress writes its bytes, by its storage id.
pub(super) fn partial_path(dir: &Path, storage: &str) -> PathBuf {
    dir.join(format!("{storage}.partial"))
}

/// Where an upload in progress lists the blocks of its packed genome written so far.
pub(super) fn listing_path(dir: &Path, storage: &str) -> PathBuf {
    dir.join(format!("{storage}.blocks"))
}

/// Deletes partial sequences, and their block lists, left by uploads cut off when the master
/// stopped (an upload never resumes: it restarts from its first byte).
pub(super) fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .path()
            .extension()
            .is_some_and(|ext| ext == "partial" || ext == "blocks")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// How an upload's bytes are written: a genome packed, a command input as it comes.
enum Body {
    Raw(tokio::io::BufWriter<tokio::fs::File>),
    Packed(Box<PackedFileWriter>),
}

/// An object being written as its upload streams in.
pub(super) struct EmbeddedGenomeWriter {
    db: Db,
    dir: PathBuf,
    storage: String,
    partial: PathBuf,
    /// The block list of a packed upload.
    listing: Option<PathBuf>,
    body: Body,
    uploads: Uploads,
    /// What of a packed upload is readable, as its file writer publishes it.
    published: Option<SharedWritten>,
}

impl EmbeddedGenomeWriter {
    pub(super) async fn create(
        db: Db,
        dir: PathBuf,
        kind: StoredKind,
        uploads: Uploads,
    ) -> BackendResult<Self> {
        let storage = crate::backend::genome::new_storage_id();
        let partial = partial_path(&dir, &storage);
        let (mut published, mut listing) = (None, None);
        let body = match kind {
            StoredKind::Genome => {
                let list = listing_path(&dir, &storage);
                listing = Some(list.clone());
                let writer = match PackedFileWriter::create(partial.clone(), list.clone()).await {
                    Ok(writer) => writer,
                    Err(err) => {
                        let _ = tokio::fs::remove_file(&partial).await;
                        let _ = tokio::fs::remove_file(&list).await;
                        return Err(err);
                    }
                };
                let shared = writer.published();
                uploads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(storage.clone(), shared.clone());
                published = Some(shared);
                Body::Packed(Box::new(writer))
            }
            StoredKind::Input => {
                let file = tokio::fs::File::create(&partial)
                    .await
                    .map_err(|err| io_error(&partial, err))?;
                Body::Raw(tokio::io::BufWriter::with_capacity(1 << 20, file))
            }
        };
        Ok(Self {
            db,
            dir,
            storage,
            partial,
            listing,
            body,
            uploads,
            published,
        })
    }

    /// Writes what is still buffered; the format the file is in.
    async fn finish(&mut self) -> BackendResult<StoredFormat> {
        match &mut self.body {
            Body::Raw(file) => file
                .flush()
                .await
                .map(|()| StoredFormat::Raw)
                .map_err(|err| io_error(&self.partial, err)),
            Body::Packed(writer) => writer.finish().await.map(|()| StoredFormat::Packed),
        }
    }
}

impl Drop for EmbeddedGenomeWriter {
    /// However the upload ends, it is no longer in progress; a file still partial (the upload
    /// failed, or was dropped mid-way) goes with it.
    fn drop(&mut self) {
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.storage);
        let _ = std::fs::remove_file(&self.partial);
        if let Some(listing) = &self.listing {
            let _ = std::fs::remove_file(listing);
        }
    }
}

#[async_trait]
impl GenomeWriter for EmbeddedGenomeWriter {
    fn storage(&self) -> &str {
        &self.storage
    }

    fn readable(&self) -> u64 {
        self.published
            .as_ref()
            .map_or(0, |written| super::genome_file::lock(written).bases)
    }

    async fn flush(&mut self) -> BackendResult<()> {
        match &mut self.body {
            Body::Raw(file) => file
                .flush()
                .await
                .map_err(|err| io_error(&self.partial, err)),
            Body::Packed(writer) => writer.flush_last().await,
        }
    }

    async fn append(&mut self, bases: Bytes) -> BackendResult<()> {
        match &mut self.body {
            Body::Raw(file) => file
                .write_all(&bases)
                .await
                .map_err(|err| io_error(&self.partial, err)),
            Body::Packed(writer) => writer.append(&bases).await,
        }
    }

    async fn commit(mut self: Box<Self>, genome: &GenomeRecord, job: &str) -> BackendResult<()> {
        let format = match self.finish().await {
            Ok(format) => format,
            Err(err) => {
                let _ = tokio::fs::remove_file(&self.partial).await;
                return Err(err);
            }
        };
        // Renamed while readers cannot open it (they open under the same lock), so a read of
        // the upload in progress finds the file under one name or the other.
        let target = stored_path(&self.dir, &self.storage, format);
        let renamed = match &self.published {
            Some(written) => {
                let mut written = super::genome_file::lock(written);
                std::fs::rename(&self.partial, &target).map(|()| written.path = target.clone())
            }
            None => std::fs::rename(&self.partial, &target),
        };
        if let Err(err) = renamed {
            return Err(io_error(&target, err));
        }
        // Readers of the upload in progress now find the complete file first.
        if let Some(listing) = self.listing.take() {
            let _ = tokio::fs::remove_file(&listing).await;
        }
        let (dir, storage, genome, job) = (
            self.dir.clone(),
            self.storage.clone(),
            genome.clone(),
            job.to_string(),
        );
        let outcome = self
            .db
            .call(move |state| commit(state, &dir, &storage, format, &genome, &job))
            .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&target).await;
        }
        outcome
    }

    async fn discard(self: Box<Self>) {
        // Dropping deletes the partial file.
    }
}

/// Makes a written sequence the genome's, unless the genome is stored already: then a genome's
/// copy is kept as a spare for its job, a command input's deleted. Records the job as a user.
fn commit(
    state: &mut DbState,
    dir: &Path,
    storage: &str,
    format: StoredFormat,
    genome: &GenomeRecord,
    job: &str,
) -> BackendResult<()> {
    let now = state.now();
    let tx = state.conn.transaction().map_err(sql_error)?;
    let stored: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM genomes WHERE hash = ?1)",
            [&genome.hash],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    if stored && genome.kind == StoredKind::Genome {
        tx.execute(
            "INSERT OR REPLACE INTO spare_copies (storage, job, format) VALUES (?1, ?2, ?3)",
            params![storage, job, format.as_str()],
        )
        .map_err(sql_error)?;
    } else if stored {
        let _ = std::fs::remove_file(stored_path(dir, storage, format));
    } else {
        let records = serde_json::to_string(&genome.records)
            .map_err(|e| BackendError::Other(format!("genome records: {e}")))?;
        tx.execute(
            "INSERT INTO genomes (hash, size_bytes, bases, records, filename, created_at, last_used,
                 kind, format, storage)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
            params![
                genome.hash,
                genome.size_bytes as i64,
                genome.bases as i64,
                records,
                genome.filename,
                now,
                genome.kind.as_str(),
                format.as_str(),
                storage
            ],
        )
        .map_err(sql_error)?;
    }
    mark_used(&tx, &genome.hash, job, now)?;
    tx.commit().map_err(sql_error)
}

/// Deletes the spare copies whose job is no longer unfinished (or is gone); returns their
/// storage ids.
pub(super) fn sweep_spares(state: &mut DbState, dir: &Path) -> BackendResult<Vec<String>> {
    let tx = state.conn.transaction().map_err(sql_error)?;
    let ended: Vec<(String, String)> = tx
        .prepare(&format!(
            "SELECT s.storage, s.format FROM spare_copies s WHERE NOT EXISTS (
                 SELECT 1 FROM jobs j WHERE j.id = s.job AND j.status IN {UNFINISHED})"
        ))
        .map_err(sql_error)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    for (storage, _) in &ended {
        tx.execute("DELETE FROM spare_copies WHERE storage = ?1", [storage])
            .map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)?;
    for (storage, format) in &ended {
        if let Ok(format) = StoredFormat::parse(Some(format)) {
            let _ = std::fs::remove_file(stored_path(dir, storage, format));
        }
    }
    Ok(ended.into_iter().map(|(storage, _)| storage).collect())
}

fn mark_used(tx: &rusqlite::Transaction<'_>, hash: &str, job: &str, now: f64) -> BackendResult<()> {
    tx.execute(
        "INSERT OR IGNORE INTO genome_jobs (hash, job) VALUES (?1, ?2)",
        params![hash, job],
    )
    .map_err(sql_error)?;
    tx.execute(
        "UPDATE genomes SET last_used = MAX(last_used, ?2) WHERE hash = ?1",
        params![hash, now],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// The columns of a listed genome, its last use counting the finish of the jobs that used it.
const SELECT_GENOME: &str = "SELECT g.hash, g.size_bytes, g.bases, g.records, g.filename,
        g.created_at,
        MAX(g.last_used, COALESCE((SELECT MAX(j.finished_at) FROM genome_jobs u
            JOIN jobs j ON j.id = u.job WHERE u.hash = g.hash), 0)),
        (SELECT COUNT(*) FROM genome_jobs u JOIN jobs j ON j.id = u.job
            WHERE u.hash = g.hash),
        g.kind, COALESCE(g.storage, g.hash)
    FROM genomes g";

fn genome_from_row(row: &Row<'_>) -> rusqlite::Result<GenomeRecord> {
    let records: String = row.get(3)?;
    let kind: String = row.get(8)?;
    Ok(GenomeRecord {
        kind: StoredKind::parse(&kind),
        hash: row.get(0)?,
        storage: row.get(9)?,
        size_bytes: row.get::<_, i64>(1)? as u64,
        bases: row.get::<_, i64>(2)? as u64,
        records: serde_json::from_str(&records).unwrap_or(serde_json::Value::Null),
        filename: row.get(4)?,
        created_at: row.get(5)?,
        last_used: row.get(6)?,
        jobs: row.get::<_, i64>(7)? as u32,
    })
}

/// The stored genome, now used by `job` (looked up and marked in one transaction).
pub(super) fn use_genome(
    state: &mut DbState,
    hash: &str,
    job: &str,
) -> BackendResult<Option<GenomeRecord>> {
    let now = state.now();
    let tx = state.conn.transaction().map_err(sql_error)?;
    let genome = tx
        .query_row(
            &format!("{SELECT_GENOME} WHERE g.hash = ?1"),
            [hash],
            genome_from_row,
        )
        .optional()
        .map_err(sql_error)?;
    if genome.is_some() {
        mark_used(&tx, hash, job, now)?;
    }
    tx.commit().map_err(sql_error)?;
    Ok(genome)
}

/// Every stored genome, oldest first.
pub(super) fn genomes(state: &mut DbState) -> BackendResult<Vec<GenomeRecord>> {
    let mut select = state
        .conn
        .prepare_cached(&format!("{SELECT_GENOME} ORDER BY g.created_at, g.hash"))
        .map_err(sql_error)?;
    let rows = select
        .query_map([], genome_from_row)
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error);
    rows
}

/// Deletes a genome unless an unfinished job uses it.
pub(super) fn remove(state: &mut DbState, dir: &Path, hash: &str) -> BackendResult<GenomeRemoval> {
    let tx = state.conn.transaction().map_err(sql_error)?;
    let stored: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM genomes WHERE hash = ?1)",
            [hash],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    if !stored {
        return Ok(GenomeRemoval::NotFound);
    }
    let users: Vec<String> = tx
        .prepare(&format!(
            "SELECT u.job FROM genome_jobs u JOIN jobs j ON j.id = u.job
             WHERE u.hash = ?1 AND j.status IN {UNFINISHED} ORDER BY u.job"
        ))
        .map_err(sql_error)?
        .query_map([hash], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    if !users.is_empty() {
        return Ok(GenomeRemoval::InUse { jobs: users });
    }
    let storage = delete(&tx, hash)?;
    tx.commit().map_err(sql_error)?;
    remove_files(dir, &storage);
    Ok(GenomeRemoval::Removed)
}

/// Deletes every genome no unfinished job uses and last used at or before `unused_before`.
pub(super) fn prune(
    state: &mut DbState,
    dir: &Path,
    unused_before: f64,
) -> BackendResult<Vec<String>> {
    let tx = state.conn.transaction().map_err(sql_error)?;
    let doomed: Vec<String> = tx
        .prepare(&format!(
            "WITH listed (hash, a, b, c, d, e, used, n, k, s) AS ({SELECT_GENOME})
             SELECT hash FROM listed WHERE used <= ?1 AND NOT EXISTS (SELECT 1 FROM genome_jobs u
                 JOIN jobs j ON j.id = u.job
                 WHERE u.hash = listed.hash AND j.status IN {UNFINISHED})"
        ))
        .map_err(sql_error)?
        .query_map([unused_before], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let mut storages = Vec::with_capacity(doomed.len());
    for hash in &doomed {
        storages.push(delete(&tx, hash)?);
    }
    tx.commit().map_err(sql_error)?;
    for storage in &storages {
        remove_files(dir, storage);
    }
    Ok(doomed)
}

/// Deletes a genome's rows; returns the storage id its bytes are kept under.
fn delete(tx: &rusqlite::Transaction<'_>, hash: &str) -> BackendResult<String> {
    let storage: String = tx
        .query_row(
            "SELECT COALESCE(storage, hash) FROM genomes WHERE hash = ?1",
            [hash],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    for sql in [
        "DELETE FROM genome_jobs WHERE hash = ?1",
        "DELETE FROM genomes WHERE hash = ?1",
    ] {
        tx.execute(sql, [hash]).map_err(sql_error)?;
    }
    Ok(storage)
}

/// Deletes an object's file, whichever way it was kept.
fn remove_files(dir: &Path, storage: &str) {
    if !crate::backend::genome::is_genome_hash(storage) {
        return;
    }
    for format in [StoredFormat::Raw, StoredFormat::Packed] {
        let _ = std::fs::remove_file(stored_path(dir, storage, format));
    }
}

/// Where the stored object `hash` is kept and how; `None` if nothing is stored under it.
pub(super) fn stored_at(
    state: &mut DbState,
    hash: &str,
) -> BackendResult<Option<(String, StoredFormat)>> {
    let found: Option<(String, String)> = state
        .conn
        .prepare_cached("SELECT COALESCE(storage, hash), format FROM genomes WHERE hash = ?1")
        .and_then(|mut select| {
            select
                .query_row([hash], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sql_error)?;
    found
        .map(|(storage, word)| Ok((storage, parse_format(hash, &word)?)))
        .transpose()
}

/// How the complete object kept under `storage` (a genome's, or a spare copy) is kept; `None`
/// if nothing complete is kept under it.
pub(super) fn storage_format(
    state: &mut DbState,
    storage: &str,
) -> BackendResult<Option<StoredFormat>> {
    let word: Option<String> = state
        .conn
        .prepare_cached(
            "SELECT format FROM genomes WHERE storage = ?1 OR (storage IS NULL AND hash = ?1)
             UNION ALL SELECT format FROM spare_copies WHERE storage = ?1 LIMIT 1",
        )
        .and_then(|mut select| select.query_row([storage], |row| row.get(0)).optional())
        .map_err(sql_error)?;
    word.map(|word| parse_format(storage, &word)).transpose()
}

fn parse_format(name: &str, word: &str) -> BackendResult<StoredFormat> {
    StoredFormat::parse(Some(word))
        .map_err(|err| BackendError::Other(format!("stored genome {name}: {err}")))
}

/// Reads `len` bases from `offset` of a stored object kept under `storage` as `format` (a
/// blocking call: run it off the async threads, and off the database thread).
pub(super) fn read_range(
    dir: &Path,
    storage: &str,
    format: StoredFormat,
    offset: u64,
    len: u64,
) -> BackendResult<Bytes> {
    use std::os::unix::fs::FileExt;
    let hash = storage;
    let path = stored_path(dir, storage, format);
    if format == StoredFormat::Packed {
        return super::genome_file::read_range(&path, offset, len);
    }
    let file = std::fs::File::open(&path)
        .map_err(|err| BackendError::Other(format!("stored genome {hash}: {err}")))?;
    let stored = file
        .metadata()
        .map_err(|err| BackendError::Other(format!("stored genome {hash}: {err}")))?
        .len();
    let len = usize::try_from(len)
        .ok()
        .filter(|_| offset.checked_add(len).is_some_and(|end| end <= stored))
        .ok_or_else(|| {
            BackendError::Other(format!(
                "bytes {offset}+{len} lie past the stored object's {stored}"
            ))
        })?;
    let mut buffer = vec![0u8; len];
    file.read_exact_at(&mut buffer, offset)
        .map_err(|err| BackendError::Corrupt(format!("{}: {err}", path.display())))?;
    Ok(Bytes::from(buffer))
}

fn io_error(path: &Path, err: std::io::Error) -> BackendError {
    BackendError::Other(format!("{}: {err}", path.display()))
}
