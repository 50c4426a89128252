//! Particle jobs end to end with real processes: the same replicas with 1 worker, with 2, after
//! a worker is killed mid-job, on Redis, and from the local command; replicas come back ordered
//! by seed and complete (seeds K..K+R−1, each what a lone run of that seed gives), with
//! statistics checkable by hand; bad parameters are one line with exit code 2, and the master
//! refuses a bad raw spec with an error frame.

use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::redis::RedisServer;
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// `gridwatch particles … --json` locally.
fn local(particles: u32, steps: u32, seed: u64, replicas: u32) -> Value {
    let output = std::process::Command::new(crate::support::gridwatch_bin())
        .args(["particles", "--json"])
        .args(["--particles", &particles.to_string()])
        .args(["--steps", &steps.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--replicas", &replicas.to_string()])
        .output()
        .expect("running gridwatch particles");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("particles --json prints JSON")
}

fn submit_args(job: &str, particles: u32, steps: u32, seed: u64, replicas: u32) -> Vec<String> {
    [
        "submit",
        "particles",
        "--particles",
        &particles.to_string(),
        "--steps",
        &steps.to_string(),
        "--seed",
        &seed.to_string(),
        "--replicas",
        &replicas.to_string(),
        "--job-id",
        job,
        "--priority",
        "high",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Submits and waits with `--wait --json`; returns the printed result.
fn on_grid(grid: &Grid, job: &str, particles: u32, steps: u32, seed: u64, replicas: u32) -> Value {
    let mut args = submit_args(job, particles, steps, seed, replicas);
    args.extend(["--wait".into(), "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(&grid.cli_ok(&args)).expect("submit --wait --json prints JSON")
}

/// The replicas without their timings, which are the only fields that may differ between runs.
fn physics(result: &Value) -> Vec<Value> {
    result["replicas"]
        .as_array()
        .expect("a replicas list")
        .iter()
        .map(|replica| {
            let mut replica = replica.clone();
            replica
                .as_object_mut()
                .expect("a replica object")
                .remove("seconds");
            replica
        })
        .collect()
}

/// Replicas ordered by seed K..K+R−1, energy conserved, statistics as computed by hand here.
fn assert_ordered_and_complete(result: &Value, seed: u64, replicas: u32) {
    let list = physics(result);
    let seeds: Vec<u64> = list
        .iter()
        .map(|r| r["seed"].as_u64().expect("seed"))
        .collect();
    let expected: Vec<u64> = (seed..seed + u64::from(replicas)).collect();
    assert_eq!(seeds, expected, "replicas ordered by seed and complete");
    let collisions: Vec<u64> = list
        .iter()
        .map(|r| r["collisions"].as_u64().expect("collisions"))
        .collect();
    for replica in &list {
        let start = replica["kinetic_energy_start"].as_f64().expect("energy");
        let end = replica["kinetic_energy_end"].as_f64().expect("energy");
        assert!(
            ((end - start) / start).abs() < 1e-9,
            "energy drifted: {replica}"
        );
        assert!(replica["wall_bounces"].as_u64().is_some());
    }
    if replicas == 1 {
        assert_eq!(result["collisions"], collisions[0]);
        assert!(result.get("collision_stats").is_none());
        return;
    }
    assert!(result.get("collisions").is_none());
    let stats = &result["collision_stats"];
    let n = collisions.len() as f64;
    let mean = collisions.iter().sum::<u64>() as f64 / n;
    let var = collisions
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    assert!((stats["mean"].as_f64().expect("mean") - mean).abs() < 1e-9);
    assert!((stats["std"].as_f64().expect("std") - var.sqrt()).abs() < 1e-9);
    assert_eq!(stats["min"], *collisions.iter().min().expect("min"));
    assert_eq!(stats["max"], *collisions.iter().max().expect("max"));
}

#[test]
fn one_worker_two_workers_and_local_give_the_same_replicas() {
    let (particles, steps, seed, replicas) = (400, 300, 17, 6);
    let expected = local(particles, steps, seed, replicas);
    assert_ordered_and_complete(&expected, seed, replicas);

    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    let one = on_grid(&grid, "one", particles, steps, seed, replicas);
    assert_eq!(one["job_id"], "one");
    assert_eq!(one["kind"], "particles");
    assert_eq!(one["tasks"], replicas);
    assert_ordered_and_complete(&one, seed, replicas);
    assert_eq!(physics(&one), physics(&expected), "1 worker against local");

    grid.start_worker("w2", 2);
    let two = on_grid(&grid, "two", particles, steps, seed, replicas);
    assert_eq!(physics(&two), physics(&expected), "2 workers against local");
    let results: Value =
        serde_json::from_str(&grid.cli_ok(&["results", "two", "--json"])).expect("JSON");
    assert_eq!(physics(&results), physics(&expected));

    // Every replica is what a lone run of its seed gives.
    for (i, replica) in physics(&two).iter().enumerate() {
        let alone = local(particles, steps, seed + i as u64, 1);
        assert_eq!(replica, &physics(&alone)[0], "replica {i}");
    }

    // One replica: collisions at the top level.
    let single = on_grid(&grid, "single", particles, steps, seed + 2, 1);
    assert_ordered_and_complete(&single, seed + 2, 1);
    assert_eq!(physics(&single)[0], physics(&expected)[2]);

    // Status, jobs and the HTTP API show the kind and its summary.
    let status: Value =
        serde_json::from_str(&grid.cli_ok(&["status", "two", "--json"])).expect("JSON");
    assert_eq!(status["job"]["kind"], "particles");
    assert_eq!(
        status["job"]["summary"],
        "400 discs × 300 steps, 6 replicas, seeds 17–22"
    );
    let text = grid.cli_ok(&["results", "two"]);
    assert!(text.contains("Collisions: mean"), "{text}");
}

/// Submits an ensemble on w1 alone, kill -9s w1 once a first replica is stored, lets w2 finish,
/// and compares with the local run.
fn kill_a_worker_mid_job(grid: &mut Grid) {
    let (particles, steps, seed, replicas) = (3000, 1500, 5, 10);
    let args = submit_args("k9", particles, steps, seed, replicas);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    grid.finish_after_killing_w1("k9", &args, JOB_TIMEOUT);
    let result: Value =
        serde_json::from_str(&grid.cli_ok(&["results", "k9", "--json"])).expect("JSON");
    assert_ordered_and_complete(&result, seed, replicas);
    let expected = local(particles, steps, seed, replicas);
    assert_eq!(physics(&result), physics(&expected), "after kill -9");
    assert!(
        grid.master_logs()
            .contains("expired leases returned to the queue"),
        "w1's leases should have been reclaimed after the visibility timeout"
    );
}

#[test]
fn a_worker_killed_mid_job_changes_no_replica() {
    let mut grid = Grid::start(&["--visibility-timeout", "1"]);
    kill_a_worker_mid_job(&mut grid);
}

#[test]
fn on_redis_replicas_survive_a_killed_worker_and_match_two_workers() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &["--visibility-timeout", "1"]);
    kill_a_worker_mid_job(&mut grid);
    grid.start_worker("w3", 1);
    let (particles, steps, seed, replicas) = (300, 200, 40, 4);
    let two = on_grid(&grid, "redis-two", particles, steps, seed, replicas);
    assert_ordered_and_complete(&two, seed, replicas);
    assert_eq!(
        physics(&two),
        physics(&local(particles, steps, seed, replicas))
    );
}

#[test]
fn bad_parameters_are_one_line_with_exit_code_2() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--particles", "0", "--steps", "10", "--seed", "1"],
            "particles must be between 1 and 1000000, got 0",
        ),
        (
            &["--particles", "-5", "--steps", "10", "--seed", "1"],
            "particles must be between 1 and 1000000, got -5",
        ),
        (
            &["--particles", "2000000", "--steps", "10", "--seed", "1"],
            "particles must be between",
        ),
        (
            &["--particles", "10", "--steps", "0", "--seed", "1"],
            "steps must be between",
        ),
        (
            &["--particles", "1000000", "--steps", "100000", "--seed", "1"],
            "exceeds the limit",
        ),
        (
            &[
                "--particles",
                "10",
                "--steps",
                "10",
                "--seed",
                "1",
                "--replicas",
                "0",
            ],
            "replicas must be between",
        ),
    ];
    for (flags, expected) in cases {
        for command in [&["submit", "particles"][..], &["particles"][..]] {
            let mut args: Vec<&str> = command.iter().chain(flags).copied().collect();
            if command[0] == "submit" {
                // Nobody listens there: the client must refuse before it connects.
                args.extend(["--master", "127.0.0.1:1"]);
            }
            let output = std::process::Command::new(crate::support::gridwatch_bin())
                .args(&args)
                .output()
                .expect("running gridwatch");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
            assert!(stderr.starts_with("error: particles: "), "{stderr}");
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn the_master_refuses_a_bad_raw_spec_with_an_error_frame() {
    let grid = Grid::start(&[]);
    let bad_specs = [
        serde_json::json!({ "particles": 0, "steps": 10, "seed": 1 }),
        serde_json::json!({ "particles": -1, "steps": 10, "seed": 1 }),
        serde_json::json!({ "particles": 10, "steps": 0, "seed": 1 }),
        serde_json::json!({ "particles": 10, "steps": 10, "seed": 1, "replicas": 0 }),
        serde_json::json!({ "particles": 10, "steps": 10, "seed": u64::MAX, "replicas": 2 }),
        serde_json::json!({ "particles": 1000000, "steps": 100000, "seed": 1 }),
        serde_json::json!({ "particles": 10, "steps": 10 }),
    ];
    let specs: Vec<(&str, serde_json::Value)> = bad_specs
        .iter()
        .map(|spec| ("particles", spec.clone()))
        .collect();
    for (spec, message) in bad_specs.iter().zip(grid.raw_refusals(&specs)) {
        assert!(message.contains("particles"), "{spec}: {message}");
        assert_eq!(message.lines().count(), 1, "{spec}: {message}");
    }
    let jobs: Value = serde_json::from_str(&grid.cli_ok(&["jobs", "--json"])).expect("JSON");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}

/// A particle job's running total is its collisions, and every view calls it that; one replica
/// reads "1 replica", "1 task".
#[test]
fn a_particle_job_names_its_figure_collisions_everywhere() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    let result = on_grid(&grid, "named", 60, 200, 5, 1);
    let collisions = result["collisions"]
        .as_u64()
        .expect("one replica's collisions");
    let status = grid.cli_ok(&["status", "named"]);
    assert!(
        status.contains(&format!("Collisions: {collisions}\n")),
        "{status}"
    );
    assert!(!status.contains("atches"), "{status}");
    let jobs = grid.cli_ok(&["jobs"]);
    let row = jobs
        .lines()
        .find(|l| l.starts_with("named "))
        .expect("a row");
    let expected = if collisions == 1 {
        "1 collision".to_string()
    } else {
        format!("{collisions} collisions")
    };
    assert!(row.contains(&expected), "{jobs}");
    let text = grid.cli_ok(&["results", "named"]);
    assert!(
        text.contains(" 1 replica from seed 5") && text.contains(" in 1 task\n"),
        "{text}"
    );
}
