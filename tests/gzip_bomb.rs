//! A gzip bomb uploaded whole: 1 MiB of gzip that expands to 1 GiB. With a decompressed-size limit
//! the chunker must refuse it after about the limit, holding no more than a few MiB while it does.
//! Alone in its binary so the process's peak memory is this test's.

use std::io::Write;

use gridwatch::search::{Chunker, InputError};

const MIB: usize = 1024 * 1024;

/// 1 GiB of `A`, gzip-compressed without ever holding the expansion.
fn bomb() -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b'A'; MIB];
    for _ in 0..1024 {
        encoder.write_all(&block).unwrap();
    }
    encoder.finish().unwrap()
}

/// The process's resident set in KiB: its peak (`VmHWM`) or its current size (`VmRSS`).
fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn gzip_bomb_is_refused_with_bounded_memory() {
    let bomb = bomb();
    assert!(bomb.len() < 2 * MIB, "bomb is {} bytes", bomb.len());
    let limit = 8 * MIB as u64;
    // Reset the peak so it measures the push alone (best effort: the baseline covers a failure).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let baseline = rss_kib("VmHWM:").max(rss_kib("VmRSS:"));

    let mut chunker = Chunker::new(MIB, 31).with_max_decompressed(limit);
    let mut owned = 0u64;
    let started = std::time::Instant::now();
    let err = chunker
        .push(&bomb, &mut |chunk| owned += chunk.owned_len as u64)
        .unwrap_err();
    let elapsed = started.elapsed();

    assert!(
        matches!(err, InputError::ExpandsPastLimit { limit: l, compressed } if l == limit && compressed < bomb.len() as u64 / 8),
        "{err}"
    );
    assert!(chunker.decompressed_len() <= limit);
    assert!(owned <= limit);
    assert!(
        elapsed < std::time::Duration::from_secs(2),
        "took {elapsed:?}"
    );
    if let (Some(before), Some(peak)) = (baseline, rss_kib("VmHWM:")) {
        let grown_mib = peak.saturating_sub(before) / 1024;
        assert!(grown_mib < 32, "peak memory grew by {grown_mib} MiB");
    }
}
