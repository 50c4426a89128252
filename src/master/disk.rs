//! Free space on the disk that holds the master's uploads, checked before an upload is taken.

use std::path::Path;

/// Bytes an unprivileged process may still write on the file system holding `dir`; `None` when
/// the file system cannot be asked (the directory is missing, say), in which case no check is made.
// The field types differ between platforms (u32 on some), so the conversions stay.
#[allow(clippy::useless_conversion)]
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    let blocks = u64::try_from(stats.blocks_available()).ok()?;
    let size = u64::try_from(stats.fragment_size()).ok()?;
    Some(blocks.saturating_mul(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_directory_has_some_free_space_and_a_missing_one_is_not_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(free_bytes(dir.path()).is_some_and(|free| free > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
    }
}
