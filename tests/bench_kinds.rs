//! `gridwatch bench julia` and `gridwatch bench particles` run end to end on tiny sizes: each
//! starts its own local grid, and every row it prints must agree with the local kernel (the
//! command fails otherwise). The Julia answer is also checked against a reference loop here.

use std::process::Command;

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

/// The classic benchmark's Python, transcribed: axes by repeated addition, then for each pixel
/// `while abs(z) < 2 and n < maxiter: z = z * z + c`, with `abs` as `hypot` and the complex
/// product written out as CPython computes it.
fn julia_iterations_sum(width: u32, iterations: u32) -> u64 {
    let (x1, x2, y1, y2) = (-1.8f64, 1.8f64, -1.8f64, 1.8f64);
    let (c_re, c_im) = (-0.62772f64, -0.42193f64);
    let (x_step, y_step) = ((x2 - x1) / f64::from(width), (y1 - y2) / f64::from(width));
    let mut xs = Vec::new();
    let mut x = x1;
    while x < x2 {
        xs.push(x);
        x += x_step;
    }
    let mut ys = Vec::new();
    let mut y = y2;
    while y > y1 {
        ys.push(y);
        y += y_step;
    }
    let mut sum = 0u64;
    for &y in &ys {
        for &x in &xs {
            let (mut a, mut b, mut n) = (x, y, 0u32);
            while a.hypot(b) < 2.0 && n < iterations {
                let (real, imag) = (a * a - b * b, a * b + b * a);
                a = real + c_re;
                b = imag + c_im;
                n += 1;
            }
            sum += u64::from(n);
        }
    }
    sum
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
