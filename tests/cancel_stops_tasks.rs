//! Cancel stops running tasks: one worker with one slot runs a long Julia band (or a long
//! particle replica); the job is cancelled mid-run; the worker must drop the task and free its
//! slot at once, which the test sees two ways: the worker's own heartbeats (the test plays its
//! agent on the Unix socket) stop naming the task, and a small job submitted right after the
//! cancel completes, exactly, within a few seconds rather than after the long task. On the
//! embedded backend and on Redis, for Julia bands, particle replicas and search chunks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::grid::Grid;
use crate::support::julia::{reference, Spec};
use crate::support::redis::RedisServer;
use crate::support::wait_for;
use gridwatch::protocol::{Connection, Message};

/// The goal is under 1 s; the bound leaves room for a machine many times slower, while a task
/// that ran on after the cancel (seconds of work per chunk here) still fails it.
const IDLE_BOUND: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The worker's heartbeats as its agent would receive them: the task it names, and when that
/// last changed.
#[derive(Default)]
struct Beats {
    current: Option<String>,
    changed_at: Option<Instant>,
}

/// Plays the worker's agent on a Unix socket: welcomes its hello and records each heartbeat's
/// current task. Runs until the test process ends.
fn fake_agent(socket: &std::path::Path) -> Arc<Mutex<Beats>> {
    let beats = Arc::new(Mutex::new(Beats::default()));
    let listener = std::os::unix::net::UnixListener::bind(socket).expect("binding the socket");
    listener.set_nonblocking(true).expect("non-blocking");
    let shared = beats.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let mut conn = Connection::new(stream);
                let Ok(Some(Message::Hello { .. })) = conn.read_message().await else {
                    continue;
                };
                let welcome = Message::Welcome {
                    version: gridwatch::protocol::PROTOCOL_VERSION,
                    server: "test agent".into(),
                    role: None,
                };
                if conn.write_message(&welcome).await.is_err() {
                    continue;
                }
                while let Ok(Some(message)) = conn.read_message().await {
                    if let Message::Heartbeat { current_task, .. } = message {
                        let mut beats = shared.lock().expect("beats lock");
                        if beats.current != current_task {
                            beats.current = current_task;
                            beats.changed_at = Some(Instant::now());
                        }
                    }
                }
            }
        });
    });
    beats
}

/// A grid with one single-slot worker whose heartbeats go to a fake agent.
fn grid_with_watched_worker(redis: Option<&RedisServer>) -> (Grid, Arc<Mutex<Beats>>) {
    let mut flags: Vec<String> = Vec::new();
    if let Some(redis) = redis {
        flags.extend(["--backend".into(), redis.url()]);
    }
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut grid = Grid::start(&flag_refs);
    let socket = grid.path("w1.sock");
    let beats = fake_agent(&socket);
    grid.worker_flags = flags;
    grid.worker_flags
        .extend(["--agent-socket".into(), socket.display().to_string()]);
    grid.start_worker("w1", 1);
    (grid, beats)
}

/// Waits until the worker's heartbeat names a task of `job`.
fn wait_running(beats: &Mutex<Beats>, job: &str) {
    wait_for("the worker to start the long task", START_TIMEOUT, || {
        let beats = beats.lock().expect("beats lock");
        beats
            .current
            .as_deref()
            .is_some_and(|task| task.starts_with(&format!("{job}/")))
            .then_some(())
    });
}

/// Cancels `job` (whose task the worker is running), then runs `honest` to completion; returns
/// the time from the cancel to the honest job's end, and from the cancel to the heartbeat that
/// no longer names the cancelled task.
fn cancel_then_run(
    grid: &Grid,
    beats: &Mutex<Beats>,
    job: &str,
    honest: &[&str],
) -> (Duration, Duration) {
    let cancelled_at = Instant::now();
    grid.cli_ok(&["cancel", job]);
    grid.cli_ok(honest);
    let next_done = cancelled_at.elapsed();
    let idle = wait_for("a heartbeat without the task", IDLE_BOUND * 2, || {
        let beats = beats.lock().expect("beats lock");
        let still = beats
            .current
            .as_deref()
            .is_some_and(|task| task.starts_with(&format!("{job}/")));
        (!still).then(|| {
            beats.changed_at.map_or(Duration::ZERO, |at| {
                at.saturating_duration_since(cancelled_at)
            })
        })
    });
    assert_eq!(
        grid.status(job)["job"]["status"],
        "cancelled",
        "the cancelled job changed status"
    );
    (next_done, idle)
}

/// A band that runs for a minute: with c = 0 every pixel of the unit disc runs all iterations.
fn long_julia_args(job: &str) -> Vec<String> {
    let spec = Spec {
        width: 300,
        height: 300,
        iterations: 1_000_000,
        c: (0.0, 0.0),
    };
    let mut args = vec!["submit".to_string(), "julia".into()];
    args.extend(spec.args());
    args.extend(["--bands".into(), "3".into(), "--job-id".into(), job.into()]);
    args
}

fn julia_cancel_frees_the_worker(redis: Option<&RedisServer>) {
    let (grid, beats) = grid_with_watched_worker(redis);
    let long = long_julia_args("long");
    grid.cli_ok(&long.iter().map(String::as_str).collect::<Vec<_>>());
    wait_running(&beats, "long");

    let spec = Spec::classic(41, 23, 150);
    let mut honest: Vec<String> = vec!["submit".into(), "julia".into()];
    honest.extend(spec.args());
    honest.extend(["--job-id".into(), "next".into(), "--wait".into()]);
    let honest: Vec<&str> = honest.iter().map(String::as_str).collect();
    let (next_done, idle) = cancel_then_run(&grid, &beats, "long", &honest);
    eprintln!(
        "julia ({}): cancel → next job done {:.3} s; cancel → heartbeat without the task {:.3} s",
        if redis.is_some() { "redis" } else { "embedded" },
        next_done.as_secs_f64(),
        idle.as_secs_f64()
    );
    assert!(
        next_done < IDLE_BOUND,
        "the next job waited {next_done:?} after the cancel"
    );
    let counts = grid.cli_ok(&["results", "next", "--format", "counts"]);
    let got: Vec<u32> = counts
        .split(['\t', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a count"))
        .collect();
    assert_eq!(got, reference(spec).2, "the next job's pixels");
}

fn particles_cancel_frees_the_worker(redis: Option<&RedisServer>) {
    let (grid, beats) = grid_with_watched_worker(redis);
    // 2·10^10 disc-steps: the largest task, minutes of one core.
    grid.cli_ok(&[
        "submit",
        "particles",
        "--particles",
        "2000",
        "--steps",
        "10000000",
        "--seed",
        "1",
        "--job-id",
        "long",
    ]);
    wait_running(&beats, "long");
    let honest = [
        "submit",
        "particles",
        "--particles",
        "100",
        "--steps",
        "300",
        "--seed",
        "7",
        "--job-id",
        "next",
        "--wait",
    ];
    let (next_done, idle) = cancel_then_run(&grid, &beats, "long", &honest);
    eprintln!(
        "particles ({}): cancel → next job done {:.3} s; cancel → heartbeat without the task {:.3} s",
        if redis.is_some() { "redis" } else { "embedded" },
        next_done.as_secs_f64(),
        idle.as_secs_f64()
    );
    assert!(
        next_done < IDLE_BOUND,
        "the next job waited {next_done:?} after the cancel"
    );
    let grid_result: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["results", "next", "--json"])).expect("JSON");
    let output = std::process::Command::new(crate::support::gridwatch_bin())
        .args([
            "particles",
            "--json",
            "--particles",
            "100",
            "--steps",
            "300",
        ])
        .args(["--seed", "7"])
        .output()
        .expect("running gridwatch particles");
    assert!(output.status.success(), "{output:?}");
    let lone: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("particles --json prints JSON");
    for field in ["seed", "collisions", "wall_bounces"] {
        assert_eq!(
            grid_result["replicas"][0][field], lone["replicas"][0][field],
            "{field}"
        );
    }
}

/// One search task of over ten seconds on a 2-core machine: 16 M bases in one chunk (near the
/// largest chunk) against 500 40-base patterns with up to 8 mismatches, whose 4-base seeds verify
/// candidates everywhere.
fn search_cancel_frees_the_worker(redis: Option<&RedisServer>) {
    use crate::support::grid::{naive_hits, write_fasta, Bases};
    let (grid, beats) = grid_with_watched_worker(redis);
    let mut bases = Bases::new(31);
    let genome = vec![("chrL".to_string(), bases.take(16_000_000))];
    let long_fasta = grid.path("long.fa");
    write_fasta(&long_fasta, &genome, 60, "\n");
    let patterns: Vec<String> = (0..500)
        .map(|_| String::from_utf8(bases.take(40)).expect("ASCII bases"))
        .collect();
    let patterns_file = grid.path("patterns.txt");
    std::fs::write(&patterns_file, patterns.join("\n")).expect("patterns file");
    grid.cli_ok(&[
        "submit",
        long_fasta.to_str().expect("utf-8"),
        "--patterns",
        patterns_file.to_str().expect("utf-8"),
        "--max-mismatches",
        "8",
        "--chunk-size",
        "16000000",
        "--job-id",
        "long",
    ]);
    wait_running(&beats, "long");

    let small = vec![("chrS".to_string(), bases.take(50_000))];
    let small_fasta = grid.path("small.fa");
    write_fasta(&small_fasta, &small, 60, "\n");
    let small_path = small_fasta.display().to_string();
    let honest = [
        "submit",
        &small_path,
        "-p",
        "ACGTAC",
        "--job-id",
        "next",
        "--wait",
    ];
    let (next_done, idle) = cancel_then_run(&grid, &beats, "long", &honest);
    eprintln!(
        "search ({}): cancel → next job done {:.3} s; cancel → heartbeat without the task {:.3} s",
        if redis.is_some() { "redis" } else { "embedded" },
        next_done.as_secs_f64(),
        idle.as_secs_f64()
    );
    assert!(
        next_done < IDLE_BOUND,
        "the next job waited {next_done:?} after the cancel"
    );
    let count = grid.cli_ok(&["results", "next", "--format", "count"]);
    assert_eq!(
        crate::support::grid::parse_total(&count),
        naive_hits(&small, "ACGTAC", false).len() as u64
    );
}

#[test]
fn a_cancelled_search_chunk_stops_and_frees_the_worker() {
    search_cancel_frees_the_worker(None);
}

#[test]
fn on_redis_a_cancelled_search_chunk_stops_and_frees_the_worker() {
    let redis = RedisServer::start();
    search_cancel_frees_the_worker(Some(&redis));
}

#[test]
fn a_cancelled_julia_band_stops_and_frees_the_worker() {
    julia_cancel_frees_the_worker(None);
}

#[test]
fn on_redis_a_cancelled_julia_band_stops_and_frees_the_worker() {
    let redis = RedisServer::start();
    julia_cancel_frees_the_worker(Some(&redis));
}

#[test]
fn a_cancelled_particle_replica_stops_and_frees_the_worker() {
    particles_cancel_frees_the_worker(None);
}

#[test]
fn on_redis_a_cancelled_particle_replica_stops_and_frees_the_worker() {
    let redis = RedisServer::start();
    particles_cancel_frees_the_worker(Some(&redis));
}
