//! The result cache, on both backends, against real master and worker processes (and a real
//! `redis-server`): a search identical to a finished one is answered from its stored results
//! with no task run, and prints exactly what the first printed (and what a naive scan finds);
//! any change of pattern, strand, mismatches or case flag runs tasks again, as does
//! `--no-cache`; the answer outlives a master restart; a cancelled search never answers.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::genome_reuse::{cli_ok, grid_on, Backend};
use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;

const PATTERN: &str = "ACGTAC";

/// Three records with a soft-masked (lower-case) stretch and an N run, so the case flag changes
/// the answer and the matched bases print in both cases.
fn genome() -> Records {
    let mut bases = Bases::new(11);
    let mut first = bases.take(50_000);
    first[5_000..12_000].make_ascii_lowercase();
    first[20_000..20_500].fill(b'N');
    let mut third = bases.take(30_000);
    third[..3_000].make_ascii_lowercase();
    vec![
        ("chrA".to_string(), first),
        ("chrB".to_string(), bases.take(9_001)),
        ("chrC".to_string(), third),
    ]
}

/// Submits a search of `file` for `pattern` and waits for it; returns the job's total count and
/// the wall time of the whole client run.
fn search(grid: &Grid, job: &str, file: &Path, pattern: &str, extra: &[&str]) -> (u64, Duration) {
    let file = file.display().to_string();
    let mut args = vec!["submit", "search", &file, "-p", pattern];
    args.extend_from_slice(&["--job-id", job, "--wait", "--chunk-size", "10000"]);
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = cli_ok(grid, &args);
    (parse_total(&out), started.elapsed())
}

/// Search tasks completed by every worker, as the master counts them.
fn tasks_run(grid: &Grid) -> u64 {
    let out = cli_ok(grid, &["workers", "--performance", "--json"]);
    let workers: serde_json::Value = serde_json::from_str(&out).expect("performance JSON");
    workers
        .as_array()
        .expect("a list of workers")
        .iter()
        .flat_map(|worker| worker["kinds"].as_array().cloned().unwrap_or_default())
        .filter(|kind| kind["kind"] == "search")
        .map(|kind| kind["tasks_completed"].as_u64().unwrap_or(0))
        .sum()
}

/// The job's `status --json` record.
fn job_record(grid: &Grid, job: &str) -> serde_json::Value {
    let out = cli_ok(grid, &["status", job, "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    status["job"].clone()
}

fn tsv(grid: &Grid, job: &str) -> String {
    cli_ok(grid, &["results", job, "--format", "tsv"])
}

/// Case-sensitive forward matches of an upper-case A/C/G/T pattern, by brute force.
fn naive_case_sensitive(records: &Records, pattern: &str) -> u64 {
    let pattern = pattern.as_bytes();
    records
        .iter()
        .map(|(_, seq)| seq.windows(pattern.len()).filter(|w| *w == pattern).count() as u64)
        .sum()
}

/// Asserts that `job` ran tasks (the workers' count grew) and was not answered from the cache;
/// returns the new task count.
fn ran(grid: &Grid, job: &str, before: u64) -> u64 {
    let after = tasks_run(grid);
    assert!(
        after > before,
        "job {job} ran no task ({before} before and after)"
    );
    assert_eq!(job_record(grid, job)["cached"], false, "{job}");
    after
}

fn identical_repeats_come_from_the_cache(backend: Backend) {
    let mut grid = grid_on(&backend, &[]);
    grid.start_worker("w1", 2);
    let records = genome();
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let both = ["--strand", "both"];

    let expected = naive_hits(&records, PATTERN, true);
    let (first, _) = search(&grid, "first", &file, PATTERN, &both);
    assert_eq!(first, expected.len() as u64);
    let first_tsv = tsv(&grid, "first");
    assert_eq!(parse_tsv(&first_tsv), expected);
    assert!(
        first_tsv
            .lines()
            .any(|line| line.ends_with(|c: char| c.is_ascii_lowercase())),
        "the fixture has matches in its lower-case stretch"
    );
    let mut tasks = tasks_run(&grid);
    assert!(tasks > 0);
    assert_eq!(job_record(&grid, "first")["cached"], false);

    // The identical search: no task runs.
    let (again, took) = search(&grid, "again", &file, PATTERN, &both);
    eprintln!(
        "a cached repeat took {:.3} s end to end",
        took.as_secs_f64()
    );
    assert_eq!(again, first);
    assert_eq!(tasks_run(&grid), tasks, "the cached repeat ran tasks");
    let record = job_record(&grid, "again");
    assert_eq!(record["status"], "completed");
    assert_eq!(record["cached"], true);
    assert_eq!(record["cached_from"], "first");
    assert_eq!(record["uploaded_bytes"], 0);
    assert_eq!(tsv(&grid, "again"), first_tsv);
    let text = cli_ok(&grid, &["status", "again"]);
    assert!(text.contains("result cache"), "{text}");
    assert!(text.contains("first"), "{text}");

    // Any change of pattern, strand, mismatches or case flag runs tasks.
    let (other, _) = search(&grid, "pattern", &file, "GATTACA", &both);
    assert_eq!(other, naive_hits(&records, "GATTACA", true).len() as u64);
    tasks = ran(&grid, "pattern", tasks);
    let (forward, _) = search(&grid, "strand", &file, PATTERN, &[]);
    assert_eq!(forward, naive_hits(&records, PATTERN, false).len() as u64);
    tasks = ran(&grid, "strand", tasks);
    let (fuzzy, _) = search(
        &grid,
        "mismatch",
        &file,
        PATTERN,
        &[&both[..], &["-m", "1"]].concat(),
    );
    assert!(fuzzy > first, "one mismatch finds more than none");
    tasks = ran(&grid, "mismatch", tasks);
    let (exact_case, _) = search(&grid, "case", &file, PATTERN, &["--case-sensitive"]);
    assert_eq!(exact_case, naive_case_sensitive(&records, PATTERN));
    assert!(exact_case < forward, "the lower-case stretch holds matches");
    tasks = ran(&grid, "case", tasks);

    // --no-cache runs it anyway, and finds the same.
    let (forced, _) = search(
        &grid,
        "forced",
        &file,
        PATTERN,
        &[&both[..], &["--no-cache"]].concat(),
    );
    assert_eq!(forced, first);
    tasks = ran(&grid, "forced", tasks);
    assert_eq!(tsv(&grid, "forced"), first_tsv);

    // After a master restart the cache still answers.
    if let Some(master) = grid.master.as_mut() {
        master.kill9();
    }
    grid.master = None;
    grid.start_master();
    let (restarted, _) = search(&grid, "restarted", &file, PATTERN, &both);
    assert_eq!(restarted, first);
    assert_eq!(
        tasks_run(&grid),
        tasks,
        "the repeat after a restart ran tasks"
    );
    assert_eq!(job_record(&grid, "restarted")["cached"], true);
    assert_eq!(tsv(&grid, "restarted"), first_tsv);
}

#[test]
fn identical_searches_are_answered_from_the_cache_embedded() {
    identical_repeats_come_from_the_cache(Backend::Embedded);
}

#[test]
fn identical_searches_are_answered_from_the_cache_redis() {
    identical_repeats_come_from_the_cache(Backend::Redis(RedisServer::start()));
}

/// A failed or cancelled search never answers: the repeat of a cancelled one runs.
#[test]
fn a_cancelled_search_is_never_a_cache_source() {
    let mut grid = grid_on(&Backend::Embedded, &[]);
    let records = genome();
    let file = grid.path("g.fa");
    write_fasta(&file, &records, 60, "\n");
    let path = file.display().to_string();
    // No worker yet: the job stays queued until it is cancelled.
    cli_ok(
        &grid,
        &[
            "submit", "search", &path, "-p", PATTERN, "--job-id", "stopped",
        ],
    );
    cli_ok(&grid, &["cancel", "stopped"]);
    grid.start_worker("w1", 1);
    let (count, _) = search(&grid, "after", &file, PATTERN, &[]);
    assert_eq!(count, naive_hits(&records, PATTERN, false).len() as u64);
    assert!(tasks_run(&grid) > 0);
    assert_eq!(job_record(&grid, "after")["cached"], false);
}
