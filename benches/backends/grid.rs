//! End to end on a generated genome: the same `gridwatch submit --wait` timed against a local
//! grid (`gridwatch up`, master + workers) on the embedded backend and on Redis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::redis_server::RedisServer;

const PATTERN: &str = "AGGTCCAT";
const WORKERS: &str = "2";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One backend's run of the job.
struct Run {
    seconds: f64,
    matches: u64,
}

fn gridwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gridwatch"))
}

/// Generates a `size_bytes` genome in `scratch`, runs the job `runs` times on each backend
/// (interleaved, so a busy machine slows each alike; best time kept) and prints a table.
pub fn run(size_bytes: u64, runs: usize, scratch: &Path) {
    let genome = scratch.join("genome.fa");
    let generated = gridwatch()
        .args([
            "generate",
            "--size",
            &size_bytes.to_string(),
            "--records",
            "4",
        ])
        .arg("--out")
        .arg(&genome)
        .status()
        .expect("running gridwatch generate");
    assert!(generated.success(), "gridwatch generate failed");
    let file_mib = std::fs::metadata(&genome).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;

    let memory_only = RedisServer::start();
    let like_the_deployment = RedisServer::start_like_the_deployment();
    let contenders: [(&str, Option<String>); 3] = [
        ("embedded", None),
        ("redis", Some(memory_only.url())),
        ("redis+aof", Some(like_the_deployment.url())),
    ];
    let mut best: Vec<Option<Run>> = vec![None, None, None];
    for round in 0..runs {
        for (slot, (name, url)) in contenders.iter().enumerate() {
            let data_dir = scratch.join(format!("{name}-{round}"));
            let run = time_job(&genome, &data_dir, url.as_deref());
            if best[slot]
                .as_ref()
                .map_or(true, |b| run.seconds < b.seconds)
            {
                best[slot] = Some(run);
            }
        }
    }
    let best: Vec<Run> = best.into_iter().flatten().collect();
    for run in &best[1..] {
        assert_eq!(
            run.matches, best[0].matches,
            "the backends disagree on the match count"
        );
    }

    println!("end to end, {file_mib:.0} MiB FASTA, pattern {PATTERN}, {WORKERS} workers (gridwatch up), best of {runs}");
    println!(
        "{:<10} {:>9} {:>9} {:>10} {:>12}",
        "backend", "seconds", "MiB/s", "matches", "vs embedded"
    );
    for ((name, _), run) in contenders.iter().zip(&best) {
        let rate = file_mib / run.seconds;
        let ratio = run.seconds / best[0].seconds;
        println!(
            "{name:<10} {:>9.2} {rate:>9.1} {:>10} {ratio:>11.2}x",
            run.seconds, run.matches
        );
    }
    println!(
        "redis: memory only; redis+aof: appendonly yes, fsync every second (the shipped deployment)"
    );
}

/// Starts `gridwatch up` in `data_dir` and times one `submit --wait` of `genome`.
fn time_job(genome: &Path, data_dir: &Path, redis_url: Option<&str>) -> Run {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let mut up = gridwatch();
    up.args([
        "up",
        "--workers",
        WORKERS,
        "--listen",
        "127.0.0.1:0",
        "--http",
        "off",
    ])
    .arg("--data-dir")
    .arg(data_dir);
    if let Some(url) = redis_url {
        up.args(["--backend", url]);
    }
    let log = std::fs::File::create(data_dir.join("up.log")).expect("up log");
    let mut up = up
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting gridwatch up");
    let addr = wait_for_addr(&data_dir.join("master.addr"), &mut up);

    let started = Instant::now();
    let output = gridwatch()
        .arg("submit")
        .arg(genome)
        .args(["-p", PATTERN, "--wait", "--master", &addr])
        .output()
        .expect("running gridwatch submit");
    let seconds = started.elapsed().as_secs_f64();
    stop(&mut up);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Run {
        seconds,
        matches: total_line(&stdout),
    }
}

fn wait_for_addr(path: &PathBuf, up: &mut Child) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(addr) = std::fs::read_to_string(path) {
            if !addr.trim().is_empty() {
                return addr.trim().to_string();
            }
        }
        if let Ok(Some(status)) = up.try_wait() {
            panic!("gridwatch up exited at start ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "the master did not start in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM (up stops its children), then reap.
fn stop(up: &mut Child) {
    let _ = kill(Pid::from_raw(up.id() as i32), Signal::SIGTERM);
    let _ = up.wait();
}

fn total_line(count_output: &str) -> u64 {
    count_output
        .lines()
        .find(|line| line.starts_with("total"))
        .and_then(|line| line.split('\t').next_back())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total line in {count_output:?}"))
}
