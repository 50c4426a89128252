//! `gridwatch bench commands`: command tasks on a local grid whose workers allow commands,
//! against GNU parallel running the same commands with as many at once as the grid has slots.
//! Two contests in one run: many `true` tasks (what each task costs the grid beyond its
//! program), and runs of the Python particle simulation beside the benches with different seeds
//! (real work), whose outputs must agree seed by seed, timings aside. Prints one table with the
//! ratio of each grid row to GNU parallel's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::bench_kinds::{grid_job, with_grid_allowing, BenchGridFlags};
use crate::client::connect::ClientError;
use crate::client::tool_error::ToolError;
use gridwatch::jobs::command::{CommandResult, CommandSubmission, COMMAND_KIND};

/// `gridwatch bench commands`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchCommandsArgs {
    /// `true` tasks in the overhead contest.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: u32,
    /// Particle simulations (seeds 1..=N) in the work contest.
    #[arg(long, default_value_t = 40)]
    pub seeds: u32,
    /// Discs per simulation.
    #[arg(long, default_value_t = 200)]
    pub particles: u32,
    /// Steps per simulation.
    #[arg(long, default_value_t = 400)]
    pub steps: u64,
    /// Grid and Python flags (best of --runs).
    #[command(flatten)]
    pub grid: BenchGridFlags,
}

/// One contender's best time and whether its outputs were right on every run.
struct Row {
    name: String,
    contest: &'static str,
    tasks: u32,
    seconds: Option<f64>,
    exact: bool,
    note: String,
}

impl Row {
    fn new(name: impl Into<String>, contest: &'static str, tasks: u32) -> Self {
        Self {
            name: name.into(),
            contest,
            tasks,
            seconds: None,
            exact: true,
            note: String::new(),
        }
    }

    fn record(&mut self, elapsed: Duration, exact: bool) {
        let secs = elapsed.as_secs_f64();
        self.seconds = Some(self.seconds.map_or(secs, |best| best.min(secs)));
        self.exact &= exact;
    }
}

/// Runs `gridwatch bench commands`.
pub fn run(args: &BenchCommandsArgs) -> Result<(), ToolError> {
    if args.tasks == 0 || args.seeds == 0 {
        return Err(ToolError::Usage("--tasks and --seeds start at 1".into()));
    }
    let script = args.grid.python_dir.join("particles.py");
    let python = resolve_python(&args.grid.python)?;
    let slots = args.grid.workers.max(1) * args.grid.threads.max(1);
    let runs = args.grid.runs.max(1);
    let sim_args = |seed: &str| -> Vec<String> {
        vec![
            script.display().to_string(),
            "--particles".into(),
            args.particles.to_string(),
            "--steps".into(),
            args.steps.to_string(),
            "--seed".into(),
            seed.to_string(),
        ]
    };

    // The reference outputs: each seed run once, alone.
    let mut expected = Vec::new();
    for seed in 1..=args.seeds {
        let output = Command::new(&python)
            .args(sim_args(&seed.to_string()))
            .output()
            .map_err(|e| ToolError::Failed(format!("{python}: {e}")))?;
        if !output.status.success() {
            return Err(ToolError::Failed(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        expected
            .push(physics(&String::from_utf8_lossy(&output.stdout)).map_err(ToolError::Failed)?);
    }

    let mut rows = Vec::new();
    let mut parallel_true = Row::new(format!("GNU parallel -j{slots}"), "true", args.tasks);
    let mut parallel_sim = Row::new(format!("GNU parallel -j{slots}"), "particles", args.seeds);
    for _ in 0..runs {
        let seq: Vec<String> = (1..=args.tasks).map(|i| i.to_string()).collect();
        match run_parallel(slots, &["true".to_string()], &seq) {
            Ok((elapsed, _)) => parallel_true.record(elapsed, true),
            Err(e) => parallel_true.note = e,
        }
        let seeds: Vec<String> = (1..=args.seeds).map(|i| i.to_string()).collect();
        let mut command = vec![python.clone()];
        command.extend(sim_args("{}"));
        match run_parallel(slots, &command, &seeds) {
            Ok((elapsed, stdout)) => {
                let got: Result<Vec<_>, _> = stdout.lines().map(physics).collect();
                parallel_sim.record(elapsed, got.is_ok_and(|got| got == expected));
            }
            Err(e) => parallel_sim.note = e,
        }
    }

    let grid_rows = with_grid_allowing(&args.grid, "commands", true, |master| {
        let python = python.clone();
        let expected = expected.clone();
        let mut argv = vec![python];
        argv.extend(sim_args("{i}"));
        async move {
            let mut grid_true = Row::new("grid", "true", args.tasks);
            let mut grid_sim = Row::new("grid", "particles", args.seeds);
            for _ in 0..runs {
                let spec = submission(vec!["true".into()], args.tasks)?;
                let (elapsed, results) = grid_job(&master, COMMAND_KIND, spec).await?;
                let results = command_results(results)?;
                let all_ok = results.len() == args.tasks as usize
                    && results.iter().all(CommandResult::succeeded);
                grid_true.record(elapsed, all_ok);

                let spec = submission(argv.clone(), args.seeds)?;
                let (elapsed, results) = grid_job(&master, COMMAND_KIND, spec).await?;
                let results = command_results(results)?;
                let got: Result<Vec<_>, _> = results.iter().map(|r| physics(&r.stdout)).collect();
                grid_sim.record(
                    elapsed,
                    results.len() == args.seeds as usize && got.is_ok_and(|got| got == expected),
                );
            }
            Ok(vec![grid_true, grid_sim])
        }
    })?;
    let (grid_true, grid_sim) = {
        let mut grid_rows = grid_rows.into_iter();
        (grid_rows.next(), grid_rows.next())
    };
    rows.push(parallel_true);
    rows.extend(grid_true);
    rows.push(parallel_sim);
    rows.extend(grid_sim);
    let title = format!(
        "Command tasks: {} × `true`, and {} particle simulations ({} discs × {} steps, seeds \
         1-{}); {} workers × {} slots against GNU parallel -j{slots}; best of {runs}",
        args.tasks,
        args.seeds,
        args.particles,
        args.steps,
        args.seeds,
        args.grid.workers,
        args.grid.threads,
    );
    print_table(&title, &rows)
}

/// The job array running `argv` once per index 1..=tasks.
fn submission(argv: Vec<String>, tasks: u32) -> Result<serde_json::Value, ClientError> {
    let submission = CommandSubmission {
        argv,
        array: Some(format!("1-{tasks}")),
        ..CommandSubmission::default()
    };
    serde_json::to_value(submission).map_err(|e| ClientError::Usage(e.to_string()))
}

/// The command results of a job, in task order.
fn command_results(
    results: Vec<gridwatch::backend::ChunkResult>,
) -> Result<Vec<CommandResult>, ClientError> {
    let mut results: Vec<(u32, CommandResult)> = results
        .into_iter()
        .map(|stored| {
            serde_json::from_value(stored.payload)
                .map(|result| (stored.chunk, result))
                .map_err(|e| ClientError::JobFailed(format!("task result: {e}")))
        })
        .collect::<Result<_, _>>()?;
    results.sort_by_key(|(chunk, _)| *chunk);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// A simulation's printed JSON without its timing: what must agree across contenders.
fn physics(stdout: &str) -> Result<serde_json::Value, String> {
    let mut value: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("simulation output {stdout:?}: {e}"))?;
    if let Some(object) = value.as_object_mut() {
        object.remove("seconds");
    }
    Ok(value)
}

/// The interpreter's absolute path: the grid's tasks run with a fixed search path, and both
/// contenders must run the same program.
fn resolve_python(python: &str) -> Result<String, ToolError> {
    if Path::new(python).is_absolute() {
        return Ok(python.to_string());
    }
    let output = Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| ToolError::Failed(format!("{python}: {e}")))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || path.is_empty() {
        return Err(ToolError::Failed(format!("{python} does not run")));
    }
    Ok(path)
}

/// Runs `parallel -jN --keep-order COMMAND ::: ARGS`; its time and stdout.
fn run_parallel(
    jobs: usize,
    command: &[String],
    args: &[String],
) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let output = Command::new("parallel")
        .arg(format!("-j{jobs}"))
        .arg("--keep-order")
        .args(command)
        .arg(":::")
        .args(args)
        .output()
        .map_err(|e| format!("GNU parallel does not run: {e}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "parallel failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok((
        elapsed,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

fn print_table(title: &str, rows: &[Row]) -> Result<(), ToolError> {
    println!("{title}");
    println!(
        "{:<10} {:<24} {:>9} {:>11} {:>10} {:>6}  note",
        "contest", "contender", "seconds", "× parallel", "tasks/s", "exact"
    );
    let mut wrong = false;
    for row in rows {
        let Some(secs) = row.seconds else {
            println!(
                "{:<10} {:<24} {:>9}  {}",
                row.contest, row.name, "-", row.note
            );
            continue;
        };
        let base = rows
            .iter()
            .find(|r| r.contest == row.contest && r.name.starts_with("GNU parallel"))
            .and_then(|r| r.seconds);
        let ratio = base.map_or("-".into(), |b| format!("{:.2}", secs / b.max(1e-9)));
        let rate = f64::from(row.tasks) / secs.max(1e-9);
        wrong |= !row.exact;
        println!(
            "{:<10} {:<24} {:>9.3} {:>11} {:>10.1} {:>6}  {}",
            row.contest,
            row.name,
            secs,
            ratio,
            rate,
            if row.exact { "yes" } else { "NO" },
            row.note
        );
    }
    println!(
        "× parallel = seconds / GNU parallel's in the same contest; exact = every task exited 0 \
         (true) or printed the same physics as the seed run alone (particles)"
    );
    if wrong {
        return Err(ToolError::Failed(
            "some contender's output was wrong".into(),
        ));
    }
    Ok(())
}
