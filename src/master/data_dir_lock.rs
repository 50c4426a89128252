//! One master per data directory. Two masters on one directory would share one database and
//! take each other's leases, so the master holds an exclusive `flock` on `master.lock` for its
//! whole life; the kernel drops it when the process dies, even by `kill -9`, so a stale file never
//! blocks a restart. The file holds the holder's pid, for the refusal message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

/// The lock file's name inside the data directory.
const LOCK_FILE: &str = "master.lock";

/// Why the data directory could not be taken.
#[derive(Debug, Error)]
pub enum DataDirLockError {
    /// Another live master holds the directory.
    #[error("the data directory {dir} is in use by another master (pid {pid}); stop it, or give this one its own --data-dir")]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// The holder's pid as it wrote it (`unknown` if unreadable).
        pid: String,
    },
    /// The directory or its lock file could not be created or locked.
    #[error("cannot lock the data directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _lock: Flock<File>,
}

/// Takes `dir` for this process, creating it if needed, or names the master that holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, DataDirLockError> {
    let io = |source| DataDirLockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            return Err(DataDirLockError::InUse {
                dir: dir.to_path_buf(),
                pid: recorded_pid(&mut file),
            })
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    lock.set_len(0).map_err(io)?;
    lock.rewind().map_err(io)?;
    writeln!(lock, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _lock: lock })
}

/// The master that holds `dir` now, if any: for `up`, which checks before it starts anything.
pub fn data_dir_holder(dir: &Path) -> Option<String> {
    let file = File::open(dir.join(LOCK_FILE)).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => None,
        Err((mut file, Errno::EWOULDBLOCK)) => Some(recorded_pid(&mut file)),
        Err(_) => None,
    }
}

/// The pid the holder wrote, bounded: the file is ours, but read no more than a pid needs.
fn recorded_pid(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.take(32).read_to_string(&mut text);
    let pid = text.trim();
    if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
        pid.to_string()
    } else {
        "unknown".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_a_dropped_lock_frees_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = lock_data_dir(dir.path()).expect("first lock");
        match lock_data_dir(dir.path()) {
            Err(DataDirLockError::InUse { pid, .. }) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        assert_eq!(
            data_dir_holder(dir.path()),
            Some(std::process::id().to_string())
        );
        drop(first);
        assert_eq!(data_dir_holder(dir.path()), None);
        lock_data_dir(dir.path()).expect("free again");
    }
}
