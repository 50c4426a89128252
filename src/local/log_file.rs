//! A child's log file under `up`: appended to (a restart or a new `up` keeps what was there) and
//! rotated by size, `master.log` → `master.log.1` → … → `master.log.KEEP`, the oldest dropped.
//! The supervisor copies the child's stderr into it line by line, so a rotation never cuts a
//! line and never leaves a child writing to a renamed file.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

pub use gridwatch::telemetry::rotating_log::{RotatingLog, DEFAULT_KEEP, DEFAULT_MAX_BYTES};

/// A log shared by the copiers of one child's successive runs.
pub type SharedLog = Arc<Mutex<RotatingLog>>;

/// Copies `stream` into `log` line by line until it closes.
pub async fn copy_lines(stream: impl AsyncRead + Unpin, log: SharedLog) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(err) = log.write_line(&line) {
                    eprintln!("cannot write {}: {err}", log.path().display());
                    return;
                }
            }
        }
    }
}
