//! The drop directory's file operations, none of which trusts a name in it: the directory and
//! its `processed/` and `failed/` are opened once, every entry is opened relative to them
//! without following symbolic links and checked and read through that one handle, files move
//! between directory handles without replacing anything, and `.error` files are created
//! exclusively, so a planted symlink or a swapped subdirectory never redirects a read or write.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use thiserror::Error;

/// The longest file name most file systems take, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// Candidate names tried before a move gives up (each taken name costs one try).
const MAX_NAME_TRIES: u32 = 1000;

/// Why the drop directory cannot be used; the master refuses to start.
#[derive(Debug, Error)]
pub enum DropDirError {
    /// The directory (or a subdirectory) cannot be created or opened.
    #[error("drop directory {path}: {source}; create it or pick another --drop-dir")]
    Open {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// `processed/` or `failed/` is a symbolic link.
    #[error("{path} is a symbolic link: files would be moved wherever it points; replace it with a directory owned by the master's user (uid {uid})")]
    Symlink {
        /// The link.
        path: PathBuf,
        /// The master's user.
        uid: u32,
    },
    /// `processed/` or `failed/` is not a directory.
    #[error("{path} is not a directory: remove it and the master creates the directory")]
    NotDirectory {
        /// The entry.
        path: PathBuf,
    },
    /// `processed/` or `failed/` belongs to another user.
    #[error("{path} is owned by uid {owner}, not by the master's user (uid {uid}): another user could redirect the files moved there; chown it to uid {uid} or remove it")]
    Owner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The master's user.
        uid: u32,
    },
}

/// What an entry looked like at one poll: its size and modification time (of the entry itself,
/// never of what a symlink points to).
pub type Seen = (u64, Option<SystemTime>);

/// The drop directory and its two subdirectories, held open.
#[derive(Debug)]
pub struct DropDir {
    /// The directory as configured, for messages.
    pub path: PathBuf,
    /// Whether command tasks are taken from it (the master's --drop-dir-commands).
    pub commands: bool,
    root: OwnedFd,
    processed: OwnedFd,
    failed: OwnedFd,
}

/// Where a file moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `processed/STAMP_NAME`.
    Processed,
    /// `failed/NAME` beside `failed/NAME.error`.
    Failed,
}

impl DropDir {
    /// The directory, taking command tasks from its files when `commands`.
    pub fn taking_commands(self, commands: bool) -> Self {
        Self { commands, ..self }
    }

    /// Creates (if needed) and opens the directory, `processed/` and `failed/`; refuses
    /// subdirectories that are symlinks or not owned by this process's user.
    pub fn open(path: &Path) -> Result<Self, DropDirError> {
        let open_error = |path: &Path, source: std::io::Error| DropDirError::Open {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(|e| open_error(path, e))?;
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| open_error(path, e.into()))?;
        let processed = subdirectory(&root, path, "processed")?;
        let failed = subdirectory(&root, path, "failed")?;
        Ok(Self {
            path: path.to_path_buf(),
            commands: false,
            root,
            processed,
            failed,
        })
    }

    /// Entries directly in the directory whose names end in `.csv`, `.txt` or `.json` (any
    /// case; hidden names skipped), with how they look now. Names are raw bytes: a name that is
    /// not UTF-8 is listed too, so it can be refused once.
    pub fn candidates(&self) -> Vec<(OsString, Seen)> {
        let Ok(dir) = rustix::fs::Dir::read_from(&self.root) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in dir {
            let Ok(entry) = entry else { break };
            let name = entry.file_name().to_bytes();
            if !is_batch_name(name) {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&self.root, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let modified = u64::try_from(stat.st_mtime).ok().map(|secs| {
                SystemTime::UNIX_EPOCH + Duration::new(secs, stat.st_mtime_nsec as u32)
            });
            let size = u64::try_from(stat.st_size).unwrap_or(0);
            found.push((OsString::from_vec(name.to_vec()), (size, modified)));
        }
        found
    }

    /// Opens the regular file `name` directly in the directory for reading, refusing what
    /// [`DropDir::read`] refuses (a symlink, anything but a regular file, a file with other hard
    /// links); `max_bytes` is checked against its size. A command task's input is read so.
    pub fn open_input(&self, name: &OsStr, max_bytes: u64) -> Result<std::fs::File, String> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.root, name, flags, Mode::empty()).map_err(|e| {
            if e == Errno::LOOP {
                "a symbolic link; inputs must be regular files in the drop directory".to_string()
            } else {
                format!("cannot open it: {}", std::io::Error::from(e))
            }
        })?;
        let file = std::fs::File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read its size: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            return Err("it has other hard links, so it may belong elsewhere; copy it into the drop directory".into());
        }
        if meta.len() > max_bytes {
            return Err(format!(
                "{} bytes is over the master's input limit of {max_bytes} bytes (--max-input-size)",
                meta.len()
            ));
        }
        Ok(file)
    }

    /// Reads the regular file `name` whole, refusing (with a reason for `failed/NAME.error`) a
    /// symlink, anything but a regular file, a file with other hard links (it may be a file from
    /// elsewhere), and a file over `max_bytes`, which is never read.
    pub fn read(&self, name: &OsStr, max_bytes: u64) -> Result<Vec<u8>, String> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.root, name, flags, Mode::empty()).map_err(|e| {
            if e == Errno::LOOP {
                "the entry is a symbolic link; only regular files put in the drop directory are loaded (copy the file in instead)".to_string()
            } else {
                format!("cannot open the file: {}", std::io::Error::from(e))
            }
        })?;
        let file = std::fs::File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the file's size: {e}"))?;
        if !meta.is_file() {
            return Err(
                "not a regular file; only regular files put in the drop directory are loaded"
                    .into(),
            );
        }
        if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            return Err("the file has other hard links, so it may belong elsewhere; copy it into the drop directory instead of linking it".into());
        }
        let too_big = |size: u64| {
            format!(
                "{size} bytes is over the batch file limit of {max_bytes} bytes: split the file, or raise the master's --max-batch-file"
            )
        };
        if meta.len() > max_bytes {
            return Err(too_big(meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read the file: {e}"))?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_big(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Moves `name` to `processed/` (a timestamped name) or `failed/` (with `reason` written to
    /// a new `.error` file beside it), never replacing an entry there; names that would grow past
    /// 255 bytes are shortened, keeping their extension. Returns the name it got.
    pub fn move_out(
        &self,
        name: &OsStr,
        to: Destination,
        reason: Option<&str>,
        stamp: &str,
    ) -> std::io::Result<OsString> {
        let (dir, stamped, suffix) = match to {
            Destination::Processed => (&self.processed, true, ""),
            Destination::Failed => (&self.failed, false, ".error"),
        };
        for attempt in 1..=MAX_NAME_TRIES {
            let target = candidate_name(name, stamp, stamped, attempt, suffix.len());
            let error_name = (to == Destination::Failed).then(|| {
                let mut error = target.clone();
                error.push(suffix);
                error
            });
            if let Some(error_name) = &error_name {
                match create_exclusive(dir, error_name, reason.unwrap_or_default()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            match rename_no_replace(&self.root, name, dir, &target) {
                Ok(()) => return Ok(target),
                Err(e) => {
                    if let Some(error_name) = &error_name {
                        let _ = rustix::fs::unlinkat(dir, error_name, AtFlags::empty());
                    }
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{MAX_NAME_TRIES} names for it are taken; clear out the old files"),
        ))
    }
}

/// Creates `processed/` or `failed/` if missing, then opens it without following a symlink and
/// checks the directory actually opened.
fn subdirectory(root: &OwnedFd, base: &Path, name: &str) -> Result<OwnedFd, DropDirError> {
    let path = base.join(name);
    let uid = rustix::process::geteuid().as_raw();
    let open_error = |source: std::io::Error| DropDirError::Open {
        path: path.clone(),
        source,
    };
    match rustix::fs::mkdirat(root, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(open_error(e.into())),
    }
    let stat = rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| open_error(e.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {}
        FileType::Symlink => return Err(DropDirError::Symlink { path, uid }),
        _ => return Err(DropDirError::NotDirectory { path }),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(root, name, flags, Mode::empty()).map_err(|e| match e {
        Errno::LOOP => DropDirError::Symlink {
            path: path.clone(),
            uid,
        },
        other => open_error(other.into()),
    })?;
    let owner = rustix::fs::fstat(&fd)
        .map_err(|e| open_error(e.into()))?
        .st_uid;
    if owner != uid {
        return Err(DropDirError::Owner { path, owner, uid });
    }
    Ok(fd)
}

/// Whether a directory entry is one the master loads: `.csv`, `.txt` or `.json`, not hidden.
fn is_batch_name(name: &[u8]) -> bool {
    if name.first() == Some(&b'.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    [&b".csv"[..], b".txt", b".json"]
        .iter()
        .any(|extension| lower.len() > extension.len() && lower.ends_with(extension))
}

/// The `attempt`-th name for `name`: `NAME` (or `STAMP_NAME` when `stamped`), then
/// `STAMP-2_NAME`, `STAMP-3_NAME`, ...; shortened so it and `reserve` more bytes fit 255.
fn candidate_name(
    name: &OsStr,
    stamp: &str,
    stamped: bool,
    attempt: u32,
    reserve: usize,
) -> OsString {
    let prefix = match (attempt, stamped) {
        (1, false) => String::new(),
        (1, true) => format!("{stamp}_"),
        (n, _) => format!("{stamp}-{n}_"),
    };
    let budget = MAX_NAME_BYTES.saturating_sub(prefix.len() + reserve);
    let mut out = prefix.into_bytes();
    out.extend_from_slice(&shortened(name.as_bytes(), budget));
    OsString::from_vec(out)
}

/// `name` cut to at most `budget` bytes, keeping its extension and, for UTF-8 names, whole
/// characters.
pub fn shortened(name: &[u8], budget: usize) -> Vec<u8> {
    if name.len() <= budget {
        return name.to_vec();
    }
    let extension = name
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(&name[name.len()..], |dot| &name[dot..]);
    let extension = if extension.len() * 2 > budget {
        &name[name.len()..]
    } else {
        extension
    };
    let stem = &name[..name.len() - extension.len()];
    let mut cut = budget - extension.len();
    if std::str::from_utf8(name).is_ok() {
        while cut > 0 && (stem[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        }
    }
    let mut out = stem[..cut].to_vec();
    out.extend_from_slice(extension);
    out
}

/// Writes `text` to a new file `name` in `dir`; an existing entry of that name (a symlink
/// included) is an `AlreadyExists` error and is left untouched.
fn create_exclusive(dir: &OwnedFd, name: &OsStr, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

/// Renames without replacing an existing target (`AlreadyExists` then).
fn rename_no_replace(
    from_dir: &OwnedFd,
    from: &OsStr,
    to_dir: &OwnedFd,
    to: &OsStr,
) -> std::io::Result<()> {
    rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE)
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_keeping_the_extension() {
        let name = format!("{}.csv", "a".repeat(247));
        assert_eq!(name.len(), 251);
        let stamped = candidate_name(OsStr::new(&name), "20240115_103000", true, 1, 0);
        assert_eq!(stamped.len(), 255);
        assert!(stamped.as_bytes().starts_with(b"20240115_103000_aaa"));
        assert!(stamped.as_bytes().ends_with(b"a.csv"));
        let failed = candidate_name(OsStr::new(&name), "20240115_103000", false, 3, 6);
        assert_eq!(failed.len(), 249, "room for .error");
        let short = candidate_name(OsStr::new("x.csv"), "S", false, 1, 6);
        assert_eq!(short, OsStr::new("x.csv"));
    }

    #[test]
    fn utf8_names_are_cut_between_characters() {
        let name = format!("{}.json", "é".repeat(200));
        let cut = shortened(name.as_bytes(), 100);
        assert!(cut.len() <= 100);
        let text = std::str::from_utf8(&cut).expect("still UTF-8");
        assert!(text.ends_with("é.json"), "{text}");
    }

    #[test]
    fn only_visible_batch_extensions_are_candidates() {
        assert!(is_batch_name(b"a.CSV"));
        assert!(is_batch_name(b"a.json"));
        assert!(is_batch_name(b"\xffx.txt"));
        assert!(!is_batch_name(b".hidden.csv"));
        assert!(!is_batch_name(b"notes.md"));
        assert!(!is_batch_name(b".csv"));
    }
}
