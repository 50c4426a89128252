//! Genomes on the client side: the content hash a search submit announces (so the master can
//! skip an upload it already holds), with a small cache that spares rehashing an unchanged file,
//! and `gridwatch genomes [rm HASH…]` to list and delete what the master stores.
//!
//! The cache maps (device, inode, size, mtime in nanoseconds) to the file's BLAKE3, as git's
//! index does: any change to the file changes one of these, so a stale hash is never used. A
//! cache that cannot be read or written is ignored. A search submit looks a file up without
//! reading it ([`cached_hash`]); on a miss it uploads without announcing a hash, hashes the bytes
//! as they are sent, and remembers the hash afterwards ([`remember_hash`]), so the file is read
//! once.
//!
//! `gridwatch genomes export HASH` writes a stored genome as a UCSC `.2bit` file, as the master
//! packs it.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use gridwatch::backend::{GenomeRecord, GenomeRemoval};
use gridwatch::protocol::Message;

/// Entries kept in the hash cache; the oldest go first.
const CACHE_ENTRIES: usize = 256;

/// What identifies one version of a file without reading it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileKey {
    device: u64,
    inode: u64,
    size: u64,
    mtime_secs: i64,
    mtime_nanos: i64,
}

impl FileKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            mtime_secs: meta.mtime(),
            mtime_nanos: meta.mtime_nsec(),
        }
    }
}

/// One remembered hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CachedHash {
    key: FileKey,
    hash: String,
    /// Unix time it was last used, to keep the most recent entries.
    used: f64,
}

/// Where the hash cache lives: `$XDG_CACHE_HOME/gridwatch/`, else `~/.cache/gridwatch/`.
fn cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("gridwatch").join("genome-hashes.json"))
}

fn read_cache(path: &Path) -> Vec<CachedHash> {
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text).unwrap_or_else(|err| {
            tracing::debug!(cache = %path.display(), error = %err, "ignoring an unreadable hash cache");
            Vec::new()
        }),
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(cache = %path.display(), error = %err, "ignoring an unreadable hash cache");
            }
            Vec::new()
        }
    }
}

/// Writes the cache through a temporary file, so a concurrent reader never sees half of it.
fn write_cache(path: &Path, entries: &[CachedHash]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_vec(entries).map_err(std::io::Error::other)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// BLAKE3 of a file's bytes, as 64 lowercase hex digits: a cryptographic hash (no one can make
/// another file with a stored genome's hash) that runs several times faster than SHA-256 on
/// vector units, so hashing before a first upload costs a fraction of the upload.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// One version of a file, as it was looked up: what its hash is remembered under.
#[derive(Clone, Debug)]
pub struct FileVersion {
    path: PathBuf,
    key: FileKey,
}

/// The file's BLAKE3 from the cache, when the file is unchanged since it was hashed, with the
/// version looked up. Reads only the file's metadata. A blocking call.
pub fn cached_hash(path: &Path) -> std::io::Result<(Option<String>, FileVersion)> {
    let key = FileKey::of(&std::fs::metadata(path)?);
    let cached = cache_file()
        .as_deref()
        .map(read_cache)
        .unwrap_or_default()
        .into_iter()
        .find(|entry| entry.key == key)
        .map(|entry| entry.hash);
    if cached.is_some() {
        tracing::debug!(file = %path.display(), "genome hash from the cache");
    }
    let version = FileVersion {
        path: path.to_path_buf(),
        key,
    };
    Ok((cached, version))
}

/// Remembers `hash` as the BLAKE3 of the file `version` names, unless the file changed since
/// it was looked up (its bytes may then not be the ones hashed). A blocking call.
pub fn remember_hash(version: &FileVersion, hash: &str) {
    let unchanged = std::fs::metadata(&version.path)
        .map(|meta| FileKey::of(&meta) == version.key)
        .unwrap_or(false);
    let Some(cache) = cache_file().filter(|_| unchanged) else {
        return;
    };
    let mut entries = read_cache(&cache);
    entries.retain(|entry| entry.key != version.key);
    entries.push(CachedHash {
        key: version.key.clone(),
        hash: hash.to_string(),
        used: gridwatch::time::unix_now(),
    });
    entries.sort_by(|a, b| b.used.total_cmp(&a.used));
    entries.truncate(CACHE_ENTRIES);
    if let Err(err) = write_cache(&cache, &entries) {
        tracing::debug!(cache = %cache.display(), error = %err, "cannot write the hash cache");
    }
}

/// The file's BLAKE3, from the cache when the file is unchanged since it was hashed, else
/// computed (and remembered). A blocking call.
pub fn file_hash(path: &Path) -> std::io::Result<String> {
    let (cached, version) = cached_hash(path)?;
    if let Some(hash) = cached {
        return Ok(hash);
    }
    let hash = hash_file(path)?;
    remember_hash(&version, &hash);
    Ok(hash)
}

/// `gridwatch genomes [--json]` and `gridwatch genomes rm HASH…`.
#[derive(Clone, Debug, clap::Args)]
pub struct GenomesArgs {
    /// `rm` to delete genomes instead of listing them.
    #[command(subcommand)]
    pub action: Option<GenomesAction>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// What `gridwatch genomes` does besides listing.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum GenomesAction {
    /// Delete stored genomes (full hash or a unique prefix). A genome that an unfinished job
    /// (uploading, queued or running) uses is kept, and the command fails.
    Rm {
        /// Hashes or unique prefixes, as `gridwatch genomes` shows them.
        #[arg(required = true)]
        hashes: Vec<String>,
        /// Print JSON instead of text: each genome's hash and what became of it.
        #[arg(long)]
        json: bool,
        /// Where the master is.
        #[command(flatten)]
        master: MasterAddr,
    },
    /// Write a stored genome (full hash or a unique prefix) as a UCSC .2bit file, to standard
    /// output or --out: its records' names, bases, N runs and lower-case runs. Other IUPAC
    /// letters (R, Y, ...) have no place in .2bit and come back as T, as with UCSC's faToTwoBit.
    Export {
        /// Hash or unique prefix, as `gridwatch genomes` shows it.
        hash: String,
        /// Write the file here instead of to standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// Where the master is.
        #[command(flatten)]
        master: MasterAddr,
    },
}

impl GenomesAction {
    /// Whether JSON output was asked for.
    pub fn json(&self) -> bool {
        match self {
            GenomesAction::Rm { json, .. } => *json,
            GenomesAction::Export { .. } => false,
        }
    }
}

/// Runs `gridwatch genomes`.
pub async fn genomes(args: GenomesArgs) -> Result<(), ClientError> {
    match args.action {
        Some(GenomesAction::Rm {
            hashes,
            json,
            master,
        }) => remove(&master, hashes, json || args.json).await,
        Some(GenomesAction::Export { hash, out, master }) => {
            export(&master, &hash, out.as_deref()).await
        }
        None => list(&args.master, args.json).await,
    }
}

async fn list(master: &MasterAddr, json: bool) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(master).await?;
    let genomes = match client.request(&Message::ListGenomes).await? {
        Message::Genomes { genomes } => genomes,
        other => return Err(unexpected(&other)),
    };
    if json {
        let text = serde_json::to_string(&genomes)
            .map_err(|e| ClientError::Usage(format!("genome list: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", table(&genomes, gridwatch::time::unix_now()));
    Ok(())
}

/// The listing as a table: the hash's first 12 digits (enough to name it to `rm`).
fn table(genomes: &[GenomeRecord], now: f64) -> String {
    let mut out = format!(
        "{:<12}  {:>12}  {:>13}  {:>7}  {:>9}  {:>4}  FILE\n",
        "HASH", "SIZE", "BASES", "RECORDS", "LAST USED", "JOBS"
    );
    for genome in genomes {
        let records = genome.records.as_array().map_or(0, Vec::len);
        out.push_str(&format!(
            "{:<12}  {:>12}  {:>13}  {:>7}  {:>9}  {:>4}  {}\n",
            genome.hash.get(..12).unwrap_or(&genome.hash),
            genome.size_bytes,
            genome.bases,
            records,
            ago(now - genome.last_used),
            genome.jobs,
            match genome.kind {
                gridwatch::backend::StoredKind::Genome => genome.filename.clone(),
                gridwatch::backend::StoredKind::Input =>
                    format!("[command input] {}", genome.filename),
            }
        ));
    }
    out
}

/// `45s ago`, `12m ago`, `3h ago`, `2d ago`.
fn ago(seconds: f64) -> String {
    let seconds = seconds.max(0.0) as u64;
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3599 => format!("{}m ago", seconds / 60),
        3600..=86399 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

async fn remove(master: &MasterAddr, hashes: Vec<String>, json: bool) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(master).await?;
    let outcomes = match client.request(&Message::RemoveGenomes { hashes }).await? {
        Message::GenomesRemoved { outcomes } => outcomes,
        other => return Err(unexpected(&other)),
    };
    if json {
        let text = serde_json::to_string(&serde_json::json!({ "genomes": outcomes }))
            .map_err(|e| ClientError::Usage(format!("genome removal: {e}")))?;
        println!("{text}");
    }
    let mut kept = Vec::new();
    for outcome in outcomes {
        match outcome.removal {
            GenomeRemoval::Removed if !json => println!("removed {}", outcome.hash),
            GenomeRemoval::NotFound if !json => println!("{} was already gone", outcome.hash),
            GenomeRemoval::Removed | GenomeRemoval::NotFound => {}
            GenomeRemoval::InUse { jobs } => kept.push(format!(
                "genome {} is used by unfinished job{} {}; wait for {} or cancel {}, then remove it",
                outcome.hash,
                if jobs.len() == 1 { "" } else { "s" },
                jobs.join(", "),
                if jobs.len() == 1 { "it" } else { "them" },
                if jobs.len() == 1 { "it" } else { "them" },
            )),
        }
    }
    match kept.is_empty() {
        true => Ok(()),
        false => Err(ClientError::Refused {
            code: gridwatch::protocol::ErrorCode::JobNotReady,
            message: kept.join("\n"),
        }),
    }
}

/// Writes a stored genome as a `.2bit` file, to `out` or standard output. A file left half
/// written by a failure is removed.
async fn export(master: &MasterAddr, hash: &str, out: Option<&Path>) -> Result<(), ClientError> {
    use std::io::Write;
    let mut client = MasterClient::connect(master).await?;
    let request = Message::ExportGenome {
        hash: hash.to_string(),
    };
    let (hash, bytes) = match client.request(&request).await? {
        Message::GenomeExport { hash, bytes } => (hash, bytes),
        other => return Err(unexpected(&other)),
    };
    let shown = out.map_or("standard output".to_string(), |p| p.display().to_string());
    let failed = |e: std::io::Error| {
        ClientError::Usage(format!("writing the export of {hash} to {shown}: {e}"))
    };
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(failed)?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut received = 0u64;
    let copied = async {
        while received < bytes {
            let frame = client.connection().read_data().await?;
            received += frame.len() as u64;
            if received > bytes {
                return Err(ClientError::JobFailed(format!(
                    "the master sent more than the {bytes} bytes it announced for {hash}"
                )));
            }
            sink.write_all(&frame).map_err(failed)?;
        }
        sink.flush().map_err(failed)
    }
    .await;
    if copied.is_err() {
        if let Some(path) = out {
            let _ = std::fs::remove_file(path);
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_a_file_is_its_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        // The BLAKE3 reference implementation's digest of "abc".
        assert_eq!(
            hash_file(&path).unwrap(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        assert_eq!(ago(5.0), "5s ago");
        assert_eq!(ago(125.0), "2m ago");
        assert_eq!(ago(7300.0), "2h ago");
        assert_eq!(ago(3.0 * 86400.0), "3d ago");
    }
}
