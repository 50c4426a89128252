//! `gridwatch load`, `gridwatch purge` and `gridwatch jobs` filters against a real master on each
//! backend: the two example batch files load as they are and load once; a malformed file creates
//! nothing and says where it is wrong; a single worker slot runs high before medium before low;
//! purge cancels only queued jobs of the asked priority, never one whose task a worker leased;
//! 100,000 tasks load in bounded time and memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::grid::{naive_hits, parse_tsv, write_fasta, Bases, Grid};
use crate::support::redis::RedisServer;
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::remote::RemoteBackend;
use gridwatch::backend::{Leases, NackOutcome};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A master on the embedded backend, or on a fresh Redis (kept alive by the returned handle).
fn grid(redis: bool) -> (Grid, Option<RedisServer>) {
    grid_with(redis, &[])
}

/// [`grid`] with extra master flags.
fn grid_with(redis: bool, flags: &[&str]) -> (Grid, Option<RedisServer>) {
    if !redis {
        return (Grid::start(flags), None);
    }
    let server = RedisServer::start();
    let grid = Grid::start_on(Some(&server.url()), flags);
    (grid, Some(server))
}

fn load_json(grid: &Grid, file: &Path) -> serde_json::Value {
    let out = grid.cli_ok(&["load", &file.display().to_string(), "--json"]);
    serde_json::from_str(&out).expect("load --json prints JSON")
}

fn jobs(grid: &Grid, filters: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["jobs", "--json"];
    args.extend_from_slice(filters);
    let out = grid.cli_ok(&args);
    let value: serde_json::Value = serde_json::from_str(&out).expect("jobs --json prints JSON");
    value["jobs"].as_array().cloned().unwrap_or_default()
}

fn the_csv_example_loads_three_julia_jobs_once(redis: bool) {
    let (grid, _redis) = grid(redis);
    let loaded = load_json(&grid, &fixture("trabajos.txt"));
    let listed = loaded["jobs"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{loaded}");
    assert_eq!(loaded["created"], 3);
    assert!(listed.iter().all(|job| job["kind"] == "julia"));
    let high = jobs(&grid, &["--priority", "high"]);
    assert_eq!(high.len(), 2, "two rows have priority 1");
    assert!(high.iter().all(|job| job["kind"] == "julia"));
    assert_eq!(jobs(&grid, &["--priority", "medium"]).len(), 1);

    let again = load_json(&grid, &fixture("trabajos.txt"));
    assert_eq!(
        again["created"], 0,
        "loading twice creates nothing: {again}"
    );
    assert_eq!(again["existing"], 3);
    assert_eq!(jobs(&grid, &[]).len(), 3);
}

#[test]
fn the_csv_example_loads_three_julia_jobs_once_embedded() {
    the_csv_example_loads_three_julia_jobs_once(false);
}

#[test]
fn the_csv_example_loads_three_julia_jobs_once_redis() {
    the_csv_example_loads_three_julia_jobs_once(true);
}

fn the_json_example_runs_its_particle_tasks(redis: bool) {
    let (mut grid, _redis) = grid(redis);
    let loaded = load_json(&grid, &fixture("tareas_manuales_ejemplo.json"));
    let ids: Vec<&str> = loaded["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|job| job["job_id"].as_str())
        .collect();
    assert_eq!(ids, ["task_001", "task_002"]);
    let status = grid.status("task_001");
    assert_eq!(status["job"]["kind"], "particles");
    assert_eq!(status["job"]["priority"], "high");
    grid.start_worker("w1", 2);
    for id in ["task_001", "task_002"] {
        let done = grid.wait_finished(id, JOB_TIMEOUT);
        assert_eq!(done["job"]["status"], "completed", "{done}");
    }
    let again = load_json(&grid, &fixture("tareas_manuales_ejemplo.json"));
    assert_eq!(again["created"], 0, "{again}");
    let completed = jobs(&grid, &["--status", "completed", "--kind", "particles"]);
    assert_eq!(completed.len(), 2);
    assert!(jobs(&grid, &["--kind", "julia"]).is_empty());
}

#[test]
fn the_json_example_runs_its_particle_tasks_embedded() {
    the_json_example_runs_its_particle_tasks(false);
}

#[test]
fn the_json_example_runs_its_particle_tasks_redis() {
    the_json_example_runs_its_particle_tasks(true);
}

#[test]
fn a_malformed_file_creates_nothing_and_says_where() {
    let grid = Grid::start(&[]);
    let good = r#"{"task_id":"ok1","algorithm":"python","priority":"high","parameters":{"num_particles":10,"num_steps":5,"seed":1}}"#;
    let cases: &[(&str, &str, &str)] = &[
        (
            "bad_number.csv",
            "algoritmo,width,height,iteraciones,prioridad\nNumpy,100,80,20,1\nNumpy,8x0,600,100,1\n",
            "line 3, field \"width\": \"8x0\" is not a whole number",
        ),
        (
            "unknown_algorithm.json",
            &format!(r#"{{"tasks":[{good},{{"task_id":"t2","algorithm":"fortran","parameters":{{}}}}]}}"#),
            "tasks[1], field \"algorithm\": unknown algorithm \"fortran\"",
        ),
        (
            "missing_field.json",
            &format!(r#"{{"tasks":[{good},{{"task_id":"t2","algorithm":"cython","priority":"low","parameters":{{"num_particles":10,"seed":1}}}}]}}"#),
            "tasks[1].parameters, field \"num_steps\": missing",
        ),
        (
            "unknown_priority.json",
            &format!(r#"{{"tasks":[{good},{{"task_id":"t2","algorithm":"python","priority":"urgent","parameters":{{"num_particles":10,"num_steps":5,"seed":1}}}}]}}"#),
            "tasks[1], field \"priority\": unknown priority \"urgent\"",
        ),
        (
            "truncated.json",
            &format!(r#"{{"tasks":[{good},{{"task_id":"t2","#),
            "JSON line 1, column",
        ),
        (
            "short_row.csv",
            "algoritmo,width,height,iteraciones,prioridad\nNumpy,100,80,20,1\nNumpy,1000,800\n",
            "line 3: 3 columns, expected 5",
        ),
        ("empty.json", "", "the file is empty"),
        (
            "missing_fasta.json",
            r#"{"tasks":[{"task_id":"s","algorithm":"search","parameters":{"patterns":["ACGT"],"fasta":"nowhere.fa"}}]}"#,
            "tasks[0].parameters, field \"fasta\"",
        ),
    ];
    for (name, text, expected) in cases {
        let path = grid.path(name);
        std::fs::write(&path, text).unwrap();
        let output = grid.cli(&["load", &path.display().to_string()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the message names the file: {stderr}"
        );
        assert!(jobs(&grid, &[]).is_empty(), "{name} created a job");
    }
}

#[test]
fn a_search_task_uploads_its_sequence_file_relative_to_the_batch_file() {
    let mut grid = Grid::start(&[]);
    std::fs::create_dir_all(grid.path("batch/genomes")).unwrap();
    std::fs::write(grid.path("batch/genomes/g.fa"), ">r\nACGTACGTAC\nGTACGT\n").unwrap();
    let batch = grid.path("batch/tasks.json");
    std::fs::write(
        &batch,
        r#"{"metadata":{},"tasks":[{"task_id":"find-acgt","algorithm":"search",
            "parameters":{"patterns":["ACGT"],"fasta":"genomes/g.fa"},"priority":"low"}]}"#,
    )
    .unwrap();
    grid.start_worker("w1", 1);
    let out = grid.cli_ok(&["load", &batch.display().to_string(), "--wait", "--json"]);
    let loaded: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(loaded["jobs"][0]["status"], "completed", "{loaded}");
    let count = grid.cli_ok(&["results", "find-acgt"]);
    assert!(count.contains('4'), "ACGT occurs 4 times: {count}");
}

/// Tasks written high, medium and low in reverse order, queued together, then one slot.
fn one_slot_runs_high_then_medium_then_low(redis: bool) {
    let (mut grid, _redis) = grid(redis);
    let mut tasks = Vec::new();
    for (priority, count) in [("low", 3), ("medium", 3), ("high", 3)] {
        for i in 0..count {
            tasks.push(serde_json::json!({
                "task_id": format!("{priority}-{i}"),
                "algorithm": "python",
                "parameters": {"num_particles": 20, "num_steps": 50, "seed": i},
                "priority": priority,
            }));
        }
    }
    let path = grid.path("order.json");
    std::fs::write(&path, serde_json::json!({ "tasks": tasks }).to_string()).unwrap();
    load_json(&grid, &path);
    grid.start_worker("w1", 1);
    let finished = |priority: &str| -> Vec<f64> {
        (0..3)
            .map(|i| {
                let done = grid.wait_finished(&format!("{priority}-{i}"), JOB_TIMEOUT);
                assert_eq!(done["job"]["status"], "completed");
                done["job"]["finished_at"].as_f64().unwrap()
            })
            .collect()
    };
    let (high, medium, low) = (finished("high"), finished("medium"), finished("low"));
    let last = |times: &[f64]| times.iter().cloned().fold(f64::MIN, f64::max);
    let first = |times: &[f64]| times.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        last(&high) <= first(&medium),
        "high {high:?} medium {medium:?}"
    );
    assert!(
        last(&medium) <= first(&low),
        "medium {medium:?} low {low:?}"
    );
}

#[test]
fn one_slot_runs_high_then_medium_then_low_embedded() {
    one_slot_runs_high_then_medium_then_low(false);
}

#[test]
fn one_slot_runs_high_then_medium_then_low_redis() {
    one_slot_runs_high_then_medium_then_low(true);
}

fn purge_cancels_only_queued_jobs_of_the_asked_priority(redis: bool) {
    let (grid, _redis) = grid(redis);
    load_json(&grid, &fixture("trabajos.txt"));
    load_json(&grid, &fixture("tareas_manuales_ejemplo.json"));
    let out = grid.cli_ok(&["purge", "--priority", "high", "--kind", "julia"]);
    assert_eq!(out.trim(), "Cancelled 2 queued jobs");
    let cancelled = jobs(&grid, &["--status", "cancelled"]);
    assert_eq!(cancelled.len(), 2);
    assert!(cancelled.iter().all(|job| job["kind"] == "julia"));
    assert_eq!(jobs(&grid, &["--status", "pending"]).len(), 3);
    let out = grid.cli_ok(&["purge", "--json"]);
    let purged: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(purged["cancelled"], 3, "{purged}");
    assert!(jobs(&grid, &["--status", "pending"]).is_empty());
    assert_eq!(grid.cli_ok(&["purge"]).trim(), "Cancelled 0 queued jobs");
}

#[test]
fn purge_cancels_only_queued_jobs_of_the_asked_priority_embedded() {
    purge_cancels_only_queued_jobs_of_the_asked_priority(false);
}

#[test]
fn purge_cancels_only_queued_jobs_of_the_asked_priority_redis() {
    purge_cancels_only_queued_jobs_of_the_asked_priority(true);
}

/// A worker's queue as a worker process reaches it: the master's protocol on the embedded
/// backend, Redis itself on Redis.
fn worker_queue(
    grid: &Grid,
    redis: Option<&RedisServer>,
    runtime: &tokio::runtime::Runtime,
) -> Arc<dyn Leases> {
    match redis {
        None => Arc::new(RemoteBackend::new(grid.addr.clone(), "holder", None)),
        Some(server) => Arc::new(
            runtime
                .block_on(RedisBackend::connect(
                    &server.url(),
                    RedisOptions::default(),
                ))
                .expect("connecting to the test redis-server"),
        ),
    }
}

/// A job whose only task a worker holds is running although none of its chunks finished:
/// purge cancels the job queued behind it only, and the held one still completes with every hit.
fn purge_spares_a_job_whose_task_a_worker_holds(redis: bool) {
    let (mut grid, server) = grid(redis);
    let records = vec![("chr1".to_string(), Bases::new(11).take(20_000))];
    let fasta = grid.path("genome.fa");
    write_fasta(&fasta, &records, 60, "\n");
    let file = fasta.display().to_string();
    for (job, priority) in [("held", "high"), ("behind", "low")] {
        grid.cli_ok(&[
            "submit",
            &file,
            "-p",
            "ACGTA",
            "--job-id",
            job,
            "--priority",
            priority,
        ]);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let queue = worker_queue(&grid, server.as_ref(), &runtime);
    let lease = runtime
        .block_on(queue.lease("holder", Duration::from_secs(10)))
        .expect("leasing")
        .expect("a task to lease");
    assert_eq!(
        lease.id.job, "held",
        "the high-priority job is leased first"
    );
    assert_eq!(grid.status("held")["job"]["status"], "pending");

    let out = grid.cli_ok(&["purge", "--json"]);
    let purged: serde_json::Value = serde_json::from_str(&out).expect("purge --json prints JSON");
    assert_eq!(purged["cancelled"], 1, "{purged}");
    assert_eq!(purged["job_ids"], serde_json::json!(["behind"]), "{purged}");
    assert_eq!(grid.status("behind")["job"]["status"], "cancelled");
    assert_eq!(grid.status("held")["job"]["status"], "pending");

    // Handed back unfinished, the task has still been delivered once: the job stays started.
    let returned = runtime.block_on(queue.nack(&lease, "handed back unfinished"));
    assert_eq!(
        returned.expect("nack"),
        NackOutcome::Retrying { next_attempt: 2 }
    );
    assert_eq!(grid.cli_ok(&["purge"]).trim(), "Cancelled 0 queued jobs");

    grid.start_worker("w1", 1);
    let done = grid.wait_finished("held", JOB_TIMEOUT);
    assert_eq!(done["job"]["status"], "completed", "{done}");
    let tsv = grid.cli_ok(&["results", "held", "--format", "tsv"]);
    let expected = naive_hits(&records, "ACGTA", false);
    assert!(!expected.is_empty(), "the fixture holds the pattern");
    assert_eq!(parse_tsv(&tsv), expected);
    assert_eq!(grid.status("behind")["job"]["status"], "cancelled");
}

#[test]
fn purge_spares_a_job_whose_task_a_worker_holds_embedded() {
    purge_spares_a_job_whose_task_a_worker_holds(false);
}

#[test]
fn purge_spares_a_job_whose_task_a_worker_holds_redis() {
    purge_spares_a_job_whose_task_a_worker_holds(true);
}

/// Peak resident memory of a finished command, from GNU time's `%M` (KiB).
fn peak_kib(stderr: &str) -> u64 {
    stderr
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("peak_kib=")?.parse().ok())
        .expect("GNU time printed the peak")
}

fn master_peak_kib(grid: &Grid) -> u64 {
    let pid = grid.master.as_ref().expect("master running").pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .expect("VmHWM in /proc status")
}

#[test]
fn a_file_of_100000_tasks_loads_in_bounded_time_and_memory_embedded() {
    a_file_of_100000_tasks_loads_in_bounded_time_and_memory(false);
}

#[test]
fn a_file_of_100000_tasks_loads_in_bounded_time_and_memory_redis() {
    a_file_of_100000_tasks_loads_in_bounded_time_and_memory(true);
}

fn a_file_of_100000_tasks_loads_in_bounded_time_and_memory(redis: bool) {
    const TASKS: usize = 100_000;
    let (grid, _redis) = grid_with(redis, &["--jobs-per-minute", "100000"]);
    let path = grid.path("big.json");
    let mut text = String::from("{\"metadata\":{\"total_tasks\":100000},\"tasks\":[");
    for i in 0..TASKS {
        if i > 0 {
            text.push(',');
        }
        let priority = ["high", "medium", "low"][i % 3];
        text.push_str(&format!(
            r#"{{"task_id":"big-{i}","algorithm":"cython","parameters":{{"num_particles":10,"num_steps":10,"seed":{i}}},"priority":"{priority}","description":"task {i}"}}"#
        ));
    }
    text.push_str("]}");
    std::fs::write(&path, &text).unwrap();
    let started = Instant::now();
    let output = std::process::Command::new("/usr/bin/time")
        .args(["-f", "peak_kib=%M"])
        .arg(crate::support::gridwatch_bin())
        .args(["load", &path.display().to_string(), "--master", &grid.addr])
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let client_mib = peak_kib(&stderr) / 1024;
    let master_mib = master_peak_kib(&grid) / 1024;
    let file_mib = text.len() / (1024 * 1024);
    println!(
        "100000 tasks ({file_mib} MiB file, {}): loaded in {seconds:.1} s; client peak {client_mib} MiB, master peak {master_mib} MiB",
        if redis { "redis" } else { "embedded" }
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("100000 jobs (100000 new"), "{stdout}");
    // The time is reported, not asserted: speed is measured by benchmarks, and a shared machine
    // may be many times slower than this one.
    assert!(client_mib < 512, "client peak {client_mib} MiB");
    assert!(master_mib < 512, "master peak {master_mib} MiB");
}
