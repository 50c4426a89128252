//! `gridwatch search -m K` as a user runs it: the real binary against `seqkit locate -i -m K`
//! output captured once under `tests/fixtures/mismatch/`, plus the output format and errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gridwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .output()
        .expect("gridwatch runs")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mismatch")
        .join(name)
}

fn search(args: &[&str]) -> String {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    let output = gridwatch(&all);
    assert!(
        output.status.success(),
        "search failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// (seqID, patternName, strand, start, end) of every data line of a locate TSV.
fn locations(tsv: &str) -> BTreeSet<(String, String, String, u64, u64)> {
    tsv.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[3].to_string(),
                f[4].parse().expect("start"),
                f[5].parse().expect("end"),
            )
        })
        .collect()
}

#[test]
fn mismatch_hits_equal_seqkit_locate_for_k_0_to_3() {
    let genome = fixture("genome.fa");
    let patterns = fixture("patterns.fa");
    for k in 0..=3 {
        let expected =
            std::fs::read_to_string(fixture(&format!("seqkit_locate_m{k}.tsv"))).expect("fixture");
        let k_text = k.to_string();
        let ours = search(&[
            genome.to_str().expect("utf-8"),
            "--patterns",
            patterns.to_str().expect("utf-8"),
            "-m",
            &k_text,
            "--strand",
            "both",
            "--format",
            "tsv",
        ]);
        let (ours, theirs) = (locations(&ours), locations(&expected));
        assert!(!theirs.is_empty(), "fixture for K = {k} has hits");
        assert_eq!(ours, theirs, "K = {k}");
    }
}

#[test]
fn mismatches_column_counts_the_differences_between_pattern_and_matched() {
    let genome = fixture("genome.fa");
    let patterns = fixture("patterns.fa");
    let out = search(&[
        genome.to_str().expect("utf-8"),
        "--patterns",
        patterns.to_str().expect("utf-8"),
        "-m",
        "3",
        "--strand",
        "both",
        "--format",
        "tsv",
    ]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\tmismatches")
    );
    let mut seen = BTreeSet::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let differing = f[2]
            .bytes()
            .zip(f[6].bytes())
            .filter(|(p, m)| !p.eq_ignore_ascii_case(m))
            .count();
        assert_eq!(f[7], differing.to_string(), "{line}");
        seen.insert(differing);
    }
    assert_eq!(seen, BTreeSet::from([0, 1, 2, 3]));
}

#[test]
fn zero_mismatches_prints_exactly_what_an_exact_search_prints() {
    let genome = fixture("genome.fa");
    let patterns = fixture("patterns.fa");
    for format in ["tsv", "json", "bed", "count"] {
        let base = [
            genome.to_str().expect("utf-8"),
            "--patterns",
            patterns.to_str().expect("utf-8"),
            "--strand",
            "both",
            "--format",
            format,
        ];
        let mut with_zero = base.to_vec();
        with_zero.extend_from_slice(&["-m", "0"]);
        let exact = search(&base);
        assert_eq!(search(&with_zero), exact, "{format}");
        assert!(!exact.contains("mismatches"), "{format}");
    }
}

#[test]
fn json_output_carries_max_mismatches_and_per_hit_mismatches() {
    let genome = fixture("genome.fa");
    let out = search(&[
        genome.to_str().expect("utf-8"),
        "-p",
        "ATGGCGTA",
        "--max-mismatches",
        "1",
        "--json",
    ]);
    let value: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(value["max_mismatches"], 1);
    let hits = value["hits"].as_array().expect("hits");
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["mismatches"].as_u64() <= Some(1)));
}

#[test]
fn too_many_mismatches_for_a_pattern_is_a_one_line_usage_error() {
    let genome = fixture("genome.fa");
    let output = gridwatch(&[
        "search",
        genome.to_str().expect("utf-8"),
        "-p",
        "ACGTACGT",
        "-m",
        "4",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("every position would match"), "{stderr}");
    assert!(stderr.contains("at most 3"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn tsv_patterns_file_names_appear_in_the_output() {
    let dir = std::env::temp_dir().join(format!("gw-mm-tsv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("guides.tsv");
    std::fs::write(&list, "guide_a\tATGGCGTA\n# comment\nguide_b\tGCGAAGTGTC\n").expect("write");
    let genome = fixture("genome.fa");
    let out = search(&[
        genome.to_str().expect("utf-8"),
        "--patterns",
        list.to_str().expect("utf-8"),
        "-m",
        "1",
        "--format",
        "count",
    ]);
    assert!(out.contains("guide_a\tATGGCGTA\t"), "{out}");
    assert!(out.contains("guide_b\tGCGAAGTGTC\t"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
