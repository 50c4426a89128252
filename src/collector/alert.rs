//! The JSON-lines alert log: every alert event the collector emits, one object per line. An
//! alert is born `pending` when its rule's condition first holds, becomes `firing` once it has
//! held for the rule's `for:` duration, and ends `resolved` when the condition clears; only the
//! firing and resolved transitions are emitted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::protocol::Severity;
use crate::protocol::{Alert, AlertState};

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

    /// The alerts the log at `path` shows firing and never resolved, oldest first (none if
    /// there is no log yet). Lines another version wrote, or a line cut short by a crash, are
    /// skipped.
    pub fn still_firing(path: &Path) -> io::Result<Vec<Alert>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut firing: Vec<Alert> = Vec::new();
        for line in BufReader::new(file).lines() {
            let Ok(alert) = serde_json::from_str::<Alert>(&line?) else {
                continue;
            };
            firing.retain(|open| open.id != alert.id);
            if alert.state == AlertState::Firing {
                firing.push(alert);
            }
        }
        Ok(firing)
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

    #[test]
    fn still_firing_lists_alerts_without_a_resolution() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alerts.log");
        assert!(AlertLog::still_firing(&path).expect("no log").is_empty());
        let mut log = AlertLog::open(&path).expect("open");
        log.append(&sample(AlertState::Firing)).expect("append");
        log.append(&sample(AlertState::Resolved)).expect("append");
        let open = Alert {
            id: "worker_dead:w2:2".into(),
            worker_id: "w2".into(),
            ..sample(AlertState::Firing)
        };
        log.append(&open).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"id\":\"cut sh"))
            .expect("a torn last line");
        let firing = AlertLog::still_firing(&path).expect("read");
        assert_eq!(firing, [open]);
    }
}
