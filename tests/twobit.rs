//! UCSC `.2bit` genomes: `generate` writes one that Biopython reads as the same records as the
//! FASTA it writes from the same seed; `search` and a grid job over the `.2bit` find exactly what a
//! naive scan of the FASTA finds; a damaged file is refused with a reason, locally and by the
//! master.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_tsv, Grid, Records};
use crate::support::procs::gridwatch;
use crate::support::skip_without;

const PATTERN: &str = "ACGTTGCA";

/// Writes the same genome as `name.fa` and `name.2bit`.
fn generate_both(dir: &Path, name: &str) -> (String, String) {
    let mut files = Vec::new();
    for ext in ["fa", "2bit"] {
        let path = dir.join(format!("{name}.{ext}")).display().to_string();
        let out = gridwatch()
            .args([
                "generate",
                "--size",
                "300001",
                "--records",
                "3",
                "--seed",
                "7",
            ])
            .args(["--plant", &format!("{PATTERN}:40"), "--out", &path])
            .output()
            .expect("run gridwatch generate");
        assert!(out.status.success(), "{out:?}");
        files.push(path);
    }
    (files[0].clone(), files[1].clone())
}

/// The records of a FASTA file, read here line by line.
fn read_fasta(path: &str) -> Records {
    let text = std::fs::read_to_string(path).expect("read the FASTA");
    let mut records: Records = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix('>') {
            let name = header.split_whitespace().next().unwrap_or_default();
            records.push((name.to_string(), Vec::new()));
        } else if let Some((_, bases)) = records.last_mut() {
            bases.extend_from_slice(line.trim_end().as_bytes());
        }
    }
    records
}

/// A Python that has Biopython, if there is one.
fn python_with_biopython() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import Bio.SeqIO"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

#[test]
fn a_generated_2bit_reads_in_biopython_as_the_genome_its_fasta_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (fasta, twobit) = generate_both(dir.path(), "g");
    let Some(python) = python_with_biopython() else {
        return skip_without("Biopython (python3-biopython), an independent .2bit reader");
    };
    let script = "import sys\nfrom Bio import SeqIO\nfor r in SeqIO.parse(sys.argv[1], 'twobit'):\n    print(r.id + '\\t' + str(r.seq))\n";
    let out = Command::new(python)
        .args(["-c", script, &twobit])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "Biopython could not read the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, bases)| (name.to_string(), bases.as_bytes().to_vec()))
        .collect();
    let expected = read_fasta(&fasta);
    assert_eq!(expected.len(), 3);
    assert_eq!(
        read, expected,
        "the .2bit and the FASTA hold different genomes"
    );
    // Four bases a byte, plus headers.
    let size = std::fs::metadata(&twobit).expect("the .2bit").len();
    assert!(size < 300_001 / 4 + 200, "{size} bytes");
}

#[test]
fn search_and_a_grid_job_over_a_2bit_find_what_a_naive_scan_of_the_fasta_finds() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    let (fasta, twobit) = generate_both(grid.dir.path(), "g");
    let mut expected = naive_hits(&read_fasta(&fasta), PATTERN, true);
    expected.sort();
    assert!(expected.len() >= 40, "the planted copies at least");

    let local = gridwatch()
        .args(["search", &twobit, "-p", PATTERN, "--strand", "both"])
        .args(["--format", "tsv"])
        .output()
        .expect("run gridwatch search");
    assert!(local.status.success(), "{local:?}");
    let mut found = parse_tsv(&String::from_utf8_lossy(&local.stdout));
    found.sort();
    assert_eq!(found, expected, "gridwatch search over the .2bit");

    grid.cli_ok(&[
        "submit",
        &twobit,
        "-p",
        PATTERN,
        "--strand",
        "both",
        "--chunk-size",
        "50000",
        "--job-id",
        "twobit",
    ]);
    let status = grid.wait_finished("twobit", Duration::from_secs(300));
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let mut found = parse_tsv(&grid.cli_ok(&["results", "twobit", "--format", "tsv"]));
    found.sort();
    assert_eq!(found, expected, "a grid job over the .2bit");
}

#[test]
fn a_damaged_2bit_is_refused_with_a_reason_by_search_and_by_the_master() {
    let grid = Grid::start(&[]);
    let (_, twobit) = generate_both(grid.dir.path(), "g");
    let bytes = std::fs::read(&twobit).expect("the .2bit");
    let damaged = grid.path("damaged.2bit");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).expect("write the damaged copy");
    let damaged = damaged.display().to_string();

    let local = gridwatch()
        .args(["search", &damaged, "-p", PATTERN])
        .output()
        .expect("run gridwatch search");
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(!local.status.success());
    assert!(stderr.contains("malformed .2bit file"), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");

    let submit = grid.cli(&["submit", &damaged, "-p", PATTERN, "--job-id", "damaged"]);
    let stderr = String::from_utf8_lossy(&submit.stderr);
    assert!(!submit.status.success(), "a damaged .2bit was accepted");
    assert!(stderr.contains("malformed .2bit file"), "{stderr}");
    // The master still serves.
    grid.cli_ok(&["jobs"]);
}
