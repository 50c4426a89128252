//! The stored genomes' directory as a worker on the master's host reads it. Sending a task's
//! bases from the master costs a decode and a copy through the loopback per base; a worker that
//! can open the store's files reads the packed range itself (a quarter of the bytes) and
//! decodes only its own chunk, from a complete file or, during a first upload, from the part
//! written so far, by the block list beside it. The directory holds a random id written when the store first
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
        let partial = super::genomes::partial_path(&self.dir, storage);
        let listing = super::genomes::listing_path(&self.dir, storage);
        tokio::task::spawn_blocking(move || {
            genome_file::read_kept(&path, &partial, &listing, offset, len)
        })
        .await
        .map_err(|err| BackendError::Other(format!("genome read: {err}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::embedded::{EmbeddedBackend, EmbeddedConfig};
    use crate::backend::{GenomeStore, StoredKind};

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

    #[tokio::test]
    async fn a_damaged_block_list_is_an_error() {
        let data = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(data.path(), EmbeddedConfig::default()).unwrap();
        let dir = data.path().join("spool").join("genomes");
        let files = GenomeDir::open(&dir).unwrap();
        let block = genome_file::BLOCK_BASES as usize;
        let bases = b"ACGTN".repeat(block / 5 + 100);
        let mut writer = backend.begin_genome(StoredKind::Genome).await.unwrap();
        let storage = writer.storage().to_string();
        writer.append(Bytes::from(bases)).await.unwrap();
        let listing = super::super::genomes::listing_path(&dir, &storage);
        let whole = std::fs::read(&listing).unwrap();
        assert_eq!(whole.len(), 8 + 24, "the block size and one block");
        assert!(files.read(&storage, 0, 10).await.is_ok());

        let mut damaged = Vec::new();
        // Blocks of no bases; a block longer than its block size; an exceptions' length
        // larger than any block's; the list cut short.
        damaged.push([&0u64.to_le_bytes()[..], &whole[8..]].concat());
        let mut long = whole.clone();
        long[24..32].copy_from_slice(&(block as u64 + 4).to_le_bytes());
        damaged.push(long);
        let mut huge = whole.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        damaged.push(huge);
        damaged.push(whole[..20].to_vec());
        for list in damaged {
            std::fs::write(&listing, &list).unwrap();
            let read = files.read(&storage, 0, 10).await;
            assert!(read.is_err(), "{list:?}: {read:?}");
        }
        drop(writer);
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
