//! The SQLite connection and spool files live on one dedicated thread; async callers send it
//! closures and await the answer. One thread serialises every write (SQLite allows one writer
//! anyway) and keeps blocking file and database calls off the async runtime.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::backend::{BackendError, BackendResult};

use super::Clock;

const SCHEMA: &str = include_str!("schema.sql");

/// Everything the database thread owns.
pub(super) struct DbState {
    /// The SQLite connection (WAL mode).
    pub conn: Connection,
    /// The data directory, holding `gridwatch.db`.
    data_dir: PathBuf,
    /// Where chunk input bytes are spooled, one file per job.
    spool_dir: PathBuf,
    /// Open spool files and their current length, by job id.
    spools: HashMap<String, (File, u64)>,
    /// Current time in Unix seconds (injectable for tests).
    pub clock: Clock,
}

type Call = Box<dyn FnOnce(&mut DbState) + Send>;

/// Prepared statements kept per connection: more than the store has, so none is parsed twice.
const STATEMENT_CACHE: usize = 128;

/// Handle to the database thread. Cloning shares the thread.
#[derive(Clone)]
pub(super) struct Db {
    calls: Arc<std::sync::Mutex<mpsc::Sender<Call>>>,
}

impl Db {
    /// Opens (creating if needed) `data_dir/gridwatch.db` and `data_dir/spool/`, then starts the
    /// thread.
    pub fn open(data_dir: &Path, clock: Clock) -> BackendResult<Self> {
        let spool_dir = data_dir.join("spool");
        std::fs::create_dir_all(&spool_dir).map_err(|err| {
            BackendError::Other(format!(
                "cannot create data directory {}: {err}",
                spool_dir.display()
            ))
        })?;
        let path = data_dir.join("gridwatch.db");
        let conn = Connection::open(&path)
            .map_err(|err| BackendError::Other(format!("cannot open {}: {err}", path.display())))?;
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
        // The store prepares some sixty distinct statements and rusqlite keeps 16 by default: a
        // statement pushed out of that cache is parsed and planned again on its next use.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let added = add_missing_columns(&conn)?;
        move_specs_out_of_jobs(&conn)?;
        if added.contains(&("jobs", "priority")) {
            copy_priorities_from_specs(&conn)?;
        }
        let mut state = DbState {
            conn,
            data_dir: data_dir.to_path_buf(),
            spool_dir,
            spools: HashMap::new(),
            clock,
        };
        state.remove_orphan_spools();
        let (sender, receiver) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("gridwatch-db".into())
            .spawn(move || {
                while let Ok(call) = receiver.recv() {
                    // A panic inside one call fails that call (its caller sees it), never the
                    // thread every other call needs; an open transaction rolls back as it unwinds.
                    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| call(&mut state)));
                    if ran.is_err() {
                        tracing::error!(
                            component = "backend",
                            "a database call panicked; the database thread goes on"
                        );
                    }
                }
            })
            .map_err(|err| BackendError::Other(format!("cannot start database thread: {err}")))?;
        Ok(Self {
            calls: Arc::new(std::sync::Mutex::new(sender)),
        })
    }

    /// Runs `f` on the database thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbState) -> BackendResult<R> + Send + 'static,
    ) -> BackendResult<R> {
        let (reply, answer) = oneshot::channel();
        let call: Call = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.calls
            .lock()
            .map_err(|_| BackendError::Other("database thread lock poisoned".into()))?
            .send(call)
            .map_err(|_| BackendError::Unavailable("database thread stopped".into()))?;
        answer
            .await
            .map_err(|_| BackendError::Other("database call panicked".into()))?
    }
}

impl DbState {
    /// Current time in Unix seconds.
    pub fn now(&self) -> f64 {
        (self.clock)()
    }

    fn spool_path(&self, job: &str) -> PathBuf {
        // Job ids are client-chosen; hex keeps any id a safe file name.
        let hex: String = job.bytes().map(|b| format!("{b:02x}")).collect();
        self.spool_dir.join(format!("{hex}.chunks"))
    }

    fn spool(&mut self, job: &str) -> BackendResult<&mut (File, u64)> {
        if !self.spools.contains_key(job) {
            let path = self.spool_path(job);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(|err| io_error(&path, err))?;
            let len = file.metadata().map_err(|err| io_error(&path, err))?.len();
            self.spools.insert(job.to_string(), (file, len));
        }
        self.spools
            .get_mut(job)
            .ok_or_else(|| BackendError::Other("spool file vanished".into()))
    }

    /// Appends a chunk's bytes to its job's spool file; returns their offset.
    pub fn spool_append(&mut self, job: &str, data: &[u8]) -> BackendResult<u64> {
        let path = self.spool_path(job);
        let (file, len) = self.spool(job)?;
        let offset = *len;
        file.write_all(data).map_err(|err| io_error(&path, err))?;
        *len += data.len() as u64;
        Ok(offset)
    }

    /// Where a job's chunk bytes are spooled.
    pub fn spool_file(&self, job: &str) -> PathBuf {
        self.spool_path(job)
    }

    /// Deletes spool files whose job has no task left (a master stopped between its last task
    /// and the file's removal, or an upload that failed on a full disk), so their space returns.
    fn remove_orphan_spools(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.spool_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(job) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".chunks"))
                .and_then(unhex)
            else {
                continue;
            };
            let has_tasks = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE job = ?1 AND state != 'dead')",
                    [&job],
                    |row| row.get::<_, bool>(0),
                )
                .unwrap_or(true);
            if !has_tasks {
                tracing::info!(component = "embedded", job = %job, "removing an orphan spool file");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Bytes the database files and the spool use on disk.
    pub fn disk_usage(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let allocated = |path: &Path| {
            std::fs::metadata(path)
                .map(|meta| meta.blocks() * 512)
                .unwrap_or(0)
        };
        let mut total: u64 = ["gridwatch.db", "gridwatch.db-wal", "gridwatch.db-shm"]
            .iter()
            .map(|name| allocated(&self.data_dir.join(name)))
            .sum();
        if let Ok(entries) = std::fs::read_dir(&self.spool_dir) {
            total += entries
                .flatten()
                .map(|entry| allocated(&entry.path()))
                .sum::<u64>();
        }
        total
    }

    /// Deletes a job's spool file (its tasks are all gone).
    pub fn spool_remove(&mut self, job: &str) {
        self.spools.remove(job);
        let _ = std::fs::remove_file(self.spool_path(job));
    }
}

/// The job id a spool file is named after (its hex encoding), if the name is one.
fn unhex(name: &str) -> Option<String> {
    if name.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Columns added since the first release, with their declarations. Databases made earlier lack
/// them: their tasks are all searches, their jobs have no stored summary, their tasks no match
/// bound, and their results are all inline and carry no record; their jobs' priorities are in their
/// specs, if at all; their tasks take one slot each; every object they store is a genome, kept
/// byte for byte, under its hash.
const ADDED_COLUMNS: [(&str, &str, &str); 13] = [
    ("tasks", "kind", "TEXT NOT NULL DEFAULT 'search'"),
    ("tasks", "max_matches", "INTEGER"),
    ("jobs", "summary", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "priority", "TEXT NOT NULL DEFAULT 'medium'"),
    ("results", "parts", "INTEGER NOT NULL DEFAULT 0"),
    ("results", "token", "TEXT NOT NULL DEFAULT ''"),
    ("results", "run", "TEXT NOT NULL DEFAULT ''"),
    ("genomes", "kind", "TEXT NOT NULL DEFAULT 'genome'"),
    ("tasks", "slots", "INTEGER NOT NULL DEFAULT 1"),
    ("tasks", "avoid_worker", "TEXT"),
    ("tasks", "avoid_until", "REAL"),
    ("genomes", "format", "TEXT NOT NULL DEFAULT 'raw'"),
    ("genomes", "storage", "TEXT"),
];

/// Adds the columns a database lacks; returns them as (table, column).
fn add_missing_columns(conn: &Connection) -> BackendResult<Vec<(&'static str, &'static str)>> {
    let mut added = Vec::new();
    for (table, column, declaration) in ADDED_COLUMNS {
        let present = conn
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")
            .and_then(|mut query| query.exists([table, column]))
            .map_err(sql_error)?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))
            .map_err(sql_error)?;
            added.push((table, column));
        }
    }
    Ok(added)
}

/// A database made before `jobs.priority` keeps a job's priority (if any) in its spec's
/// `job_meta`: copy it to the column once, when the column is added.
fn copy_priorities_from_specs(conn: &Connection) -> BackendResult<()> {
    conn.execute_batch(
        "UPDATE jobs SET priority = (
             SELECT json_extract(spec, '$.job_meta.priority') FROM job_specs
             WHERE job_specs.id = jobs.id)
         WHERE (SELECT json_valid(spec)
                   AND json_extract(spec, '$.job_meta.priority') IN ('high', 'medium', 'low')
                FROM job_specs WHERE job_specs.id = jobs.id);",
    )
    .map_err(sql_error)
}

/// Databases made before `job_specs` keep specs in `jobs.spec`: move them (once; afterwards
/// `jobs.spec` is always empty and this finds nothing to move).
fn move_specs_out_of_jobs(conn: &Connection) -> BackendResult<()> {
    conn.execute_batch(
        "BEGIN;
         INSERT OR IGNORE INTO job_specs (id, spec) SELECT id, spec FROM jobs WHERE spec != '';
         UPDATE jobs SET spec = '' WHERE spec != '';
         COMMIT;",
    )
    .map_err(sql_error)
}

/// Maps a SQLite error.
pub(super) fn sql_error(err: rusqlite::Error) -> BackendError {
    BackendError::Other(format!("sqlite: {err}"))
}

fn io_error(path: &Path, err: std::io::Error) -> BackendError {
    BackendError::Other(format!("{}: {err}", path.display()))
}

/// A task's bytes in a spool file.
#[derive(Debug)]
pub(super) struct SpoolRange {
    /// The job's spool file.
    pub path: PathBuf,
    /// Where the bytes start.
    pub offset: u64,
    /// How many.
    pub len: u64,
}

impl SpoolRange {
    /// Reads the bytes (a blocking call: run it off the async threads).
    pub fn read(&self) -> BackendResult<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        if self.len == 0 {
            return Ok(bytes::Bytes::new());
        }
        let file = File::open(&self.path)
            .map_err(|err| BackendError::Corrupt(format!("{}: {err}", self.path.display())))?;
        let mut buffer = vec![0u8; self.len as usize];
        file.read_exact_at(&mut buffer, self.offset)
            .map_err(|err| BackendError::Corrupt(format!("{}: {err}", self.path.display())))?;
        Ok(bytes::Bytes::from(buffer))
    }
}
