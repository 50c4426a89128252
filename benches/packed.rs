//! Throughput of reading a stored genome back: one lease's chunk decoded from 2-bit packed blocks
//! with their exceptions, as a backend does when a worker leases a task. Three genomes: plain
//! A/C/G/T, one soft-masked in runs (lower case, as assemblies are), and one with N runs.
//!
//! `cargo bench --bench packed` decodes 64 MiB chunks (best of 5); under `cargo test` (no
//! `--bench` flag) it runs a 1 MiB smoke pass so the code stays working. Every decode is checked
//! against the bases that were encoded.

use std::time::{Duration, Instant};

use gridwatch::backend::packed::{block_spans, decode_span, BlockEncoder, Exceptions, PackedBlock};

/// Bases per stored block, as the Redis backend cuts genomes.
const BLOCK_BASES: u32 = 4 * ((1 << 20) - 64);

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let size: usize = if full { 64 << 20 } else { 1 << 20 };
    let runs = if full { 5 } else { 1 };
    println!(
        "{:<32} {:>10} {:>10} {:>10}",
        "genome", "MiB", "time ms", "GB/s"
    );
    for (name, bases) in [
        ("plain ACGT", plain(size)),
        ("soft-masked runs (1/2 lower)", soft_masked(size)),
        ("N runs (1/16 N)", with_n_runs(size)),
    ] {
        let blocks = encode(&bases);
        // A lease's chunk rarely starts on a block edge: start 3 bases in, end 5 before the end.
        let (offset, len) = (3, bases.len() - 8);
        let mut out = Vec::with_capacity(bases.len());
        let mut best = Duration::MAX;
        for _ in 0..runs {
            out.clear();
            let started = Instant::now();
            decode(&blocks, offset, len, &mut out);
            best = best.min(started.elapsed());
            assert!(out == bases[offset..offset + len], "{name}: decode differs");
        }
        println!(
            "{:<32} {:>10.1} {:>10.2} {:>10.2}",
            name,
            len as f64 / 1048576.0,
            best.as_secs_f64() * 1e3,
            len as f64 / 1e9 / best.as_secs_f64()
        );
    }
}

/// Random A/C/G/T from a fixed xorshift generator (the same bytes every run).
fn plain(size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b"ACGT"[(state >> 60) as usize & 3]
        })
        .collect()
}

/// Half the bases lower case, in runs of a few hundred.
fn soft_masked(size: usize) -> Vec<u8> {
    let mut bases = plain(size);
    for (i, run) in bases.chunks_mut(300).enumerate() {
        if i % 2 == 1 {
            run.make_ascii_lowercase();
        }
    }
    bases
}

/// One base in 16 an N, in runs of 1000.
fn with_n_runs(size: usize) -> Vec<u8> {
    let mut bases = plain(size);
    for run in bases.chunks_mut(16_000) {
        let len = run.len().min(1000);
        run[..len].fill(b'N');
    }
    bases
}

fn encode(bases: &[u8]) -> Vec<PackedBlock> {
    let mut encoder = BlockEncoder::new(BLOCK_BASES);
    let mut blocks = Vec::new();
    encoder.push(bases, &mut blocks);
    blocks.extend(encoder.finish());
    blocks
}

/// Decodes `offset..offset + len` the way a backend reads a lease's chunk.
fn decode(blocks: &[PackedBlock], offset: usize, len: usize, out: &mut Vec<u8>) {
    for span in block_spans(offset as u64, len as u64, u64::from(BLOCK_BASES)) {
        let block = &blocks[span.block as usize];
        let bytes = span.packed_bytes();
        let packed = &block.packed[bytes.start as usize..bytes.end as usize];
        let exceptions = Exceptions::parse(&block.exceptions).expect("valid exceptions");
        decode_span(&span, packed, &exceptions, out).expect("decodes");
    }
}
