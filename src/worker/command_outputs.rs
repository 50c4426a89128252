//! Collects a finished command task's output files: the regular files in its working directory
//! whose relative paths match the job's `--output` patterns. A symbolic link is never followed,
//! neither as a file nor as a directory (a task must not make the worker read, and hand back,
//! a file outside its directory), and the file itself is opened with O_NOFOLLOW so a link
//! swapped in between the look and the open is refused too. The bytes carried are capped.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::jobs::command::{
    encode_base64, glob_matches, glob_may_descend, OutputFile, MAX_OUTPUT_FILES,
    MAX_OUTPUT_FILE_BYTES,
};

/// Deepest directory level searched below the working directory.
const MAX_DEPTH: usize = 32;

/// The output files under `dir` matching `patterns`, by name; each one's bytes while the total
/// stays within [`MAX_OUTPUT_FILE_BYTES`].
pub fn collect(dir: &Path, patterns: &[String]) -> Vec<OutputFile> {
    let mut found = Vec::new();
    if patterns.is_empty() {
        return found;
    }
    walk(dir, "", patterns, 0, &mut found);
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.truncate(MAX_OUTPUT_FILES);
    let mut budget = MAX_OUTPUT_FILE_BYTES;
    for file in &mut found {
        if file.size > budget {
            continue;
        }
        let Some(bytes) = read_no_follow(&dir.join(&file.name), file.size) else {
            continue;
        };
        budget -= bytes.len() as u64;
        file.size = bytes.len() as u64;
        file.base64 = Some(encode_base64(&bytes));
    }
    found
}

fn walk(
    dir: &Path,
    relative: &str,
    patterns: &[String],
    depth: usize,
    found: &mut Vec<OutputFile>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if found.len() > MAX_OUTPUT_FILES {
            return;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = match relative {
            "" => name,
            _ => format!("{relative}/{name}"),
        };
        // The entry's own type: a symbolic link is a link here, never what it points to.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth < MAX_DEPTH && patterns.iter().any(|p| glob_may_descend(p, &path)) {
                walk(&entry.path(), &path, patterns, depth + 1, found);
            }
        } else if kind.is_file() && patterns.iter().any(|p| glob_matches(p, &path)) {
            let size = entry.metadata().map_or(0, |meta| meta.len());
            found.push(OutputFile {
                name: path,
                size,
                base64: None,
            });
        }
    }
}

/// Reads a regular file without following a symbolic link at its last component, at most
/// `size` bytes (it may have grown since it was listed).
fn read_no_follow(path: &Path, size: u64) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(size).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_files_are_carried_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.csv"), b"secret").unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/a.csv"), b"\x00\xffa").unwrap();
        std::fs::write(dir.path().join("b.txt"), b"b").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.csv"),
            dir.path().join("out/s.csv"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        let patterns = [
            "out/*.csv".to_string(),
            "linked/*".to_string(),
            "*.txt".into(),
        ];
        let found = collect(dir.path(), &patterns);
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b.txt", "out/a.csv"]);
        assert_eq!(found[1].bytes().unwrap().unwrap(), b"\x00\xffa");
    }
}
