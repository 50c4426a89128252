//! A worker's cache of command inputs: each input is fetched once, in bounded pieces, checked
//! against its BLAKE3 hash, and kept read-only under its hash in a directory of this worker's
//! own. Tasks get a hard link (or, across file systems, a read-only copy) in their working
//! directory. The cache keeps at most `--input-cache-size` bytes, evicting the least recently
//! used inputs first, and never one a running task holds; an input larger than the whole cache
//! is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backend::{InputSource, INPUT_PIECE_BYTES};
use crate::jobs::command::{check_inputs, InputFile};

/// Default of `--input-cache-size`: 8 GiB.
pub const DEFAULT_INPUT_CACHE_BYTES: u64 = 8 << 30;

/// One cached input.
struct Entry {
    size: u64,
    /// Tasks holding it now; never evicted while above 0.
    users: u32,
    /// When it was last handed out (a counter), for least-recently-used eviction.
    used: u64,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<String, Entry>,
    clock: u64,
    bytes: u64,
}

/// The cache. Cheap to share between slots.
pub struct InputCache {
    dir: PathBuf,
    limit_bytes: u64,
    source: Arc<dyn InputSource>,
    entries: Mutex<Entries>,
    /// One fetch per hash at a time: a second task wanting the same input waits for the first
    /// fetch instead of fetching it again.
    fetching: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Inputs held for one task: released (made evictable) when dropped.
pub struct HeldInputs {
    cache: Arc<InputCache>,
    hashes: Vec<String>,
}

impl Drop for HeldInputs {
    fn drop(&mut self) {
        let mut entries = self.cache.lock();
        for hash in &self.hashes {
            if let Some(entry) = entries.by_hash.get_mut(hash) {
                entry.users = entry.users.saturating_sub(1);
            }
        }
    }
}

impl std::fmt::Debug for InputCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputCache")
            .field("dir", &self.dir)
            .field("limit_bytes", &self.limit_bytes)
            .finish_non_exhaustive()
    }
}

impl InputCache {
    /// A cache in `base/gridwatch-inputs-WORKER` (made private; files left by an earlier run
    /// are removed, since nothing vouches for them now), reading from `source`.
    pub fn open(
        base: &Path,
        worker: &str,
        limit_bytes: u64,
        source: Arc<dyn InputSource>,
    ) -> std::io::Result<InputCache> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let dir = base.join(format!("gridwatch-inputs-{worker}"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let meta = std::fs::symlink_metadata(&dir)?;
        if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory of this user",
                dir.display()
            )));
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(InputCache {
            dir,
            limit_bytes,
            source,
            entries: Mutex::new(Entries::default()),
            fetching: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }

    /// Bytes the cache holds now.
    pub fn held_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Fetches what is missing of `inputs` and links each into `workdir` under its name,
    /// read-only. The inputs stay in the cache at least until the returned guard drops.
    pub async fn place(
        self: &Arc<Self>,
        inputs: &[InputFile],
        workdir: &Path,
    ) -> Result<HeldInputs, String> {
        // Names and hashes come from the network: checked before they touch a path.
        check_inputs(inputs)?;
        let mut held = HeldInputs {
            cache: self.clone(),
            hashes: Vec::with_capacity(inputs.len()),
        };
        for input in inputs {
            self.hold(input).await?;
            held.hashes.push(input.hash.clone());
            let (from, to) = (self.path(&input.hash), workdir.join(&input.name));
            tokio::task::spawn_blocking(move || link_read_only(&from, &to))
                .await
                .map_err(|e| format!("placing an input: {e}"))?
                .map_err(|e| format!("input {:?}: {e}", input.name))?;
        }
        Ok(held)
    }

    /// Marks `input` as used by one more task, fetching it first if the cache lacks it.
    async fn hold(&self, input: &InputFile) -> Result<(), String> {
        if self.try_hold(input)? {
            return Ok(());
        }
        let gate = {
            let mut fetching = self.fetching.lock().await;
            fetching.entry(input.hash.clone()).or_default().clone()
        };
        let _fetch = gate.lock().await;
        if self.try_hold(input)? {
            return Ok(());
        }
        if input.size > self.limit_bytes {
            return Err(format!(
                "input {:?} has {} bytes, more than this worker's whole input cache \
                 (--input-cache-size {})",
                input.name, input.size, self.limit_bytes
            ));
        }
        self.make_room(input.size);
        self.fetch(input).await?;
        let mut entries = self.lock();
        entries.clock += 1;
        let used = entries.clock;
        entries.bytes += input.size;
        entries.by_hash.insert(
            input.hash.clone(),
            Entry {
                size: input.size,
                users: 1,
                used,
            },
        );
        Ok(())
    }

    /// Takes a cached input for one more task; false when it is not cached.
    fn try_hold(&self, input: &InputFile) -> Result<bool, String> {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        let Some(entry) = entries.by_hash.get_mut(&input.hash) else {
            return Ok(false);
        };
        if entry.size != input.size {
            return Err(format!(
                "input {:?}: the task says {} bytes but {} has {}",
                input.name, input.size, input.hash, entry.size
            ));
        }
        entry.users += 1;
        entry.used = now;
        Ok(true)
    }

    /// Evicts unused inputs, least recently used first, until `incoming` more bytes fit (or
    /// nothing more can go: inputs in use stay, and the cache runs over its size meanwhile).
    fn make_room(&self, incoming: u64) {
        let mut entries = self.lock();
        while entries.bytes + incoming > self.limit_bytes {
            let victim = entries
                .by_hash
                .iter()
                .filter(|(_, entry)| entry.users == 0)
                .min_by_key(|(_, entry)| entry.used)
                .map(|(hash, _)| hash.clone());
            let Some(hash) = victim else {
                tracing::warn!(
                    component = "worker",
                    bytes = entries.bytes + incoming,
                    limit = self.limit_bytes,
                    "running tasks hold more inputs than the input cache's size"
                );
                return;
            };
            if let Some(entry) = entries.by_hash.remove(&hash) {
                entries.bytes -= entry.size;
                let _ = std::fs::remove_file(self.path(&hash));
                tracing::debug!(component = "worker", input = %hash, "input evicted from the cache");
            }
        }
    }

    /// Fetches an input in pieces into a partial file, checks its hash and size, then makes it
    /// the cached copy (read-only).
    async fn fetch(&self, input: &InputFile) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        use tokio::io::AsyncWriteExt;
        let partial = self.dir.join(format!(
            "{}.partial-{}",
            input.hash,
            uuid::Uuid::new_v4().simple()
        ));
        let fetched = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            let mut hasher = blake3::Hasher::new();
            let mut offset = 0u64;
            while offset < input.size {
                let want = (input.size - offset).min(INPUT_PIECE_BYTES);
                let piece = self
                    .source
                    .read_input(&input.hash, offset, want)
                    .await
                    .map_err(|e| format!("fetching input {:?}: {e}", input.name))?;
                if piece.is_empty() || piece.len() as u64 > want {
                    return Err(format!(
                        "fetching input {:?}: {} bytes came for a piece of {want}",
                        input.name,
                        piece.len()
                    ));
                }
                hasher.update(&piece);
                file.write_all(&piece)
                    .await
                    .map_err(|e| format!("{}: {e}", partial.display()))?;
                offset += piece.len() as u64;
            }
            file.flush()
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            let computed = hasher.finalize().to_hex().to_string();
            if computed != input.hash {
                return Err(format!(
                    "input {:?}: the fetched bytes have BLAKE3 {computed}, not {}",
                    input.name, input.hash
                ));
            }
            tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o444))
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            tokio::fs::rename(&partial, self.path(&input.hash))
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))
        }
        .await;
        if fetched.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        } else {
            tracing::info!(component = "worker", input = %input.hash, bytes = input.size, "input fetched into the cache");
        }
        fetched
    }
}

/// Puts `from` at `to`: a hard link, or where that fails (another file system) a copy; either
/// way read-only. `to` must not exist (a fresh working directory).
fn link_read_only(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o444))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Objects in memory, counting the bytes read.
    struct Memory {
        objects: HashMap<String, Vec<u8>>,
        read: AtomicU64,
    }

    #[async_trait]
    impl InputSource for Memory {
        async fn read_input(
            &self,
            hash: &str,
            offset: u64,
            len: u64,
        ) -> crate::backend::BackendResult<Bytes> {
            let bytes = self
                .objects
                .get(hash)
                .ok_or_else(|| crate::backend::BackendError::Other("no such input".into()))?;
            let piece = &bytes[offset as usize..(offset + len) as usize];
            self.read.fetch_add(len, Ordering::Relaxed);
            Ok(Bytes::copy_from_slice(piece))
        }
    }

    fn input(name: &str, bytes: &[u8]) -> InputFile {
        InputFile {
            name: name.into(),
            hash: blake3::hash(bytes).to_hex().to_string(),
            size: bytes.len() as u64,
        }
    }

    #[tokio::test]
    async fn inputs_are_fetched_once_and_the_least_recently_used_unheld_one_is_evicted() {
        let (a, b, c) = (vec![1u8; 600], vec![2u8; 300], vec![3u8; 300]);
        let (ia, ib, ic) = (input("a", &a), input("b", &b), input("c", &c));
        let memory = Arc::new(Memory {
            objects: [
                (ia.hash.clone(), a),
                (ib.hash.clone(), b),
                (ic.hash.clone(), c),
            ]
            .into_iter()
            .collect(),
            read: AtomicU64::new(0),
        });
        let base = tempfile::tempdir().unwrap();
        let cache = Arc::new(InputCache::open(base.path(), "w1", 1000, memory.clone()).unwrap());
        let (d1, d2, d3) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let held_a = cache
            .place(std::slice::from_ref(&ia), d1.path())
            .await
            .unwrap();
        let held_b = cache
            .place(std::slice::from_ref(&ib), d2.path())
            .await
            .unwrap();
        drop(held_b);
        let again = cache
            .place(std::slice::from_ref(&ib), d3.path())
            .await
            .unwrap();
        assert_eq!(memory.read.load(Ordering::Relaxed), 900, "b fetched once");
        drop(again);
        // c needs room: b is unheld and older than nothing else unheld; a is held.
        let d4 = tempfile::tempdir().unwrap();
        let _held_c = cache.place(&[ic], d4.path()).await.unwrap();
        assert_eq!(cache.held_bytes(), 900);
        assert!(cache.path(&ia.hash).exists(), "a is held: never evicted");
        assert!(!cache.path(&ib.hash).exists(), "b was evicted");
        assert_eq!(std::fs::read(d1.path().join("a")).unwrap(), vec![1u8; 600]);
        let mode = std::fs::metadata(d1.path().join("a"))
            .unwrap()
            .permissions();
        assert!(mode.readonly());
        drop(held_a);
    }

    #[tokio::test]
    async fn bad_names_hashes_and_contents_are_refused() {
        let memory = Arc::new(Memory {
            objects: [("ab".repeat(32), vec![9u8; 10])].into_iter().collect(),
            read: AtomicU64::new(0),
        });
        let base = tempfile::tempdir().unwrap();
        let cache = Arc::new(InputCache::open(base.path(), "w1", 1000, memory).unwrap());
        let work = tempfile::tempdir().unwrap();
        let mut bad = input("../x", b"x");
        assert!(cache
            .place(std::slice::from_ref(&bad), work.path())
            .await
            .is_err());
        bad.name = "x".into();
        bad.hash = "../../etc/passwd".into();
        assert!(cache
            .place(std::slice::from_ref(&bad), work.path())
            .await
            .is_err());
        // Stored bytes that do not match their hash are not used.
        let lying = InputFile {
            name: "x".into(),
            hash: "ab".repeat(32),
            size: 10,
        };
        let err = cache.place(&[lying], work.path()).await.err().unwrap();
        assert!(err.contains("BLAKE3"), "{err}");
        assert!(!work.path().join("x").exists());
        assert_eq!(cache.held_bytes(), 0);
    }
}
