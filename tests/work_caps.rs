//! Per-job work caps: a Julia job over its iteration cap or a particle job over its disc-step cap
//! is refused at every way in (a protocol submit, a batch file, `POST /jobs`) with a message naming the
//! figure, the cap and the flag that raises it; nothing is stored; an honest job under the cap
//! runs exactly.

use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::julia::{reference, Spec};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn job_count(grid: &Grid) -> usize {
    let jobs: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["jobs", "--json"])).expect("JSON");
    jobs["jobs"].as_array().map_or(usize::MAX, Vec::len)
}

#[test]
fn over_cap_jobs_are_refused_with_the_figure_the_cap_and_the_flag() {
    let mut grid = Grid::start(&[]);
    // The reported attacks, against the default caps (10^11 iterations, 10^12 disc-steps).
    let messages = grid.raw_refusals(&[
        (
            "julia",
            serde_json::json!({ "width": 8192, "iterations": 1_000_000 }),
        ),
        (
            "particles",
            serde_json::json!({
                "particles": 1_000_000, "steps": 20_000, "seed": 1, "replicas": 100_000
            }),
        ),
    ]);
    // Repeated addition gives 8192 asked columns one more or not; the work is one of the two.
    let julia_work = |side: u64| side * side * 1_000_000;
    assert!(
        messages[0].contains(&format!("= {} iterations", julia_work(8192)))
            || messages[0].contains(&format!("= {} iterations", julia_work(8193))),
        "{}",
        messages[0]
    );
    assert!(
        messages[0].contains("cap of 100000000000"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("--max-julia-work"), "{}", messages[0]);
    let particle_work: u64 = 100_000 * 1_000_000 * 20_000;
    assert!(
        messages[1].contains(&format!("= {particle_work} disc-steps")),
        "{}",
        messages[1]
    );
    assert!(
        messages[1].contains("cap of 1000000000000"),
        "{}",
        messages[1]
    );
    assert!(
        messages[1].contains("--max-particle-work"),
        "{}",
        messages[1]
    );
    assert_eq!(job_count(&grid), 0, "a refused job was stored");

    // The client's own submit goes the same way and fails with the master's message.
    let stderr = grid.cli_refused(&[
        "submit",
        "julia",
        "--width",
        "8192",
        "--iterations",
        "1000000",
    ]);
    assert!(stderr.contains("--max-julia-work"), "{stderr}");

    // A batch file with one over-cap row among honest ones loads nothing.
    let csv = grid.path("renders.csv");
    std::fs::write(
        &csv,
        "algoritmo,width,height,iteraciones,prioridad\n\
         Secuencial,20,20,50,1\n\
         Numpy,8192,8192,1000000,2\n",
    )
    .expect("writing the batch file");
    let output = grid.cli(&["load", csv.to_str().expect("utf-8 path")]);
    assert!(!output.status.success(), "an over-cap batch was loaded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-julia-work"), "{stderr}");
    assert!(stderr.contains("nothing was loaded"), "{stderr}");
    let json = grid.path("ensemble.json");
    std::fs::write(
        &json,
        r#"{"metadata": {}, "tasks": [{"task_id": "big-ensemble", "algorithm": "python",
            "parameters": {"num_particles": 1000000, "num_steps": 20000, "seed": 1,
                           "replicas": 100000},
            "priority": "high"}]}"#,
    )
    .expect("writing the batch file");
    let output = grid.cli(&["load", json.to_str().expect("utf-8 path")]);
    assert!(!output.status.success(), "an over-cap batch was loaded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-particle-work"), "{stderr}");
    // And over HTTP, the same batch text.
    let (status, _, body) = crate::support::http::request(
        &grid.http_addr(),
        "POST",
        "/jobs",
        None,
        r#"{"task_id": "big-render", "algorithm": "julia",
            "parameters": {"width": 8192, "height": 8192, "iterations": 1000000}}"#,
    );
    let body = String::from_utf8_lossy(&body);
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(body.contains("--max-julia-work"), "{body}");
    assert_eq!(job_count(&grid), 0, "a refused batch stored a job");

    // An honest job still runs, exactly.
    grid.start_worker("w1", 2);
    let spec = Spec::classic(33, 21, 120);
    let mut args: Vec<String> = vec!["submit".into(), "julia".into()];
    args.extend(spec.args());
    args.extend(["--job-id".into(), "honest".into(), "--wait".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    grid.cli_ok(&args);
    let status = grid.wait_finished("honest", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let counts = grid.cli_ok(&["results", "honest", "--format", "counts"]);
    let got: Vec<u32> = counts
        .split(['\t', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a count"))
        .collect();
    assert_eq!(got, reference(spec).2);
}

#[test]
fn a_lowered_cap_refuses_just_above_it_and_accepts_just_below() {
    let mut grid = Grid::start(&[
        "--max-julia-work",
        "1000000",
        "--max-particle-work",
        "60000",
    ]);
    // 100 columns and rows by repeated addition, as the reference builds them.
    let (width, height, _) = reference(Spec::classic(100, 100, 1));
    let work = (width * height) as u64 * 101;
    assert!(work > 1_000_000);
    let messages = grid.raw_refusals(&[
        (
            "julia",
            serde_json::json!({ "width": 100, "iterations": 101 }),
        ),
        (
            "particles",
            serde_json::json!({ "particles": 100, "steps": 301, "seed": 7, "replicas": 2 }),
        ),
    ]);
    assert!(
        messages[0].contains(&format!(
            "{width}×{height} pixels × 101 iterations = {work} iterations exceeds the master's \
             cap of 1000000 per job (--max-julia-work)"
        )),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains(
            "2 replicas × 100 discs × 301 steps = 60200 disc-steps exceeds the master's cap of \
             60000 per job (--max-particle-work)"
        ),
        "{}",
        messages[1]
    );
    assert_eq!(job_count(&grid), 0);

    // Exactly at the cap is allowed: 2 × 100 × 300 = 60,000; it runs and matches a lone
    // local run of each seed.
    grid.start_worker("w1", 2);
    let args = [
        "submit",
        "particles",
        "--particles",
        "100",
        "--steps",
        "300",
        "--seed",
        "7",
        "--replicas",
        "2",
        "--job-id",
        "at-cap",
        "--wait",
        "--json",
    ];
    let grid_result: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&args)).expect("submit --wait --json prints JSON");
    for (i, seed) in [7u64, 8].into_iter().enumerate() {
        let output = std::process::Command::new(crate::support::gridwatch_bin())
            .args([
                "particles",
                "--json",
                "--particles",
                "100",
                "--steps",
                "300",
            ])
            .args(["--seed", &seed.to_string()])
            .output()
            .expect("running gridwatch particles");
        assert!(output.status.success(), "{output:?}");
        let lone: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("particles --json prints JSON");
        let replica = &grid_result["replicas"][i];
        assert_eq!(replica["seed"], seed);
        assert_eq!(replica["collisions"], lone["replicas"][0]["collisions"]);
        assert_eq!(replica["wall_bounces"], lone["replicas"][0]["wall_bounces"]);
    }
}
