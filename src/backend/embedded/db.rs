//! The SQLite connection and spool files live on one dedicated thread; async callers send it
//! closures and await the answer. One thread serialises every write (SQLite allows one writer
//! anyway) and keeps blocking file and database calls off the async runtime.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
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
    /// Where chunk input bytes are spooled, one file per job.
    spool_dir: PathBuf,
    /// Open spool files and their current length, by job id.
    spools: HashMap<String, (File, u64)>,
    /// Current time in Unix seconds (injectable for tests).
    pub clock: Clock,
}

type Call = Box<dyn FnOnce(&mut DbState) + Send>;

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
        add_task_kind_column(&conn)?;
        let mut state = DbState {
            conn,
            spool_dir,
            spools: HashMap::new(),
            clock,
        };
        let (sender, receiver) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("gridwatch-db".into())
            .spawn(move || {
                while let Ok(call) = receiver.recv() {
                    call(&mut state);
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

    /// Deletes a job's spool file (its tasks are all gone).
    pub fn spool_remove(&mut self, job: &str) {
        self.spools.remove(job);
        let _ = std::fs::remove_file(self.spool_path(job));
    }
}

/// Databases made before tasks carried a kind lack the column; their tasks are all searches.
fn add_task_kind_column(conn: &Connection) -> BackendResult<()> {
    let has_kind = conn
        .prepare("SELECT 1 FROM pragma_table_info('tasks') WHERE name = 'kind'")
        .and_then(|mut query| query.exists([]))
        .map_err(sql_error)?;
    if !has_kind {
        conn.execute_batch("ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'search'")
            .map_err(sql_error)?;
    }
    Ok(())
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
