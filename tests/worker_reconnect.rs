//! A worker whose link is cut while it leases (the backend hands it tasks whose reply never
//! arrives) and that then reconnects returns every task the backend counts as its own but it
//! does not hold: nothing waits for the lease timeout. Run on Redis (the worker reads Redis
//! directly) and on the embedded backend (the worker leases through the master), each with a
//! real cut of the worker's link through a proxy (the cut falls on the first reply carrying
//! tasks, so it is that lease's reply that is lost), a second worker beside it, and the lease timeout
//! far above the time the job may take.

use std::time::{Duration, Instant};

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid};
use crate::support::proxy::CuttableProxy;
use crate::support::redis::RedisServer;
use crate::support::{wait_for, Proc};

/// The lease timeout: a task lost with the link would hold the job up this long.
const LEASE_TIMEOUT_SECS: &str = "120";
/// How long a step may take on a loaded machine.
const GENEROUS: Duration = Duration::from_secs(60);

/// Starts worker `id` with `flags`, logging to the grid's directory.
fn start_worker(grid: &Grid, id: &str, flags: &[String]) -> Proc {
    let mut args: Vec<String> = ["worker", "--id", id, "--threads", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(flags.iter().cloned());
    Proc::spawn_logged(id, &args, &grid.path(&format!("{id}.log")))
}

/// Tasks the worker logged it returned after reconnecting.
fn returned_tasks(log: &str) -> u64 {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["fields"]["message"]
                == "returned tasks leased under this id that never reached this worker"
        })
        .filter_map(|line| line["fields"]["tasks"].as_u64())
        .sum()
}

/// Arms `proxy` to cut the link of the idle worker `cut` at the first reply carrying tasks and
/// submits a job: the backend grants that lease but the reply, carrying the tasks' bytes, is
/// lost, and every reply after it too. Then `steady` starts beside it, the link comes back, and
/// the job must end exact long before the lease timeout, the cut worker having returned what it
/// never received.
fn a_cut_worker_returns_the_tasks_it_never_received(
    grid: &Grid,
    proxy: &CuttableProxy,
    cut_flags: &[String],
    steady_flags: &[String],
) {
    let _cut = start_worker(grid, "cut", cut_flags);
    let cut_log = || std::fs::read_to_string(grid.path("cut.log")).unwrap_or_default();
    wait_for("the cut worker to start", GENEROUS, || {
        cut_log().contains("worker started").then_some(())
    });
    let records = vec![("chr1".to_string(), Bases::new(41).take(400_000))];
    let fasta = grid.path("genome.fa");
    write_fasta(&fasta, &records, 60, "\n");
    let fasta = fasta.display().to_string();
    // A lease reply carries its tasks: through the master their 2000 bases each; from Redis
    // their specs, each with the job's 200-base pattern (taken from the genome so it matches),
    // the bases being read after the lease. Every other reply to a worker (a heartbeat's
    // answer, an empty lease, a script's hash, one task's range of the stored genome, a wake-up
    // read naming one new task) is smaller.
    let pattern = String::from_utf8(records[0].1[123_456..123_656].to_vec()).expect("ASCII bases");
    proxy.cut_at_reply_over(1500);
    grid.cli_ok(&[
        "submit",
        &fasta,
        "-p",
        &pattern,
        "--chunk-size",
        "2000",
        "--job-id",
        "cut-job",
    ]);
    wait_for("a lease reply to be lost in the cut", GENEROUS * 2, || {
        proxy.is_cut().then_some(())
    });
    let _steady = start_worker(grid, "steady", steady_flags);
    proxy.restore();
    let restored = Instant::now();

    let status = grid.wait_finished("cut-job", GENEROUS * 2);
    let took = restored.elapsed();
    println!(
        "job finished {:.1} s after the link came back",
        took.as_secs_f64()
    );
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let lease_timeout = Duration::from_secs(LEASE_TIMEOUT_SECS.parse().expect("seconds"));
    assert!(
        took < lease_timeout / 2,
        "a task waited for the lease timeout: {took:?}"
    );
    let log = cut_log();
    assert!(
        returned_tasks(&log) > 0,
        "the cut worker returned no task it never received:\n{log}"
    );
    let out = grid.cli_ok(&["results", "cut-job"]);
    assert_eq!(
        parse_total(&out),
        naive_hits(&records, &pattern, false).len() as u64,
        "the job's count"
    );
}

#[test]
fn a_worker_reading_redis_returns_the_tasks_lost_in_a_cut_when_it_reconnects() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grid = Grid::start(&[
        "--backend",
        &url,
        "--visibility-timeout",
        LEASE_TIMEOUT_SECS,
    ]);
    let proxy = CuttableProxy::start(&format!("127.0.0.1:{}", redis.port()));
    let through_proxy = format!("redis://127.0.0.1:{}/0", proxy.port());
    let flags = |backend: &str| -> Vec<String> {
        ["--master", &grid.addr, "--backend", backend]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    a_cut_worker_returns_the_tasks_it_never_received(
        &grid,
        &proxy,
        &flags(&through_proxy),
        &flags(&url),
    );
}

#[test]
fn a_worker_leasing_through_the_master_returns_the_tasks_lost_in_a_cut_when_it_reconnects() {
    let grid = Grid::start(&["--visibility-timeout", LEASE_TIMEOUT_SECS]);
    let proxy = CuttableProxy::start(&grid.addr);
    let through_proxy = format!("127.0.0.1:{}", proxy.port());
    let flags = |master: &str| -> Vec<String> {
        ["--master", master].iter().map(|s| s.to_string()).collect()
    };
    a_cut_worker_returns_the_tasks_it_never_received(
        &grid,
        &proxy,
        &flags(&through_proxy),
        &flags(&grid.addr),
    );
}
