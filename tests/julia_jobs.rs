//! Julia jobs end to end with real processes: every pixel of a grid job equals a reference loop
//! written here, apart from the kernel (sizes square and not, the one-more-point dimensions of
//! repeated addition, 1 band or many, a worker killed mid-job, the embedded backend and Redis);
//! the local command, the PNG and the HTTP API agree with it; bad parameters are one line and
//! exit code 2, and the master refuses a bad raw spec with an error frame.

use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::julia::{reference, Spec};
use crate::support::redis::RedisServer;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Parses `--format counts`: rows of tab-separated counts.
fn parse_counts(text: &str) -> (usize, usize, Vec<u32>) {
    let rows: Vec<Vec<u32>> = text
        .lines()
        .map(|line| {
            line.split('\t')
                .map(|n| n.parse().expect("a count"))
                .collect()
        })
        .collect();
    let width = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == width), "ragged rows");
    (width, rows.len(), rows.concat())
}

/// Submits `spec` cut into `bands` and waits; returns the `--json` summary and the counts.
fn run_on_grid(
    grid: &Grid,
    job: &str,
    spec: Spec,
    bands: Option<u32>,
) -> (serde_json::Value, String) {
    let mut args: Vec<String> = vec!["submit".into(), "julia".into()];
    args.extend(spec.args());
    if let Some(bands) = bands {
        args.extend(["--bands".into(), bands.to_string()]);
    }
    args.extend([
        "--job-id".into(),
        job.into(),
        "--wait".into(),
        "--json".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&args)).expect("submit --wait --json prints JSON");
    let counts = grid.cli_ok(&["results", job, "--format", "counts"]);
    (summary, counts)
}

/// Checks a job's summary and counts against the reference loop.
fn assert_matches_reference(summary: &serde_json::Value, counts: &str, spec: Spec, job: &str) {
    let (width, height, expected) = reference(spec);
    let (got_width, got_height, got) = parse_counts(counts);
    assert_eq!(
        (got_width, got_height),
        (width, height),
        "{job}: dimensions"
    );
    let differing = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{job}: {differing} pixels differ");
    assert_eq!(got.len(), expected.len());
    assert_eq!(summary["job_id"], job);
    assert_eq!(summary["kind"], "julia");
    assert_eq!(summary["width"], width as u64);
    assert_eq!(summary["height"], height as u64);
    assert_eq!(summary["iterations"], spec.iterations);
    let sum: u64 = expected.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(summary["iterations_sum"], sum);
    assert!(summary["seconds"].as_f64().is_some_and(|s| s >= 0.0));
    assert!(summary["tasks"].as_u64().is_some_and(|t| t >= 1));
}

#[test]
fn every_pixel_matches_a_reference_loop_on_small_sizes() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    let sizes = [
        (1, 1, 50),
        (2, 3, 50),
        (16, 16, 300),
        (37, 11, 120),
        (11, 45, 80),
    ];
    for (i, (width, height, iterations)) in sizes.into_iter().enumerate() {
        let spec = Spec::classic(width, height, iterations);
        let job = format!("small-{i}");
        let (summary, counts) = run_on_grid(&grid, &job, spec, None);
        assert_matches_reference(&summary, &counts, spec, &job);
    }
}

#[test]
fn the_extra_point_of_repeated_addition_is_in_the_reported_dimensions() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    // Find sizes whose axes get one point more than asked, as the reference builds them.
    let extra = |n: u32| reference(Spec::classic(n, 1, 1)).0 == n as usize + 1;
    let width = (2..500)
        .find(|&n| extra(n))
        .expect("a width with one more column");
    let height = (2..500)
        .find(|&n| reference(Spec::classic(1, n, 1)).1 == n as usize + 1)
        .expect("a height with one more row");
    let spec = Spec::classic(width, height, 100);
    let (summary, counts) = run_on_grid(&grid, "extra", spec, Some(3));
    assert_eq!(summary["width"], width + 1, "one more column than asked");
    assert_eq!(summary["height"], height + 1, "one more row than asked");
    assert_matches_reference(&summary, &counts, spec, "extra");
}

#[test]
fn one_band_or_many_give_the_same_pixels() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 1);
    let spec = Spec::classic(48, 30, 200);
    let rows = reference(spec).1 as u32;
    let mut outputs = Vec::new();
    for bands in [1, 4, 7, rows] {
        let job = format!("bands-{bands}");
        let (summary, counts) = run_on_grid(&grid, &job, spec, Some(bands));
        assert_eq!(summary["tasks"], bands);
        assert_matches_reference(&summary, &counts, spec, &job);
        outputs.push(counts);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

/// Heavy enough that a worker holds leases for a second or more: with c = 0 the unit disc is
/// the set itself, and each of its pixels runs every iteration.
fn heavy_spec() -> Spec {
    Spec {
        width: 160,
        height: 160,
        iterations: 40_000,
        c: (0.0, 0.0),
    }
}

/// Submits the heavy job on w1 alone, kill -9s w1 once a first band is stored, then lets w2
/// finish; every pixel must still equal the reference.
fn kill_a_worker_mid_job(grid: &mut Grid) {
    let spec = heavy_spec();
    let mut args = vec!["submit".to_string(), "julia".into()];
    args.extend(spec.args());
    args.extend([
        "--bands".into(),
        "40".into(),
        "--job-id".into(),
        "k9".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    grid.finish_after_killing_w1("k9", &args, JOB_TIMEOUT);
    let summary: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["results", "k9", "--json"])).expect("JSON summary");
    let counts = grid.cli_ok(&["results", "k9", "--format", "counts"]);
    assert_matches_reference(&summary, &counts, spec, "k9");
    assert!(
        grid.master_logs()
            .contains("expired leases returned to the queue"),
        "w1's leases should have been reclaimed after the visibility timeout"
    );
}

#[test]
fn a_worker_killed_mid_job_loses_no_pixel() {
    let mut grid = Grid::start(&["--visibility-timeout", "1"]);
    kill_a_worker_mid_job(&mut grid);
}

#[test]
fn on_redis_a_worker_killed_mid_job_loses_no_pixel() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &["--visibility-timeout", "1"]);
    kill_a_worker_mid_job(&mut grid);
    // A second job on the same Redis, with two workers: the same pixels as the reference.
    grid.start_worker("w3", 1);
    let spec = Spec::classic(29, 21, 150);
    let (summary, counts) = run_on_grid(&grid, "redis-small", spec, Some(5));
    assert_matches_reference(&summary, &counts, spec, "redis-small");
}

/// `GET path` over HTTP/1.1; returns the status, the content type and the body.
fn http_get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    crate::support::http::request(addr, "GET", path, None, "")
}

fn png_dimensions(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .expect("a valid PNG");
    (reader.info().width, reader.info().height)
}

#[test]
fn local_command_png_and_http_agree_with_the_grid() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    let spec = Spec::classic(53, 29, 300);
    let (summary, grid_counts) = run_on_grid(&grid, "agree", spec, None);
    assert_matches_reference(&summary, &grid_counts, spec, "agree");
    let (width, height, _) = reference(spec);

    let mut local = vec!["julia".to_string()];
    local.extend(spec.args());
    let run_local = |extra: &[&str]| {
        let output = std::process::Command::new(crate::support::gridwatch_bin())
            .args(&local)
            .args(extra)
            .output()
            .expect("running gridwatch julia");
        assert!(output.status.success(), "{output:?}");
        output.stdout
    };
    let local_counts = run_local(&["--format", "counts"]);
    assert_eq!(String::from_utf8_lossy(&local_counts), grid_counts);
    let local_json: serde_json::Value =
        serde_json::from_slice(&run_local(&["--json"])).expect("JSON");
    assert_eq!(local_json["iterations_sum"], summary["iterations_sum"]);
    assert_eq!(local_json["width"], summary["width"]);

    let png_path = grid.path("agree.png");
    let png_arg = png_path.display().to_string();
    grid.cli_ok(&["results", "agree", "--format", "png", "--out", &png_arg]);
    let grid_png = std::fs::read(&png_path).expect("the PNG file");
    assert_eq!(png_dimensions(&grid_png), (width as u32, height as u32));
    let local_png_path = grid.path("local.png");
    run_local(&[
        "--format",
        "png",
        "--out",
        &local_png_path.display().to_string(),
    ]);
    assert_eq!(std::fs::read(&local_png_path).expect("local PNG"), grid_png);

    let http = grid.http_addr();
    let (status, content_type, body) = http_get(&http, "/jobs/agree/image.png");
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(body, grid_png, "the dashboard's image is the results' PNG");
    let (status, _, body) = http_get(&http, "/jobs/agree");
    assert_eq!(status, 200);
    let job: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(job["job"]["kind"], "julia");
    assert!(job["job"]["summary"]
        .as_str()
        .is_some_and(|s| s.starts_with(&format!("{width}×{height}"))));
    assert_eq!(job["result"]["iterations_sum"], summary["iterations_sum"]);
    let (_, _, metrics) = http_get(&http, "/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("gridwatch_kind_jobs{kind=\"julia\"} 1"),
        "{metrics}"
    );
    let jobs = grid.cli_ok(&["jobs"]);
    assert!(
        jobs.contains("julia") && jobs.contains(&format!("{width}×{height}")),
        "{jobs}"
    );
}

/// Runs `gridwatch ARGS` (no master needed: the client checks first) and expects exit code 2
/// with exactly one line on stderr.
fn assert_one_line_usage_error(args: &[&str], grid: Option<&Grid>) -> String {
    let output = match grid {
        Some(grid) => grid.cli(args),
        None => {
            let mut command = std::process::Command::new(crate::support::gridwatch_bin());
            command.args(args);
            if args.first() == Some(&"submit") {
                // Nobody listens there: the client must refuse before it connects.
                command.args(["--master", "127.0.0.1:1"]);
            }
            command.output().expect("running gridwatch")
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn bad_parameters_are_one_line_with_exit_code_2() {
    let cases: [(&[&str], &str); 8] = [
        (&["--width", "0"], "width must be between 1 and 8192, got 0"),
        (
            &["--width", "-3"],
            "width must be between 1 and 8192, got -3",
        ),
        (
            &["--width", "9000"],
            "width must be between 1 and 8192, got 9000",
        ),
        (
            &["--width", "10", "--height", "0"],
            "height must be between",
        ),
        (
            &["--width", "10", "--iterations", "0"],
            "iterations must be between",
        ),
        (
            &["--width", "10", "--c=nan,0"],
            "c_re must be a finite number, got NaN",
        ),
        (
            &["--width", "10", "--region=1,-1,-1,1"],
            "x1 (1) must be less than x2",
        ),
        (
            &["--width", "10", "--bands", "500"],
            "bands must be between 1 and",
        ),
    ];
    for (flags, expected) in cases {
        for command in [&["submit", "julia"][..], &["julia"][..]] {
            let args: Vec<&str> = command.iter().chain(flags).copied().collect();
            let stderr = assert_one_line_usage_error(&args, None);
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn the_master_refuses_a_bad_raw_spec_with_an_error_frame() {
    // A small frame limit: the master, not the client, finds 2 bands too few for 1000 × 1000.
    let grid = Grid::start(&["--max-frame", "65536"]);
    let stderr = assert_one_line_usage_error(
        &["submit", "julia", "--width", "1000", "--bands", "2"],
        Some(&grid),
    );
    assert!(stderr.contains("bands must be between"), "{stderr}");

    let bad_specs = [
        serde_json::json!({ "width": 0 }),
        serde_json::json!({ "width": -4 }),
        serde_json::json!({ "width": 9000 }),
        serde_json::json!({ "width": 10, "c": [null, 0.0] }),
        serde_json::json!({ "width": 10, "iterations": 0 }),
        serde_json::json!({ "height": 10 }),
    ];
    let specs: Vec<(&str, serde_json::Value)> = bad_specs
        .iter()
        .map(|spec| ("julia", spec.clone()))
        .collect();
    for (spec, message) in bad_specs.iter().zip(grid.raw_refusals(&specs)) {
        assert!(message.contains("julia"), "{spec}: {message}");
        assert_eq!(message.lines().count(), 1, "{spec}: {message}");
    }
    // Nothing was stored, and the master still serves.
    let jobs: serde_json::Value =
        serde_json::from_str(&grid.cli_ok(&["jobs", "--json"])).expect("JSON");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}

/// A Julia job's running total is the sum of its iteration counts, and every view calls it
/// that (never "matches"); `--format count` names its `counts`, and a PNG into a pipe that
/// closes early ends quietly.
#[test]
fn a_julia_job_names_its_figure_iterations_everywhere() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    let spec = Spec::classic(16, 16, 300);
    let (summary, counts) = run_on_grid(&grid, "named", spec, Some(1));
    let (_, _, expected) = reference(spec);
    let sum: u64 = expected.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(summary["iterations_sum"], sum);

    let status = grid.cli_ok(&["status", "named"]);
    assert!(status.contains(&format!("Iterations: {sum}\n")), "{status}");
    assert!(!status.contains("atches"), "{status}");
    let jobs = grid.cli_ok(&["jobs"]);
    let row = jobs
        .lines()
        .find(|l| l.starts_with("named "))
        .expect("a row");
    assert!(row.contains(&format!("{sum} iterations")), "{jobs}");
    assert!(!jobs.contains("MATCHES"), "{jobs}");
    let text = grid.cli_ok(&["results", "named"]);
    assert!(
        text.contains(" in 1 task\n"),
        "one band is one task: {text}"
    );

    let http = grid.http_addr();
    let (_, _, stats) = http_get(&http, "/stats");
    let stats: serde_json::Value = serde_json::from_slice(&stats).expect("stats JSON");
    assert_eq!(stats["figure_by_kind"]["julia"], "iterations");
    assert_eq!(stats["matches_by_kind"]["julia"], sum);
    assert_eq!(stats["matches"], 0, "iterations are not matches: {stats}");

    // `count` for `counts`: one name for the same figure in every kind.
    assert_eq!(
        grid.cli_ok(&["results", "named", "--format", "count"]),
        counts
    );

    // A PNG piped into a reader that stops after one byte: no error, exit 0.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} results named --format png --master {} | head -c 1 >/dev/null",
            crate::support::gridwatch_bin().display(),
            grid.addr
        ))
        .output()
        .expect("sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
}
