//! An append-only log file rotated by size: `NAME` → `NAME.1` → … → `NAME.KEEP`, the oldest
//! dropped, so a log never grows past (KEEP + 1) × its size limit. Whole lines are written, so a
//! rotation never cuts one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Size at which a log is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept besides the live one.
pub const DEFAULT_KEEP: u32 = 3;

/// An append-only log file rotated at `max_bytes`.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Opens `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let file = append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file,
            size,
        })
    }

    /// Where the live file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (with its newline), rotating first if it would pass the limit.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
            self.file = append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `master.log` → `master.log.N`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_appended_and_rotated_by_size_keeping_a_few() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.log");
        std::fs::write(&path, "from the last run\n").expect("seed");
        let mut log = RotatingLog::open(&path, 40, 2).expect("open");
        log.write_line(b"line one\n").expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text, "from the last run\nline one\n",
            "appended, not truncated"
        );
        for n in 0..10 {
            log.write_line(format!("line number {n:02}\n").as_bytes())
                .expect("write");
        }
        let live = std::fs::read_to_string(&path).expect("live");
        assert!(live.len() <= 40, "{live:?}");
        assert!(live.ends_with("line number 09\n"), "{live:?}");
        let first = std::fs::read_to_string(numbered(&path, 1)).expect(".1");
        assert!(first.contains("line number 0"), "{first:?}");
        assert!(numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists(), "only 2 kept");
        for file in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            let text = std::fs::read_to_string(&file).expect("read");
            assert!(text
                .lines()
                .all(|l| l.starts_with("line") || l.starts_with("from")));
        }
    }
}
