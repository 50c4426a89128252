//! The stored genomes' directory as a worker on the master's host reads it. Sending a task's
//! bases from the master costs a decode and a copy through the loopback per base; a worker that
//! can open the store's files reads the packed range itself (a quarter of the bytes) and
//! decodes only its own chunk. The directory holds a random id written when the store first
//! opens it: the worker reports the id it read, and the master hands it tasks without their
//! bases only when that id is its own, so a worker pointed at the wrong directory (another
//! grid's, a stale copy) still receives every base.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::genome_file;
use crate::backend::genome::{is_genome_hash, GenomeFiles};
use crate::backend::{BackendError, BackendResult};

/// The file in the directory that holds its id (32 hex digits).
const ID_FILE: &str = "store-id";

/// The id of `dir`, written (at random) if the directory has none yet.
pub(super) fn ensure_id(dir: &Path) -> BackendResult<u128> {
    if let Ok(id) = read_id(dir) {
        return Ok(id);
    }
    let id = u128::from_str_radix(&uuid::Uuid::new_v4().simple().to_string(), 16)
        .map_err(|err| BackendError::Other(format!("a new store id: {err}")))?;
    let fail = |err: std::io::Error| {
        BackendError::Other(format!(
            "cannot write {}: {err}",
            dir.join(ID_FILE).display()
        ))
    };
    // Written aside and renamed, so a reader never sees half an id.
    let partial = dir.join(format!("{ID_FILE}.new"));
    std::fs::write(&partial, format!("{id:032x}\n")).map_err(fail)?;
    std::fs::rename(&partial, dir.join(ID_FILE)).map_err(fail)?;
    Ok(id)
}

/// The id `dir` holds.
fn read_id(dir: &Path) -> std::io::Result<u128> {
    let mut text = String::new();
    // An id is 33 bytes; a larger file is not one of ours and is not read whole.
    std::fs::File::open(dir.join(ID_FILE))?
        .take(64)
        .read_to_string(&mut text)?;
    let text = text.trim_end();
    if text.len() != 32 {
        return Err(std::io::Error::other(format!("{text:?} is not a store id")));
    }
    u128::from_str_radix(text, 16).map_err(std::io::Error::other)
}

/// A stored genomes' directory, opened by a worker on the master's host.
#[derive(Clone, Debug)]
pub struct GenomeDir {
    dir: PathBuf,
    id: u128,
}

impl GenomeDir {
    /// Opens `dir` (an embedded master's `DATA_DIR/spool/genomes`), reading its id.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let id = read_id(dir).map_err(|err| {
            format!(
                "{} holds no stored genomes' id ({err}); it is DATA_DIR/spool/genomes of an \
                 embedded master that has started",
                dir.display()
            )
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            id,
        })
    }
}

#[async_trait::async_trait]
impl GenomeFiles for GenomeDir {
    fn id(&self) -> u128 {
        self.id
    }

    async fn read(&self, storage: &str, offset: u64, len: u64) -> BackendResult<Bytes> {
        if !is_genome_hash(storage) {
            return Err(BackendError::Other(format!(
                "{storage:?} is not a storage id"
            )));
        }
        let path = super::genomes::stored_path(
            &self.dir,
            storage,
            crate::backend::packed::StoredFormat::Packed,
        );
        tokio::task::spawn_blocking(move || genome_file::read_range(&path, offset, len))
            .await
            .map_err(|err| BackendError::Other(format!("genome read: {err}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_first_id_and_a_worker_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(GenomeDir::open(dir.path()).is_err());
        let id = ensure_id(dir.path()).unwrap();
        assert_eq!(ensure_id(dir.path()).unwrap(), id);
        assert_eq!(GenomeDir::open(dir.path()).unwrap().id(), id);
        let written = std::fs::read_to_string(dir.path().join(ID_FILE)).unwrap();
        assert_eq!(written, format!("{id:032x}\n"));
    }

    #[test]
    fn anything_but_an_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "xyz", &"a".repeat(31), &"a".repeat(200)] {
            std::fs::write(dir.path().join(ID_FILE), text).unwrap();
            assert!(GenomeDir::open(dir.path()).is_err(), "{text:?}");
        }
    }
}
