//! The command line as a user meets it: `--master` pointed at the HTTP or the collector's port is
//! named as such, `results … | head` ends quietly with exit 0, `submit --wait` shows the job id
//! before it waits and puts it in its JSON, counts of one are singular, `--json` errors are JSON,
//! a cancelled job's results say it was cancelled, text is not taken for DNA, `up` names the flag
//! of each busy port, and an upload shows bytes, rate and ETA, and its failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::grid::{naive_hits, write_fasta, Bases, Grid};
use crate::support::{gridwatch_bin, wait_for, Proc};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn master_pointed_at_the_http_port_is_told_so() {
    let grid = Grid::start(&[]);
    let http = grid.http_addr();
    for command in [&["status", "some-job"][..], &["jobs"], &["workers"]] {
        let out = Command::new(gridwatch_bin())
            .args(command)
            .args(["--master", &http])
            .output()
            .expect("running gridwatch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{http} is an HTTP port; --master wants the protocol port (5000 by default)"
            )),
            "{command:?} names the HTTP port: {stderr}"
        );
        assert!(
            !stderr.contains("1213486160"),
            "no raw frame size: {stderr}"
        );
    }
}

#[test]
fn results_into_a_closed_pipe_end_quietly_with_exit_0() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    let fasta = grid.path("repeats.fa");
    // 40 000 hits as TSV: far more than a pipe holds, so the writer meets the closed end.
    write_fasta(&fasta, &[("r".into(), b"ACGT".repeat(40_000))], 60, "\n");
    let file = fasta.display().to_string();
    grid.cli_ok(&["submit", &file, "-p", "ACGT", "--job-id", "many", "--wait"]);
    let mut results = Command::new(gridwatch_bin())
        .args(["results", "many", "--format", "tsv", "--master", &grid.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running gridwatch results");
    let mut stdout = BufReader::new(results.stdout.take().expect("piped stdout"));
    let mut header = String::new();
    stdout
        .read_line(&mut header)
        .expect("reading the first line");
    assert!(header.starts_with("seqID\t"), "TSV header: {header}");
    drop(stdout); // as `head -1` does
    let out = results.wait_with_output().expect("results exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

#[test]
fn submit_wait_shows_the_job_id_before_waiting_and_in_its_json() {
    let mut grid = Grid::start(&[]);
    let records = vec![("chr1".to_string(), Bases::new(5).take(3_000))];
    let fasta = grid.path("small.fa");
    write_fasta(&fasta, &records, 70, "\n");
    let log = grid.path("submit.err");
    let args: Vec<String> = ["submit", &fasta.display().to_string(), "-p", "ACGT"]
        .into_iter()
        .chain(["--wait", "--json", "--master", &grid.addr])
        .map(String::from)
        .collect();
    // No worker yet: the job waits, and its id must already be on the screen.
    let mut submit = Proc::spawn_logged("submit", &args, &log);
    let job_id = wait_for("submit to print the job id", LIMIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        let line = text.lines().find(|l| l.starts_with("Job ID: "))?;
        Some(line.to_string())
    });
    assert!(job_id.ends_with(" (1 chunk)"), "singular chunk: {job_id}");
    let job_id = job_id["Job ID: ".len()..job_id.len() - " (1 chunk)".len()].to_string();
    assert!(submit.wait_exit(Duration::ZERO).is_none(), "submit waits");
    let status = grid.status(&job_id);
    assert_eq!(
        status["job"]["job_id"],
        job_id.as_str(),
        "status from another shell"
    );

    grid.start_worker("w1", 1);
    let exit = submit
        .wait_exit(LIMIT)
        .expect("submit finishes once a worker runs");
    assert!(exit.success(), "submit exit {exit}");
    drop(submit);
    // Proc sends stdout to /dev/null, so read the same JSON the way a script would.
    let out = grid.cli(&[
        "submit",
        &fasta.display().to_string(),
        "-p",
        "ACGT",
        "--wait",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON results");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = json["job_id"].as_str().expect("job_id in the JSON");
    assert!(
        stderr.contains(&format!("Job ID: {id} (1 chunk)")),
        "{stderr}"
    );
    assert_eq!(
        json["total"],
        naive_hits(&records, "ACGT", false).len() as u64
    );

    let jobs = grid.cli_ok(&["jobs"]);
    assert!(
        jobs.trim_end().ends_with("2 jobs, 1 active worker"),
        "counts agree in number: {jobs}"
    );
}

#[test]
fn monitoring_output_into_a_closed_pipe_ends_quietly() {
    let grid = Grid::start(&[]);
    for command in [
        &["workers", "--json"][..],
        &["workers"],
        &["alerts", "--json"],
        &["alerts"],
    ] {
        let mut child = Command::new(gridwatch_bin())
            .args(command)
            .args(["--master", &grid.addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running gridwatch");
        // Closed before the command has even reached the master, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("gridwatch exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{command:?}: {stderr}");
        assert!(
            out.status.success(),
            "{command:?}: exit {}: {stderr}",
            out.status
        );
    }
}

/// Every client command finds the master through `GRIDWATCH_MASTER` (none silently asks another
/// grid on the default port), and an unreachable master fails every command with the same exit
/// code and message.
#[test]
fn every_client_command_takes_the_master_from_one_definition() {
    let grid = Grid::start(&[]);
    let commands: [&[&str]; 4] = [
        &["jobs", "--json"],
        &["workers", "--json"],
        &["alerts", "--json"],
        &["genomes", "--json"],
    ];
    for command in commands {
        let out = Command::new(gridwatch_bin())
            .args(command)
            .env("GRIDWATCH_MASTER", &grid.addr)
            .env_remove("MASTER_HOST")
            .env_remove("MASTER_PORT")
            .output()
            .expect("running gridwatch");
        assert!(
            out.status.success(),
            "{command:?} with GRIDWATCH_MASTER={}: {}",
            grid.addr,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{command:?} prints JSON: {e}"));
    }
    // Nothing listens here, and nothing can while the test holds the port.
    let (_held, nowhere) = crate::support::refusing_address();
    let commands: [&[&str]; 5] = [
        &["status", "some-job"],
        &["jobs"],
        &["workers"],
        &["alerts"],
        &["cancel", "some-job"],
    ];
    for command in commands {
        let out = Command::new(gridwatch_bin())
            .args(command)
            .env("GRIDWATCH_MASTER", &nowhere)
            .output()
            .expect("running gridwatch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the master at {nowhere}")),
            "{command:?} names the address it tried: {stderr}"
        );
    }
}

/// A URL pasted where HOST:PORT belongs is named as such, by flag and by environment.
#[test]
fn a_url_for_the_master_is_named_as_the_mistake() {
    let out = Command::new(gridwatch_bin())
        .args(["status", "some-job", "--master", "http://127.0.0.1:8080"])
        .output()
        .expect("running gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HOST:PORT, not a URL"), "{stderr}");
    let out = Command::new(gridwatch_bin())
        .args(["workers"])
        .env("GRIDWATCH_MASTER", "https://grid.example:5000")
        .output()
        .expect("running gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not a URL: drop the `https://`"),
        "{stderr}"
    );
}

/// `jobs --kind` with a misspelt kind is refused, naming the known kinds, instead of listing
/// nothing as if there were no such jobs.
#[test]
fn jobs_with_an_unknown_kind_is_refused() {
    let out = Command::new(gridwatch_bin())
        .args(["jobs", "--kind", "juila", "--master", "127.0.0.1:9"])
        .output()
        .expect("running gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown job kind \"juila\"") && stderr.contains("julia"),
        "{stderr}"
    );
}

#[test]
fn a_client_pointed_at_the_collector_is_told_it_reached_a_collector() {
    let grid = Grid::start(&[]);
    let (_collector, collector) = crate::support::watchman_grid::spawn_collector(
        grid.dir.path(),
        "127.0.0.1:0",
        &grid.addr,
        &[],
        "embedded",
    );
    for command in [
        &["status", "some-job"][..],
        &["jobs"],
        &["workers"],
        &["alerts"],
    ] {
        let out = Command::new(gridwatch_bin())
            .args(command)
            .args(["--master", &collector])
            .output()
            .expect("running gridwatch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{collector} is a gridwatch collector, not the master"
            )) && stderr.contains("--master HOST:PORT"),
            "{command:?}: {stderr}"
        );
    }
    let out = Command::new(gridwatch_bin())
        .args(["workers", "--collector", &grid.addr])
        .output()
        .expect("running gridwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is the gridwatch master, not a collector"),
        "{stderr}"
    );
}

/// Runs a client command with `--json`; returns its exit code and its stdout as JSON.
fn json_of(grid: &Grid, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(gridwatch_bin())
        .args(args)
        .args(["--json", "--master", &grid.addr])
        .output()
        .expect("running gridwatch");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} --json prints JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code(), json)
}

#[test]
fn json_output_holds_for_errors_and_for_every_client_command() {
    let grid = Grid::start(&[]);
    let (code, json) = json_of(&grid, &["cancel", "no-such-job"]);
    assert_eq!(code, Some(2));
    assert!(
        json["error"].as_str().unwrap_or("").contains("no-such-job") && json["exit_code"] == 2,
        "{json}"
    );
    let (code, json) = json_of(&grid, &["genomes", "rm", "0123abcd"]);
    assert_eq!(code, Some(2), "{json}");
    assert!(
        json["error"].as_str().unwrap_or("").contains("0123abcd"),
        "{json}"
    );
    let out = Command::new(gridwatch_bin())
        .args(["health", "--json", "--master", &grid.addr])
        .output()
        .expect("running gridwatch");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health JSON");
    assert!(out.status.success());
    assert_eq!(json["status"], "ok", "{json}");
    let (_held, nowhere) = crate::support::refusing_address();
    let out = Command::new(gridwatch_bin())
        .args(["health", "--json", "--master", &nowhere])
        .output()
        .expect("running gridwatch");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health JSON");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("unhealthy"),
        "{json}"
    );
}

#[test]
fn a_cancelled_jobs_results_say_it_was_cancelled() {
    // No worker: the job waits in the queue until it is cancelled.
    let grid = Grid::start(&[]);
    grid.cli_ok(&[
        "submit", "julia", "--width", "8", "--height", "8", "--job-id", "gone",
    ]);
    grid.cli_ok(&["cancel", "gone"]);
    let out = grid.cli(&["results", "gone"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("job gone was cancelled") && !stderr.contains("ready when it completes"),
        "{stderr}"
    );
    let (_, _, body) =
        crate::support::http::request(&grid.http_addr(), "GET", "/jobs/gone/results", None, "");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("was cancelled"), "{body}");
}

#[test]
fn text_that_is_not_dna_is_refused_rather_than_searched() {
    let grid = Grid::start(&[]);
    let list = grid.path("shopping.txt");
    std::fs::write(
        &list,
        "milk\neggs\nbread\nolive oil\ncoffee\npotatoes\nlemons\n",
    )
    .expect("write list");
    let list = list.display().to_string();
    let out = grid.cli(&["submit", &list, "-p", "ACGT"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reads as text, not DNA"), "{stderr}");
    let out = Command::new(gridwatch_bin())
        .args(["search", &list, "-p", "ACGT"])
        .output()
        .expect("running gridwatch search");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reads as text, not DNA"), "{stderr}");
}

#[test]
fn up_names_the_flag_of_each_busy_port_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let master = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (master, http) = (
        master.local_addr().expect("addr").to_string(),
        http.local_addr().expect("addr").to_string(),
    );
    let data = dir.path().join("data");
    let out = Command::new(gridwatch_bin())
        .args(["up", "--workers", "1", "--listen", &master, "--http", &http])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("running gridwatch up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{master} is in use (the master's port"))
            && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{http} is in use (the dashboard's port"))
            && stderr.contains("--http"),
        "{stderr}"
    );
    assert!(!data.join("logs").exists(), "nothing was started");
}

/// Writes a FASTA file of about `mib` MiB of bases.
fn big_fasta(path: &std::path::Path, mib: usize) {
    use std::io::Write;
    let mut bases = Bases::new(7);
    let line: Vec<u8> = bases.take(1 << 20);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    file.write_all(b">big\n").expect("write");
    for _ in 0..mib {
        for row in line.chunks(64) {
            file.write_all(row).expect("write");
            file.write_all(b"\n").expect("write");
        }
    }
    file.flush().expect("flush");
}

#[test]
fn an_upload_shows_bytes_rate_and_eta_and_then_its_failure() {
    if !crate::support::tmux::Tmux::available() {
        crate::support::skip_without("tmux is not installed");
        return;
    }
    let mut grid = Grid::start(&[]);
    let file = grid.path("big.fa");
    big_fasta(&file, 256);
    let done = grid.path("submit.exit");
    let command = format!(
        "{} submit {} -p ACGTACGTACGT --job-id cut --master {}; echo $? > {}; sleep 600",
        gridwatch_bin().display(),
        file.display(),
        grid.addr,
        done.display()
    );
    let tmux = crate::support::tmux::Tmux::start("upload", 160, 20, &command);
    // Caught mid-upload, the master is stopped: the client's socket fills and the bar stays.
    let deadline = std::time::Instant::now() + LIMIT;
    while !tmux.screen().contains(" uploaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no upload bar: {}",
            tmux.screen()
        );
    }
    let master = grid.master.as_ref().expect("master running");
    master.signal(nix::sys::signal::Signal::SIGSTOP);
    let screen = wait_for("the bar to show bytes sent", LIMIT, || {
        let screen = tmux.screen();
        (screen.contains(" MiB uploaded") && screen.contains("MiB/s") && screen.contains("ETA"))
            .then_some(screen)
    });
    assert!(!screen.contains("0/0 chunks"), "{screen}");
    println!("{screen}");
    // The master dies mid-upload: the bar stays where it stopped, marked failed.
    grid.master.take().expect("master").kill9();
    let code = wait_for("submit to exit", LIMIT, || {
        std::fs::read_to_string(&done).ok()
    });
    assert_eq!(code.trim(), "1");
    let screen = tmux.screen();
    assert!(
        screen.contains("UPLOAD FAILED")
            && screen.contains("uploaded")
            && screen.contains("error:"),
        "{screen}"
    );
    assert!(
        !screen.contains("chunks"),
        "no chunk count for an upload: {screen}"
    );
    println!("{screen}");
    // The restarted master fails the cut-off upload; its status says so, not "N/0 chunks".
    grid.start_master();
    let status = grid.cli_ok(&["status", "cut"]);
    assert!(
        status.contains("Job Status: FAILED")
            && status.contains("Progress: the input never arrived whole")
            && status.contains("before the job ended: ")
            && !status.contains("/0 chunks"),
        "{status}"
    );
}
