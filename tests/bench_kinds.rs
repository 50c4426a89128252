//! `gridwatch bench julia` and `gridwatch bench particles` run end to end on tiny sizes: each
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
