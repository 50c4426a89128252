//! `gridwatch genomes export HASH` writes a stored genome as a UCSC `.2bit` file: independent
//! readers (py2bit and Biopython, whichever the machine has) read back the FASTA's records
//! with their names, N runs and lower case; searching the export, locally and on the grid,
//! prints the same TSV as searching the FASTA. On both backends (the genome read from the
//! master's files, or from Redis' blocks).

use std::path::Path;
use std::process::Command;

use crate::support::grid::{write_fasta, Bases, Grid, Records};
use crate::support::procs::gridwatch;
use crate::support::redis::RedisServer;
use crate::support::skip_without;

const PATTERN: &str = "ACGTA";

/// Records with N runs (one at a record's start, one inside), lower-case stretches (one
/// overlapping an N run) and a record shorter than a byte of packed bases.
fn genome() -> Records {
    let mut bases = Bases::new(23);
    let mut first = bases.take(40_003);
    first[..100].fill(b'N');
    first[1_000..1_777].make_ascii_lowercase();
    first[5_000..5_010].fill(b'N');
    first[5_005..6_000].make_ascii_lowercase();
    let mut second = bases.take(12_345);
    second[12_000..].make_ascii_lowercase();
    vec![
        ("chr1".to_string(), first),
        ("scaffold_2.1".to_string(), second),
        ("tiny".to_string(), b"AcG".to_vec()),
    ]
}

/// Readers of `.2bit` files independent of gridwatch, as (python, the code that prints each
/// record as `name<TAB>sequence`, its name): py2bit and Biopython, those this machine has.
fn independent_readers() -> Vec<(&'static str, &'static str, &'static str)> {
    const PY2BIT: &str = "import sys, py2bit\ntb = py2bit.open(sys.argv[1], True)\nfor name in tb.chroms():\n    print(name + '\\t' + tb.sequence(name))\n";
    const BIOPYTHON: &str = "import sys\nfrom Bio import SeqIO\nfor r in SeqIO.parse(sys.argv[1], 'twobit'):\n    print(r.id + '\\t' + str(r.seq))\n";
    let has = |python: &str, module: &str| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let pythons = ["python3", "/usr/bin/python3"];
    let mut readers = Vec::new();
    for (module, script, name) in [
        ("py2bit", PY2BIT, "py2bit"),
        ("Bio.SeqIO", BIOPYTHON, "Biopython"),
    ] {
        if let Some(python) = pythons.into_iter().find(|p| has(p, module)) {
            readers.push((python, script, name));
        }
    }
    readers
}

/// The records of a `.2bit` file as `reader` reads them, sorted by name.
fn read_back(twobit: &Path, (python, script, name): (&str, &str, &str)) -> Records {
    let out = Command::new(python)
        .args(["-c", script])
        .arg(twobit)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{name} could not read the export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut records: Records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, bases)| (name.to_string(), bases.as_bytes().to_vec()))
        .collect();
    records.sort();
    records
}

/// A local `gridwatch search` of `file` as TSV.
fn local_tsv(file: &Path) -> String {
    let out = gridwatch()
        .arg("search")
        .arg(file)
        .args(["-p", PATTERN, "--strand", "both", "--format", "tsv"])
        .output()
        .expect("run gridwatch search");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Submits a search of `file` as job `job`, waits, and returns its TSV.
fn grid_tsv(grid: &Grid, job: &str, file: &Path) -> String {
    let path = file.display().to_string();
    let search = ["submit", "search", &path, "-p", PATTERN, "--strand", "both"];
    let wait = ["--job-id", job, "--wait", "--chunk-size", "5000"];
    grid.cli_ok(&[&search[..], &wait[..]].concat());
    grid.cli_ok(&["results", job, "--format", "tsv"])
}

fn export_reads_back(grid: &mut Grid) {
    grid.start_worker("w1", 2);
    let records = genome();
    let fasta = grid.path("g.fa");
    write_fasta(&fasta, &records, 70, "\n");
    let fasta_tsv = grid_tsv(grid, "fasta", &fasta);
    assert!(fasta_tsv.lines().count() > 10, "{fasta_tsv}");
    let listed: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["genomes", "--json"])).expect("genomes --json");
    let hash = listed[0]["hash"]
        .as_str()
        .expect("a stored genome")
        .to_string();

    // To standard output, named by a prefix, and with --out: the same bytes.
    let stdout = grid.cli(&["genomes", "export", &hash[..12]]);
    assert!(stdout.status.success(), "{stdout:?}");
    let twobit = grid.path("g.2bit");
    grid.cli_ok(&[
        "genomes",
        "export",
        &hash,
        "--out",
        &twobit.display().to_string(),
    ]);
    let written = std::fs::read(&twobit).expect("the export");
    assert_eq!(written, stdout.stdout);
    let bases: usize = records.iter().map(|(_, seq)| seq.len()).sum();
    assert!(written.len() < bases / 4 + 1_000, "{} bytes", written.len());

    let readers = independent_readers();
    if readers.is_empty() {
        skip_without("py2bit or Biopython, an independent .2bit reader");
    }
    for reader in readers {
        let mut expected = records.clone();
        if reader.2 == "py2bit" {
            // py2bit prints every base of an N run as upper-case N, soft-masked or not.
            for (_, seq) in &mut expected {
                seq.iter_mut()
                    .filter(|b| **b == b'n')
                    .for_each(|b| *b = b'N');
            }
        }
        expected.sort();
        let read = read_back(&twobit, reader);
        assert_eq!(read.len(), expected.len(), "{}", reader.2);
        for ((name, seq), (want_name, want)) in read.iter().zip(&expected) {
            assert_eq!(name, want_name);
            assert!(
                seq == want,
                "{}: record {name} differs from the FASTA's (first difference at base {:?})",
                reader.2,
                seq.iter().zip(want).position(|(a, b)| a != b)
            );
        }
    }

    // Searching the export prints what searching the FASTA prints, locally and on the grid.
    assert_eq!(local_tsv(&twobit), local_tsv(&fasta));
    assert_eq!(grid_tsv(grid, "twobit", &twobit), fasta_tsv);
}

#[test]
fn an_exported_genome_reads_back_as_its_fasta_embedded() {
    export_reads_back(&mut Grid::start(&[]));
}

#[test]
fn an_exported_genome_reads_back_as_its_fasta_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    export_reads_back(&mut grid);
}
