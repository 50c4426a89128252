//! The JSON-lines alert log: every alert event the collector emits, one object per line. An
//! alert is born `pending` when its rule's condition first holds, becomes `firing` once it has
//! held for the rule's `for:` duration, and ends `resolved` when the condition clears; only the
//! firing and resolved transitions are emitted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::protocol::Alert;
#[cfg(test)]
use crate::protocol::{AlertState, Severity};

/// Appends alert events to a file, one JSON object per line, flushed per event so that a
/// `tail -f` (or a test) sees each one at once.
#[derive(Debug)]
pub struct AlertLog {
    path: PathBuf,
    file: File,
}

impl AlertLog {
    /// Opens (creating if needed) the log at `path` for appending.
    pub fn open(path: &Path) -> io::Result<AlertLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AlertLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event.
    pub fn append(&mut self, alert: &Alert) -> io::Result<()> {
        let mut line = serde_json::to_vec(alert).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: AlertState) -> Alert {
        Alert {
            id: "worker_dead:w1:1".into(),
            rule: "worker_dead".into(),
            severity: Severity::Critical,
            worker_id: "w1".into(),
            state,
            message: "worker w1 is DEAD".into(),
            value: None,
            active_since: 10.0,
            timestamp: 11.5,
        }
    }

    #[test]
    fn alert_log_appends_one_json_object_per_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs/alerts.log");
        let mut log = AlertLog::open(&path).expect("open");
        log.append(&sample(AlertState::Firing)).expect("append");
        log.append(&sample(AlertState::Resolved)).expect("append");
        drop(log);
        let mut log = AlertLog::open(&path).expect("reopen appends");
        log.append(&sample(AlertState::Firing)).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let states: Vec<String> = text
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("json line");
                value["state"].as_str().expect("state").to_string()
            })
            .collect();
        assert_eq!(states, ["firing", "resolved", "firing"]);
        assert!(text.contains(r#""severity":"critical""#));
    }
}
