//! Alerts and the JSON-lines alert log. An alert is born `pending` when its rule's condition
//! first holds, becomes `firing` once it has held for the rule's `for:` duration, and ends
//! `resolved` when the condition clears; only the firing and resolved transitions are emitted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Needs attention soon (a resource running hot); the worker stops leasing meanwhile.
    Warning,
    /// The worker is dead or silent; its tasks are reclaimed.
    Critical,
}

impl Severity {
    /// Upper-case name as in the seed's collector log (`CRITICAL`, `WARNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's duration; nothing is sent.
    Pending,
    /// The condition has held long enough; sent once.
    Firing,
    /// The condition cleared after firing; sent once.
    Resolved,
}

/// One alert event, as written to the alert log and the store's alert history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Identifies one firing of one rule for one worker; its resolved event carries the same id.
    pub id: String,
    /// The rule's name (`worker_dead`, `no_report`, `cpu_high`, `memory_high`).
    pub rule: String,
    /// How urgent.
    pub severity: Severity,
    /// The worker concerned.
    pub worker_id: String,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// A sentence for humans.
    pub message: String,
    /// The observed value that tripped the rule (percent, seconds), when it has one.
    #[serde(default)]
    pub value: Option<f64>,
    /// Unix time (seconds) the condition started to hold.
    pub active_since: f64,
    /// Unix time (seconds) of this event.
    pub timestamp: f64,
}

impl Alert {
    /// Whether this alert reports the worker dead (or presumed dead), so its tasks must be
    /// reclaimed.
    pub fn means_worker_down(&self) -> bool {
        self.severity == Severity::Critical && self.state == AlertState::Firing
    }
}

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
