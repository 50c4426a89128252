//! A command task's output files: the glob patterns that name them (`--output`), checked so a
//! pattern can only name files inside the task's working directory (relative, no `..`), matched
//! one path component at a time; and the base64 that carries the files' exact bytes inside a
//! JSON result. The worker collects them; `results --out` writes them back.

use serde::{Deserialize, Serialize};

/// Most `--output` patterns one job may give.
pub const MAX_OUTPUT_GLOBS: usize = 64;
/// Most bytes of output files one task's result carries (before base64): results travel in
/// frames. A file past it is listed, marked, and not carried.
pub const MAX_OUTPUT_FILE_BYTES: u64 = 4 << 20;
/// Most output files one task's result lists.
pub const MAX_OUTPUT_FILES: usize = 1000;

/// One output file of a task, as its result carries it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Its path relative to the working directory (`/`-separated, no `..`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes in base64; absent when the file did not fit in the result's cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl OutputFile {
    /// The file's bytes, when the result carries them.
    pub fn bytes(&self) -> Result<Option<Vec<u8>>, String> {
        self.base64
            .as_deref()
            .map(|text| decode_base64(text).ok_or_else(|| format!("{}: bad base64", self.name)))
            .transpose()
    }
}

/// Checks a relative path a task names (an output pattern, or an output file's name as a
/// result reports it): not empty, not absolute, no `..` or `.` component, no NUL, no backslash.
pub fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is an absolute path: give a path inside the task's working directory"
        ));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(format!("{path:?} contains a NUL byte or a backslash"));
    }
    for component in path.split('/') {
        match component {
            ".." => {
                return Err(format!(
                    "{path:?} climbs out with `..`: give a path inside the task's working directory"
                ))
            }
            "" | "." => return Err(format!("{path:?} has an empty or `.` component")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether the relative path `name` matches `pattern`, component by component: `*` any run of
/// characters and `?` one character, neither crossing a `/`.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('/').collect();
    let names: Vec<&str> = name.split('/').collect();
    patterns.len() == names.len()
        && patterns
            .iter()
            .zip(&names)
            .all(|(p, n)| component_matches(p.as_bytes(), n.as_bytes()))
}

/// Whether a directory at relative path `dir` may hold matches of `pattern` deeper down.
pub fn glob_may_descend(pattern: &str, dir: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('/').collect();
    let dirs: Vec<&str> = dir.split('/').collect();
    patterns.len() > dirs.len()
        && patterns
            .iter()
            .zip(&dirs)
            .all(|(p, d)| component_matches(p.as_bytes(), d.as_bytes()))
}

fn component_matches(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative wildcard match with one backtrack point: linear in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` if it is not.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (index, quad) in text.chunks(4).enumerate() {
        let last = index + 1 == text.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..40 {
            let encoded = encode_base64(&data[..len]);
            assert_eq!(decode_base64(&encoded).as_deref(), Some(&data[..len]));
        }
        assert_eq!(encode_base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode_base64(b"fo"), "Zm8=");
        assert_eq!(decode_base64("Zm9=v"), None);
    }

    #[test]
    fn globs_match_one_component_at_a_time() {
        assert!(glob_matches("*.csv", "a.csv"));
        assert!(!glob_matches("*.csv", "out/a.csv"));
        assert!(glob_matches("out/*.csv", "out/a.csv"));
        assert!(glob_matches("r?n-*", "run-7"));
        assert!(!glob_matches("a*b", "acbd"));
        assert!(glob_matches("*", "result"));
        assert!(glob_may_descend("out/*.csv", "out"));
        assert!(!glob_may_descend("*.csv", "out"));
    }

    #[test]
    fn paths_out_of_the_directory_are_refused() {
        assert!(check_relative("out/*.csv").is_ok());
        assert!(check_relative("../x").is_err());
        assert!(check_relative("a/../../x").is_err());
        assert!(check_relative("/etc/passwd").is_err());
        assert!(check_relative("").is_err());
        assert!(check_relative("a//b").is_err());
    }
}
