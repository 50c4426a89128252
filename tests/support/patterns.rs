//! Search patterns for the kernel's tests, each named by its own letters, as the reference scans
//! name what they find.

use gridwatch::search::Pattern;

/// `patterns` as search patterns, each named by its own letters.
pub fn named_by_letters(patterns: &[Vec<u8>]) -> Vec<Pattern> {
    patterns
        .iter()
        .map(|p| Pattern {
            name: String::from_utf8_lossy(p).into_owned(),
            sequence: String::from_utf8_lossy(p).into_owned(),
        })
        .collect()
}
