//! The drop directory: batch files (`.csv`, `.txt`, `.json`) put into it are loaded as jobs.
//!
//! A file is read only once its size and modification time are the same on two consecutive
//! polls, so a file still being copied in is not read half-way (a writer that renames a finished
//! file into place is never seen half-written either). A loaded file moves to
//! `processed/YYYYmmdd_HHMMSS_NAME` (UTC); a malformed one to `failed/NAME`, beside
//! `failed/NAME.error` holding the reason. Jobs are created before the file moves and their ids
//! are the tasks' ids, so a master stopped between the two loads the file again on restart,
//! creates nothing twice, and then moves it: no file is loaded twice or lost. A file that cannot
//! be loaded for a passing reason (the backend is down) stays where it is and is tried again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cmd::batch::{create_batch, jobs_without_upload};
use super::cmd::HandlerError;
use super::MasterState;
use crate::jobs::batch::{self, Batch};

/// What a file looked like at one poll.
type Seen = (u64, Option<SystemTime>);

/// Files seen in the directory and whether they have settled.
#[derive(Debug, Default)]
pub struct Settling {
    seen: HashMap<PathBuf, Seen>,
}

impl Settling {
    /// Records this poll's look at the candidate files; returns those unchanged since the last
    /// poll (ready to read), in name order.
    pub fn poll(&mut self, files: Vec<(PathBuf, Seen)>) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        let mut now = HashMap::with_capacity(files.len());
        for (path, seen) in files {
            match self.seen.get(&path) {
                Some(before) if *before == seen => ready.push(path.clone()),
                Some(_) => {}
                None => {
                    tracing::info!(component = "master", file = %path.display(), "batch file seen; loading it once it stops changing");
                }
            }
            now.insert(path, seen);
        }
        self.seen = now;
        ready.sort();
        ready
    }

    /// Forgets a file (moved away), so a new file of the same name settles afresh.
    pub fn forget(&mut self, path: &Path) {
        self.seen.remove(path);
    }
}

/// Watches `dir` every `interval` until `shutdown` completes.
pub async fn run(
    dir: PathBuf,
    state: std::sync::Arc<MasterState>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    for sub in [dir.clone(), dir.join("processed"), dir.join("failed")] {
        if let Err(err) = std::fs::create_dir_all(&sub) {
            tracing::error!(component = "master", dir = %sub.display(), error = %err, "cannot create the drop directory; batch files will not be loaded");
            return;
        }
    }
    tracing::info!(component = "master", dir = %dir.display(), "watching the drop directory");
    let mut settling = Settling::default();
    tokio::pin!(shutdown);
    loop {
        let ready = settling.poll(candidates(&dir));
        for path in ready {
            if load_file(&dir, &path, &state).await {
                settling.forget(&path);
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Batch files directly in `dir` (hidden files skipped), with their size and modification time.
fn candidates(dir: &Path) -> Vec<(PathBuf, Seen)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_name()?.to_str()?;
            let extension = path.extension()?.to_str()?.to_ascii_lowercase();
            if name.starts_with('.') || !matches!(extension.as_str(), "csv" | "txt" | "json") {
                return None;
            }
            let meta = entry.metadata().ok().filter(|m| m.is_file())?;
            Some((path, (meta.len(), meta.modified().ok())))
        })
        .collect()
}

/// Loads one settled file and moves it; returns whether it moved.
async fn load_file(dir: &Path, path: &Path, state: &MasterState) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = match std::fs::read(path) {
        Ok(bytes) => match batch::parse(&bytes) {
            Ok(parsed) => load_batch(state, &name, parsed).await,
            Err(err) => Err(Some(err.to_string())),
        },
        Err(err) => Err(Some(format!("cannot read the file: {err}"))),
    };
    let moved = match outcome {
        Ok(jobs) => {
            let target = unused(&dir.join("processed"), &name, true);
            let moved = std::fs::rename(path, &target);
            tracing::info!(component = "master", file = %name, jobs, to = %target.display(), "batch file loaded");
            moved
        }
        Err(Some(reason)) => {
            tracing::warn!(component = "master", file = %name, %reason, "batch file refused");
            move_failed(dir, path, &name, &reason)
        }
        Err(None) => return false,
    };
    if let Err(err) = &moved {
        tracing::error!(component = "master", file = %name, error = %err, "cannot move the batch file out of the drop directory");
    }
    moved.is_ok()
}

/// Creates the batch's jobs; `Err(Some(reason))` for a file to refuse, `Err(None)` for a
/// passing failure (try again later).
async fn load_batch(
    state: &MasterState,
    name: &str,
    parsed: Batch,
) -> Result<usize, Option<String>> {
    let jobs = jobs_without_upload(parsed, "load this file with `gridwatch load`").map_err(Some)?;
    match create_batch(state, name, jobs).await {
        Ok(created) => Ok(created.len()),
        Err(HandlerError::Refused { message, .. } | HandlerError::Fatal { message, .. }) => {
            Err(Some(message))
        }
        Err(err) => {
            let (_, message, _) = err.into_reply();
            tracing::warn!(component = "master", file = %name, error = %message, "batch file not loaded yet; will retry");
            Err(None)
        }
    }
}

/// Moves a refused file to `failed/` and writes the reason beside it. A name already there gets
/// a timestamp prefix rather than overwriting the earlier file.
fn move_failed(dir: &Path, path: &Path, name: &str, reason: &str) -> std::io::Result<()> {
    let target = unused(&dir.join("failed"), name, false);
    let mut error = target.clone().into_os_string();
    error.push(".error");
    std::fs::write(error, format!("{reason}\n"))?;
    std::fs::rename(path, target)
}

/// A path in `dir` for `name` that holds no file yet (renaming onto a file would replace it):
/// `STAMP_NAME` when `stamped`, else `NAME`, then `STAMP-2_NAME`, `STAMP-3_NAME`, ...
fn unused(dir: &Path, name: &str, stamped: bool) -> PathBuf {
    let stamp = timestamp(SystemTime::now());
    let first = if stamped {
        dir.join(format!("{stamp}_{name}"))
    } else {
        dir.join(name)
    };
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| dir.join(format!("{stamp}-{n}_{name}")))
        .find(|path| !path.exists())
        .unwrap_or(first)
}

/// `YYYYmmdd_HHMMSS` in UTC.
pub fn timestamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}_{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_705_314_600);
        assert_eq!(timestamp(at), "20240115_103000");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "19700101_000000");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(timestamp(leap), "20000229_235959");
    }

    #[test]
    fn a_file_is_ready_only_when_unchanged_between_two_polls() {
        let mut settling = Settling::default();
        let file = PathBuf::from("d/a.json");
        let t = Some(SystemTime::UNIX_EPOCH);
        assert!(settling.poll(vec![(file.clone(), (10, t))]).is_empty());
        assert!(
            settling.poll(vec![(file.clone(), (20, t))]).is_empty(),
            "still growing"
        );
        assert_eq!(
            settling.poll(vec![(file.clone(), (20, t))]),
            vec![file.clone()]
        );
        let later = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        assert!(
            settling.poll(vec![(file.clone(), (20, later))]).is_empty(),
            "rewritten in place"
        );
        settling.forget(&file);
        assert!(settling.poll(vec![(file, (20, later))]).is_empty());
    }
}
