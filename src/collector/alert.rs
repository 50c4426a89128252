//! The JSON-lines alert log: every alert event the collector emits, one object per line. An
//! alert is born `pending` when its rule's condition first holds, becomes `firing` once it has
//! held for the rule's `for:` duration, and ends `resolved` when the condition clears; only the
//! firing and resolved transitions are emitted. The log is rotated by size like the other logs
//! (`alerts.log` → `alerts.log.1` → …), so no stream of alerts can fill the disk.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

#[cfg(test)]
use crate::protocol::Severity;
use crate::protocol::{Alert, AlertState};
use crate::telemetry::rotating_log::{numbered, RotatingLog};

/// Appends alert events to a file, one JSON object per line, each written at once so that a
/// `tail -f` (or a test) sees it.
#[derive(Debug)]
pub struct AlertLog {
    file: RotatingLog,
}

impl AlertLog {
    /// Opens (creating if needed) the log at `path` for appending, rotated at `max_bytes` with
    /// `keep` older files kept.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<AlertLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        Ok(AlertLog {
            file: RotatingLog::open(path, max_bytes, keep)?,
        })
    }

    /// The alerts the log at `path` (and its `keep` rotated files) shows firing and never
    /// resolved, oldest first (none if there is no log yet). Lines another version wrote, or a
    /// line cut short by a crash, are skipped.
    pub fn still_firing(path: &Path, keep: u32) -> io::Result<Vec<Alert>> {
        let mut firing: Vec<Alert> = Vec::new();
        let oldest_first = (1..=keep)
            .rev()
            .map(|n| numbered(path, n))
            .chain([path.to_path_buf()]);
        for file in oldest_first {
            let file = match File::open(&file) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            for line in BufReader::new(file).lines() {
                let Ok(alert) = serde_json::from_str::<Alert>(&line?) else {
                    continue;
                };
                firing.retain(|open| open.id != alert.id);
                if alert.state == AlertState::Firing {
                    firing.push(alert);
                }
            }
        }
        Ok(firing)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Appends one event.
    pub fn append(&mut self, alert: &Alert) -> io::Result<()> {
        let mut line = serde_json::to_vec(alert).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_line(&line)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

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
        let mut log = AlertLog::open(&path, 1 << 20, 3).expect("open");
        log.append(&sample(AlertState::Firing)).expect("append");
        log.append(&sample(AlertState::Resolved)).expect("append");
        drop(log);
        let mut log = AlertLog::open(&path, 1 << 20, 3).expect("reopen appends");
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
    fn the_log_is_rotated_and_still_firing_reads_the_rotated_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alerts.log");
        let line_len = serde_json::to_vec(&sample(AlertState::Firing))
            .expect("json")
            .len()
            + 1;
        // Room for two lines per file, two older files kept.
        let mut log = AlertLog::open(&path, 2 * line_len as u64, 2).expect("open");
        let first = Alert {
            id: "first".into(),
            ..sample(AlertState::Firing)
        };
        log.append(&first).expect("append");
        for _ in 0..20 {
            log.append(&sample(AlertState::Firing)).expect("append");
            log.append(&sample(AlertState::Resolved)).expect("append");
        }
        let total: u64 = [path.clone(), numbered(&path, 1), numbered(&path, 2)]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        assert!(total <= 6 * line_len as u64, "{total} bytes kept");
        assert!(!numbered(&path, 3).exists(), "only two older files");
        let open = Alert {
            id: "open".into(),
            ..sample(AlertState::Firing)
        };
        log.append(&open).expect("append");
        log.append(&sample(AlertState::Resolved)).expect("append");
        // `open` now sits in a rotated file; the first alert was rotated away.
        let firing = AlertLog::still_firing(&path, 2).expect("read");
        assert_eq!(firing, [open]);
    }

    #[test]
    fn still_firing_lists_alerts_without_a_resolution() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alerts.log");
        assert!(AlertLog::still_firing(&path, 3).expect("no log").is_empty());
        let mut log = AlertLog::open(&path, 1 << 20, 3).expect("open");
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
        let firing = AlertLog::still_firing(&path, 3).expect("read");
        assert_eq!(firing, [open]);
    }
}
