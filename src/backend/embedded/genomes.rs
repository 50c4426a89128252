//! Stored genomes on the embedded backend: `spool/genomes/<hash>.seq` holds the decoded
//! sequence and the `genomes` table its description. An upload writes `<random>.partial` off the
//! database thread; the commit renames it and inserts the row in one step on the database thread,
//! so a row always names a complete file. Checks and deletions run as one transaction there too,
//! so they never race a submit that starts using the genome.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, OptionalExtension, Row};
use tokio::io::AsyncWriteExt;

use super::db::{sql_error, Db, DbState};
use crate::backend::{
    BackendError, BackendResult, GenomeRecord, GenomeRemoval, GenomeWriter, StoredKind,
};

/// Statuses of a job that still needs its genome.
const UNFINISHED: &str = "('uploading', 'pending', 'processing')";

/// Where a complete genome's sequence lives.
pub(super) fn sequence_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(format!("{hash}.seq"))
}

/// Deletes partial sequences left by uploads cut off when the master stopped (an upload never
/// resumes: it restarts from its first byte).
pub(super) fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|ext| ext == "partial") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A sequence being written as its upload streams in.
pub(super) struct EmbeddedGenomeWriter {
    db: Db,
    dir: PathBuf,
    partial: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
}

impl EmbeddedGenomeWriter {
    pub(super) async fn create(db: Db, dir: PathBuf) -> BackendResult<Self> {
        let partial = dir.join(format!("{}.partial", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|err| io_error(&partial, err))?;
        Ok(Self {
            db,
            dir,
            partial,
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
        })
    }
}

#[async_trait]
impl GenomeWriter for EmbeddedGenomeWriter {
    async fn append(&mut self, bases: Bytes) -> BackendResult<()> {
        self.file
            .write_all(&bases)
            .await
            .map_err(|err| io_error(&self.partial, err))
    }

    async fn commit(mut self: Box<Self>, genome: &GenomeRecord, job: &str) -> BackendResult<()> {
        let flushed = self.file.flush().await;
        if let Err(err) = flushed {
            let _ = tokio::fs::remove_file(&self.partial).await;
            return Err(io_error(&self.partial, err));
        }
        let (partial, dir, genome, job) = (
            self.partial.clone(),
            self.dir.clone(),
            genome.clone(),
            job.to_string(),
        );
        let outcome = self
            .db
            .call(move |state| commit(state, &partial, &dir, &genome, &job))
            .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&self.partial).await;
        }
        outcome
    }

    async fn discard(self: Box<Self>) {
        let _ = tokio::fs::remove_file(&self.partial).await;
    }
}

/// Makes a written sequence the genome's, unless the genome is stored already; records the job.
fn commit(
    state: &mut DbState,
    partial: &Path,
    dir: &Path,
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
    if stored {
        let _ = std::fs::remove_file(partial);
    } else {
        let target = sequence_path(dir, &genome.hash);
        std::fs::rename(partial, &target).map_err(|err| io_error(&target, err))?;
        let records = serde_json::to_string(&genome.records)
            .map_err(|e| BackendError::Other(format!("genome records: {e}")))?;
        tx.execute(
            "INSERT INTO genomes (hash, size_bytes, bases, records, filename, created_at, last_used,
                 kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
            params![
                genome.hash,
                genome.size_bytes as i64,
                genome.bases as i64,
                records,
                genome.filename,
                now,
                genome.kind.as_str()
            ],
        )
        .map_err(sql_error)?;
    }
    mark_used(&tx, &genome.hash, job, now)?;
    tx.commit().map_err(sql_error)
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
        g.kind
    FROM genomes g";

fn genome_from_row(row: &Row<'_>) -> rusqlite::Result<GenomeRecord> {
    let records: String = row.get(3)?;
    let kind: String = row.get(8)?;
    Ok(GenomeRecord {
        kind: StoredKind::parse(&kind),
        hash: row.get(0)?,
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
    delete(&tx, hash)?;
    tx.commit().map_err(sql_error)?;
    let _ = std::fs::remove_file(sequence_path(dir, hash));
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
            "WITH listed (hash, a, b, c, d, e, used, n, k) AS ({SELECT_GENOME})
             SELECT hash FROM listed WHERE used <= ?1 AND NOT EXISTS (SELECT 1 FROM genome_jobs u
                 JOIN jobs j ON j.id = u.job
                 WHERE u.hash = listed.hash AND j.status IN {UNFINISHED})"
        ))
        .map_err(sql_error)?
        .query_map([unused_before], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    for hash in &doomed {
        delete(&tx, hash)?;
    }
    tx.commit().map_err(sql_error)?;
    for hash in &doomed {
        let _ = std::fs::remove_file(sequence_path(dir, hash));
    }
    Ok(doomed)
}

fn delete(tx: &rusqlite::Transaction<'_>, hash: &str) -> BackendResult<()> {
    for sql in [
        "DELETE FROM genome_jobs WHERE hash = ?1",
        "DELETE FROM genomes WHERE hash = ?1",
    ] {
        tx.execute(sql, [hash]).map_err(sql_error)?;
    }
    Ok(())
}

/// Reads `len` bases from `offset` of a stored sequence (a blocking call: run it off the async
/// threads, and off the database thread).
pub(super) fn read_range(dir: &Path, hash: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
    use std::os::unix::fs::FileExt;
    let path = sequence_path(dir, hash);
    let file = std::fs::File::open(&path)
        .map_err(|err| BackendError::Other(format!("stored genome {hash}: {err}")))?;
    let len = usize::try_from(len)
        .map_err(|_| BackendError::Other(format!("genome range of {len} bases")))?;
    let mut buffer = vec![0u8; len];
    file.read_exact_at(&mut buffer, offset)
        .map_err(|err| BackendError::Corrupt(format!("{}: {err}", path.display())))?;
    Ok(Bytes::from(buffer))
}

fn io_error(path: &Path, err: std::io::Error) -> BackendError {
    BackendError::Other(format!("{}: {err}", path.display()))
}
