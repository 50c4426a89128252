//! `gridwatch bench julia`, `bench particles` and `bench grid` run end to end on tiny sizes: each
//! starts its own local grid, and every row it prints must agree with the local kernel (the
//! command fails otherwise). The Julia answer is also checked against a reference loop here.

use std::process::Command;

use crate::support::julia::{reference, Spec};

fn bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run gridwatch bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Sum of every pixel's count of the classic benchmark's image, by the reference loop.
fn julia_iterations_sum(width: u32, iterations: u32) -> u64 {
    let (_, _, counts) = reference(Spec::classic(width, width, iterations));
    counts.iter().map(|&n| u64::from(n)).sum()
}

/// Rows of the table that carry a time (skipped contenders print `-`).
fn timed_rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .filter(|line| {
            line.starts_with("local") || line.starts_with("grid") || line.starts_with("Python")
        })
        .filter(|line| !line.split_whitespace().any(|field| field == "-"))
        .collect()
}

#[test]
fn bench_julia_prints_exact_grid_and_local_rows() {
    let table = bench(&[
        "julia",
        "--width",
        "48",
        "--iterations",
        "60",
        "--bands",
        "1,3",
        "--runs",
        "1",
        "--workers",
        "1",
    ]);
    let rows = timed_rows(&table);
    let grid: Vec<&&str> = rows.iter().filter(|r| r.starts_with("grid")).collect();
    assert_eq!(grid.len(), 2, "one grid row per band count:\n{table}");
    let expected = julia_iterations_sum(48, 60).to_string();
    for row in &rows {
        assert!(row.contains(" yes "), "row not exact: {row}\n{table}");
    }
    assert!(
        table.contains(&format!("sum {expected}")),
        "the iterations sum {expected} of the reference loop is not in the table:\n{table}"
    );
}

#[test]
fn bench_particles_prints_exact_grid_and_local_rows() {
    let table = bench(&[
        "particles",
        "--particles",
        "40",
        "--steps",
        "30",
        "--replicas",
        "1,3",
        "--runs",
        "1",
        "--workers",
        "1",
    ]);
    let rows = timed_rows(&table);
    let grid: Vec<&&str> = rows.iter().filter(|r| r.starts_with("grid")).collect();
    assert_eq!(grid.len(), 2, "one grid row per replica count:\n{table}");
    for row in &rows {
        assert!(row.contains(" yes "), "row not exact: {row}\n{table}");
    }
}

#[test]
fn bench_grid_cached_repeat_is_answered_from_the_cache_with_the_local_count() {
    // 1000 copies of AGGTCCAT back to back (it cannot overlap itself), in 60-column lines so
    // many copies span a line break: 1000 matches, and none of TTAGGCAC.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("copies.fa");
    let bases = "AGGTCCAT".repeat(1000);
    let mut text = String::from(">chr1 description that the benchmark rewrites\n");
    for line in bases.as_bytes().chunks(60) {
        text.push_str(std::str::from_utf8(line).expect("ASCII"));
        text.push('\n');
    }
    std::fs::write(&file, text).expect("write the genome");
    let table = bench(&[
        "grid",
        "--file",
        file.to_str().expect("UTF-8 path"),
        "--backends",
        "embedded",
        "--runs",
        "2",
        "--workers",
        "1",
    ]);
    let cached = table
        .lines()
        .find(|line| line.contains("grid, cached repeat"))
        .unwrap_or_else(|| panic!("no cached-repeat row:\n{table}"));
    let fields: Vec<&str> = cached.split_whitespace().collect();
    assert_eq!(fields.last(), Some(&"yes"), "row not exact:\n{table}");
    assert_eq!(fields[fields.len() - 2], "1000", "cached count:\n{table}");
    assert!(
        table.contains("answered from the result cache (status: cached): yes"),
        "every cached repeat was answered from the cache:\n{table}"
    );
}
