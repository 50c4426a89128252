//! The drop directory: batch files (`.csv`, `.txt`, `.json`) put into it are loaded as jobs.
//!
//! A file is read only once its size and modification time are the same on two consecutive
//! polls, so a file still being copied in is not read half-way (a writer that renames a finished
//! file into place is never seen half-written either). A loaded file moves to
//! `processed/YYYYmmdd_HHMMSS_NAME` (UTC); a refused one to `failed/NAME`, beside
//! `failed/NAME.error` holding the reason. Jobs are created before the file moves and their ids
//! are the tasks' ids, so a master stopped between the two loads the file again on restart,
//! creates nothing twice, and then moves it: no file is loaded twice or lost. A file that cannot
//! be loaded for a passing reason (the backend is down) stays where it is and is tried again.
//!
//! Nothing in the directory is trusted (see [`handles`]): symlinks, special files, hard links to
//! files elsewhere and files over `--max-batch-file` are refused unread, and a name the master
//! cannot use (not UTF-8) is refused once. The directory is the operator's own input, so its
//! files do not count against the per-client rate limits.

mod handles;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::time::{Duration, SystemTime};

pub use handles::{Destination, DropDir, DropDirError, Seen};

use super::jobs::{self, JobError};
use super::MasterState;
use crate::jobs::batch::{self, Batch};

/// Entries seen in the directory and whether they have settled.
#[derive(Debug, Default)]
pub struct Settling {
    seen: HashMap<OsString, Seen>,
    /// Entries that could not be moved out, as they looked then: not retried until they change,
    /// so one stuck file is not loaded again every poll.
    stuck: HashMap<OsString, Seen>,
}

impl Settling {
    /// Records this poll's look at the candidate files; returns those unchanged since the last
    /// poll (ready to read), in name order.
    pub fn poll(&mut self, files: Vec<(OsString, Seen)>) -> Vec<OsString> {
        let mut ready = Vec::new();
        let mut now = HashMap::with_capacity(files.len());
        for (name, seen) in files {
            if self.stuck.get(&name) == Some(&seen) {
                now.insert(name, seen);
                continue;
            }
            self.stuck.remove(&name);
            match self.seen.get(&name) {
                Some(before) if *before == seen => ready.push(name.clone()),
                Some(_) => {}
                None => {
                    tracing::info!(component = "master", file = %name.to_string_lossy(), "batch file seen; loading it once it stops changing");
                }
            }
            now.insert(name, seen);
        }
        self.stuck.retain(|name, _| now.contains_key(name));
        self.seen = now;
        ready.sort();
        ready
    }

    /// Forgets a file (moved away), so a new file of the same name settles afresh.
    pub fn forget(&mut self, name: &OsStr) {
        self.seen.remove(name);
    }

    /// Leaves a file that could not be moved alone until it changes.
    pub fn give_up(&mut self, name: &OsStr) {
        if let Some(seen) = self.seen.get(name) {
            self.stuck.insert(name.to_os_string(), *seen);
        }
    }
}

/// Watches `dir` every `interval` until `shutdown` completes.
pub async fn run(
    dir: DropDir,
    state: std::sync::Arc<MasterState>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tracing::info!(component = "master", dir = %dir.path.display(), "watching the drop directory");
    let mut settling = Settling::default();
    tokio::pin!(shutdown);
    loop {
        let ready = settling.poll(dir.candidates());
        for name in ready {
            match load_file(&dir, &name, &state).await {
                Loaded::Moved => settling.forget(&name),
                Loaded::Stuck => settling.give_up(&name),
                Loaded::Later => {}
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// What became of a settled file.
enum Loaded {
    /// Moved to `processed/` or `failed/`.
    Moved,
    /// Refused or loaded, but it could not be moved out.
    Stuck,
    /// Left for a later poll (a passing failure).
    Later,
}

/// Loads one settled file and moves it out.
async fn load_file(dir: &DropDir, name: &OsStr, state: &MasterState) -> Loaded {
    let shown = name.to_string_lossy();
    let outcome = match name.to_str() {
        None => Err(Some(format!(
            "the file name is not UTF-8 (shown as {shown:?}); rename it to UTF-8 and drop it again"
        ))),
        Some(text_name) => match dir.read(name, state.config.max_batch_file) {
            Ok(bytes) => match batch::parse_limited(&bytes, state.config.max_batch_tasks) {
                Ok(parsed) => {
                    drop(bytes);
                    load_batch(state, text_name, parsed, dir.commands).await
                }
                Err(err) => Err(Some(err.to_string())),
            },
            Err(reason) => Err(Some(reason)),
        },
    };
    let stamp = timestamp(SystemTime::now());
    let moved = match &outcome {
        Ok(jobs) => {
            let moved = dir.move_out(name, Destination::Processed, None, &stamp);
            if let Ok(to) = &moved {
                tracing::info!(component = "master", file = %shown, jobs, to = %to.to_string_lossy(), "batch file loaded");
            }
            moved
        }
        Err(Some(reason)) => {
            tracing::warn!(component = "master", file = %shown, %reason, "batch file refused");
            dir.move_out(name, Destination::Failed, Some(reason), &stamp)
        }
        Err(None) => return Loaded::Later,
    };
    match moved {
        Ok(_) => Loaded::Moved,
        Err(err) => {
            tracing::error!(component = "master", file = %shown, error = %err, "cannot move the batch file out of the drop directory; it is left alone until it changes");
            Loaded::Stuck
        }
    }
}

/// Creates the batch's jobs; `Err(Some(reason))` for a file to refuse, `Err(None)` for a
/// passing failure (try again later).
async fn load_batch(
    state: &MasterState,
    name: &str,
    parsed: Batch,
    commands: bool,
) -> Result<usize, Option<String>> {
    // Whoever can write a file here would run programs on the workers: only when asked.
    let command = crate::jobs::command::COMMAND_KIND;
    if let Some(task) = parsed.tasks.iter().find(|task| task.kind == command) {
        if !commands {
            return Err(Some(format!(
                "{}: command tasks are not taken from the drop directory unless the master \
                 runs with --drop-dir-commands; load this file with `gridwatch load`",
                task.location
            )));
        }
    }
    let created = match jobs::jobs_without_upload(parsed, "load this file with `gridwatch load`") {
        Ok(batch) => jobs::create_batch(state, name, batch, None).await,
        Err(err) => Err(err),
    };
    match created {
        Ok(created) => Ok(created.len()),
        Err(JobError::Backend(err)) => {
            tracing::warn!(component = "master", file = %name, error = %err, "batch file not loaded yet; will retry");
            Err(None)
        }
        Err(refused) => Err(Some(refused.to_string())),
    }
}

/// `YYYYmmdd_HHMMSS` in UTC.
pub fn timestamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::time::civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}_{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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
        let file = OsString::from("a.json");
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
