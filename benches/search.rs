//! Kernel throughput on a generated genome held in memory (no disk, no process start), against
//! `memchr::memmem` counting over the raw FASTA text — fast but wrong: it misses every match that
//! spans a line break. Printed as a table of MB/s and ratios, all from the same run.
//!
//! `cargo bench --bench search` measures 128 MiB; under `cargo test` (no `--bench` flag) it runs a
//! 1 MiB smoke pass so the code stays working. The whole-program comparison with grep, ripgrep
//! and seqkit is `gridwatch bench search`.

use std::time::{Duration, Instant};

use gridwatch::search::generate::{generate, parse_plant, GenomeSpec};
use gridwatch::search::{
    search_positioned, search_reader, ParallelOptions, Pattern, PatternSet, SearchOptions,
    StrandMode,
};

/// One measured configuration.
struct Row {
    name: String,
    count: u64,
    best: Duration,
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let size: u64 = if full { 128 << 20 } else { 1 << 20 };
    let runs = if full { 5 } else { 1 };
    let genome = make_genome(size);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut rows = vec![time(
        "memmem on raw text (misses line-spanning)",
        runs,
        || memchr::memmem::find_iter(&genome, b"AGGTCCAT").count() as u64,
    )];
    let cases: [(&str, &[&str], StrandMode); 6] = [
        ("AGGTCCAT", &["AGGTCCAT"], StrandMode::Forward),
        ("AGGTCCAT both strands", &["AGGTCCAT"], StrandMode::Both),
        ("AGGNCCAT (IUPAC)", &["AGGNCCAT"], StrandMode::Forward),
        (
            "8 patterns",
            &[
                "AGGTCCAT", "GATTACAG", "CCGGAATT", "TTAGGCAT", "ACGTACGT", "GGGCCCAA", "TATAAAAG",
                "CAGCTGAC",
            ],
            StrandMode::Forward,
        ),
        ("GGNCC both strands", &["GGNCC"], StrandMode::Both),
        (
            "3 mixed (8-mer, GGNCC, 12-mer) both",
            &["AGGTCCAT", "GGNCC", "ACGTTGCAACGT"],
            StrandMode::Both,
        ),
    ];
    for (label, patterns, strand) in cases {
        let set = pattern_set(patterns, strand);
        for threads in [1, cores] {
            let name = format!("gridwatch {label}, {threads} thread(s)");
            rows.push(time(&name, runs, || count_all(&genome, &set, threads)));
            // Read at offsets by every thread, as `gridwatch search` reads a file.
            let name = format!("gridwatch {label}, {threads} thread(s) at offsets");
            rows.push(time(&name, runs, || {
                count_positioned(&genome, &set, threads)
            }));
            if cores == 1 {
                break;
            }
        }
    }
    print_table(&rows, genome.len());
}

fn make_genome(size: u64) -> Vec<u8> {
    let spec = GenomeSpec {
        size,
        seed: 42,
        line_width: 60,
        records: 4,
        plants: vec![parse_plant("AGGTCCAT:500").expect("valid plant")],
    };
    let mut genome = Vec::with_capacity(size as usize + size as usize / 60 + 1024);
    generate(&spec, &mut genome, &mut |_| {}).expect("generate in memory");
    genome
}

fn pattern_set(patterns: &[&str], strand: StrandMode) -> PatternSet {
    let patterns = patterns
        .iter()
        .map(|p| Pattern {
            name: p.to_string(),
            sequence: p.to_string(),
        })
        .collect();
    PatternSet::new(
        patterns,
        SearchOptions {
            strand,
            case_sensitive: false,
            ..SearchOptions::default()
        },
    )
    .expect("valid patterns")
}

fn count_all(genome: &[u8], set: &PatternSet, threads: usize) -> u64 {
    let options = ParallelOptions {
        threads,
        ..ParallelOptions::default()
    };
    let outcome = search_reader(genome, set, &options, &mut |_| {}).expect("valid genome");
    outcome.counts.iter().map(|c| c.total()).sum()
}

fn count_positioned(genome: &[u8], set: &PatternSet, threads: usize) -> u64 {
    let options = ParallelOptions {
        threads,
        ..ParallelOptions::default()
    };
    let outcome = search_positioned(genome, set, &options, &mut |_| {}).expect("valid genome");
    outcome.counts.iter().map(|c| c.total()).sum()
}

fn time(name: &str, runs: usize, mut work: impl FnMut() -> u64) -> Row {
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..runs {
        let started = Instant::now();
        count = work();
        best = best.min(started.elapsed());
    }
    Row {
        name: name.to_string(),
        count,
        best,
    }
}

fn print_table(rows: &[Row], bytes: usize) {
    let reference = rows[0].best.as_secs_f64();
    println!(
        "{:.0} MiB of 60-column FASTA in memory, best of runs",
        bytes as f64 / 1048576.0
    );
    println!(
        "{:<72} {:>10} {:>10} {:>10} {:>12}",
        "configuration", "count", "time ms", "MB/s", "vs memmem"
    );
    for row in rows {
        let seconds = row.best.as_secs_f64();
        println!(
            "{:<72} {:>10} {:>10.1} {:>10.0} {:>11.2}x",
            row.name,
            row.count,
            seconds * 1e3,
            bytes as f64 / 1e6 / seconds,
            seconds / reference
        );
    }
}
