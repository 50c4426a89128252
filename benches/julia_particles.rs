//! The Julia and particle kernels against Python implementations of the same computations
//! (`benches/python/`), in one run: time, and whether every implementation gives the same answer.
//!
//! `cargo bench --bench julia_particles` renders the classic 1000 × 1000 Julia image and runs
//! 1000 discs for 1000 steps; under `cargo test` (no `--bench` flag) a small smoke pass keeps the
//! code working and compares every pixel. The interpreter is `python3`, or the one named by
//! `GRIDWATCH_BENCH_PYTHON`; its numpy variant runs when numpy imports. Any disagreement between
//! implementations makes the bench fail.

use std::process::Command;
use std::time::{Duration, Instant};

use gridwatch::julia::{render_with_threads, JuliaGrid, JuliaParams};
use gridwatch::particles::{simulate, ParticleOutcome, ParticleParams};

/// One line of a table: an implementation, its answer, its time, and whether it agrees.
struct Row {
    name: String,
    answer: String,
    seconds: Option<f64>,
    agrees: bool,
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let python = std::env::var("GRIDWATCH_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut all_agree = true;

    let width = if full { 1000 } else { 60 };
    let rows = julia_rows(width, cores, full, &python);
    all_agree &= print_table(&format!("Julia {width} × {width}, 300 iterations"), &rows);

    let (particles, steps) = if full { (1000, 1000) } else { (100, 50) };
    let rows = particle_rows(particles, steps, cores, full, &python);
    let title = format!("Particles: {particles} discs, {steps} steps, seed 42");
    all_agree &= print_table(&title, &rows);

    if !all_agree {
        eprintln!("implementations disagree");
        std::process::exit(1);
    }
}

fn julia_rows(width: u32, cores: usize, full: bool, python: &str) -> Vec<Row> {
    let grid = JuliaGrid::new(JuliaParams::classic(width)).expect("classic parameters are valid");
    let runs = if full { 3 } else { 1 };
    let mut rows = Vec::new();
    let mut counts = Vec::new();
    for threads in [1, cores] {
        let seconds = best_of(runs, || counts = render_with_threads(&grid, threads));
        rows.push(Row {
            name: format!("Rust kernel, {threads} thread(s)"),
            answer: julia_answer(grid.width(), grid.height(), &counts),
            seconds: Some(seconds),
            agrees: true,
        });
        if cores == 1 {
            break;
        }
    }
    let expected = rows[0].answer.clone();
    for variant in ["python", "numpy"] {
        let mut args = vec![
            "--width".to_string(),
            width.to_string(),
            format!("--variant={variant}"),
        ];
        if !full {
            args.push("--counts".into());
        }
        let name = format!("Python ({variant})");
        let row = match run_python(python, "julia.py", &args) {
            Ok(json) => {
                let dims = (json["width"].as_u64(), json["height"].as_u64());
                let answer = format!(
                    "{}×{} sum {}",
                    dims.0.unwrap_or(0),
                    dims.1.unwrap_or(0),
                    json["iterations_sum"]
                );
                // In the smoke pass every pixel is compared, not only the sum.
                let same_pixels = full
                    || json["counts"].as_array().is_some_and(|theirs| {
                        theirs
                            .iter()
                            .map(|n| n.as_u64())
                            .eq(counts.iter().map(|&n| Some(u64::from(n))))
                    });
                Row {
                    name,
                    agrees: answer == expected && same_pixels,
                    answer,
                    seconds: json["seconds"].as_f64(),
                }
            }
            Err(reason) => skipped(name, reason),
        };
        rows.push(row);
    }
    rows
}

fn julia_answer(width: usize, height: usize, counts: &[u32]) -> String {
    let sum: u64 = counts.iter().map(|&n| u64::from(n)).sum();
    format!("{width}×{height} sum {sum}")
}

fn particle_rows(particles: u32, steps: u64, cores: usize, full: bool, python: &str) -> Vec<Row> {
    let params = ParticleParams::new(particles, steps, 42);
    let runs = if full { 3 } else { 1 };
    let mut outcome = None;
    let seconds = best_of(runs, || outcome = simulate(&params).ok());
    let outcome = outcome.expect("default parameters are valid");
    let mut rows = vec![Row {
        name: "Rust kernel, 1 thread".into(),
        answer: particle_answer(&outcome),
        seconds: Some(seconds),
        agrees: true,
    }];

    // An ensemble of replicas (seeds 42, 43, …) is what a grid runs; locally, one per thread.
    let replicas = if full { 8 } else { 2 };
    let sweep = |threads: usize| -> Vec<ParticleOutcome> {
        let seeds: Vec<u64> = (42..42 + replicas).collect();
        let mut results = vec![None; seeds.len()];
        std::thread::scope(|scope| {
            for (seed_group, result_group) in seeds
                .chunks(seeds.len().div_ceil(threads))
                .zip(results.chunks_mut(seeds.len().div_ceil(threads)))
            {
                scope.spawn(move || {
                    for (seed, slot) in seed_group.iter().zip(result_group) {
                        *slot = simulate(&ParticleParams::new(particles, steps, *seed)).ok();
                    }
                });
            }
        });
        results.into_iter().flatten().collect()
    };
    let mut one_thread = Vec::new();
    let seconds = best_of(1, || one_thread = sweep(1));
    rows.push(Row {
        name: format!("Rust, {replicas} replicas, 1 thread"),
        answer: format!("{} results", one_thread.len()),
        seconds: Some(seconds),
        agrees: one_thread.len() == replicas as usize && one_thread[0] == outcome,
    });
    let mut all_cores = Vec::new();
    let seconds = best_of(1, || all_cores = sweep(cores));
    rows.push(Row {
        name: format!("Rust, {replicas} replicas, {cores} threads"),
        answer: format!("{} results", all_cores.len()),
        seconds: Some(seconds),
        agrees: all_cores == one_thread,
    });

    let args = [
        format!("--particles={particles}"),
        format!("--steps={steps}"),
        "--seed=42".to_string(),
    ];
    let name = "Python (pure)".to_string();
    rows.push(match run_python(python, "particles.py", &args) {
        Ok(json) => {
            // Energies are compared through their bit patterns: a JSON reader's decimal parsing
            // may round the last bit differently from the writer.
            let theirs = (
                json["collisions"].as_u64(),
                json["wall_bounces"].as_u64(),
                json["kinetic_energy_start_bits"]
                    .as_u64()
                    .map(f64::from_bits),
                json["kinetic_energy_end_bits"].as_u64().map(f64::from_bits),
            );
            let ours = (
                Some(outcome.collisions),
                Some(outcome.wall_bounces),
                Some(outcome.kinetic_energy_start),
                Some(outcome.kinetic_energy_end),
            );
            Row {
                name,
                answer: match theirs {
                    (Some(collisions), Some(wall_bounces), Some(start), Some(end)) => {
                        particle_answer(&ParticleOutcome {
                            collisions,
                            wall_bounces,
                            kinetic_energy_start: start,
                            kinetic_energy_end: end,
                        })
                    }
                    _ => "unreadable".into(),
                },
                seconds: json["seconds"].as_f64(),
                agrees: theirs == ours,
            }
        }
        Err(reason) => skipped(name, reason),
    });
    rows
}

fn particle_answer(outcome: &ParticleOutcome) -> String {
    format!(
        "{} collisions, {} bounces, E {:.6}",
        outcome.collisions, outcome.wall_bounces, outcome.kinetic_energy_end
    )
}

/// Runs a script of `benches/python/` and parses the JSON object it prints.
fn run_python(python: &str, script: &str, args: &[String]) -> Result<serde_json::Value, String> {
    let path = format!("{}/benches/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .map_err(|error| format!("{python} not runnable: {error}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().last().unwrap_or("failed").to_string());
    }
    serde_json::from_slice(&output.stdout).map_err(|error| format!("bad JSON: {error}"))
}

/// A row for an implementation that could not run; it does not count as a disagreement.
fn skipped(name: String, reason: String) -> Row {
    Row {
        name,
        answer: format!("skipped: {reason}"),
        seconds: None,
        agrees: true,
    }
}

fn best_of(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        work();
        best = best.min(started.elapsed());
    }
    best.as_secs_f64()
}

/// Prints the table with times relative to the first row; returns whether all rows agree.
fn print_table(title: &str, rows: &[Row]) -> bool {
    println!("{title}");
    println!(
        "{:<34} {:<46} {:>10} {:>10} {:>6}",
        "implementation", "answer", "seconds", "vs first", "same"
    );
    let reference = rows[0].seconds.unwrap_or(f64::NAN);
    for row in rows {
        let (seconds, ratio) = match row.seconds {
            Some(seconds) => (
                format!("{seconds:.4}"),
                format!("{:.1}x", seconds / reference),
            ),
            None => ("-".into(), "-".into()),
        };
        let same = if row.seconds.is_none() {
            "-"
        } else if row.agrees {
            "yes"
        } else {
            "NO"
        };
        println!(
            "{:<34} {:<46} {:>10} {:>10} {:>6}",
            row.name, row.answer, seconds, ratio, same
        );
    }
    println!();
    rows.iter().all(|row| row.agrees)
}
