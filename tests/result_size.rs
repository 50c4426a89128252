//! Results and specs of any size: a chunk whose result is larger than a frame is sent and stored
//! in parts, `results` streams a spec larger than a frame, and job listings and `/metrics` never
//! read specs, so a flood of `/metrics` requests with huge specs stored leaves the master small
//! and still serving.

use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid, Records};

const JOB_TIMEOUT: Duration = Duration::from_secs(300);

fn submit(grid: &Grid, file: &str, pattern: &str, job: &str, extra: &[&str]) {
    let mut args = vec!["submit", file, "-p", pattern, "--job-id", job];
    args.extend_from_slice(extra);
    grid.cli_ok(&args);
}

fn completed(grid: &Grid, job: &str) {
    let status = grid.wait_finished(job, JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
}

/// `count` chunks' worth of records with names of `name_len` characters and 40 bases each.
fn long_named_records(seed: u64, count: usize, name_len: usize) -> Records {
    let mut bases = Bases::new(seed);
    (0..count)
        .map(|i| {
            let name = format!("r{i}_{}", "n".repeat(name_len));
            (name, bases.take(40))
        })
        .collect()
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// `GET path`, read to the end; returns the status code.
fn http_get(addr: &str, path: &str) -> u16 {
    crate::support::http::request_with(addr, "GET", path, &[], "").status
}

#[test]
fn a_letter_on_a_long_run_of_itself_streams_its_result_in_parts() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    // 2 MiB of A in chunks of 1 MiB: each chunk's result lists a million hits, about 20 MB of
    // JSON, more than a 16 MiB frame carries.
    let len = 2 << 20;
    let records: Records = vec![("polyA".into(), vec![b'A'; len])];
    let path = grid.path("polya.fa");
    write_fasta(&path, &records, 80, "\n");
    let file = path.display().to_string();
    submit(&grid, &file, "A", "polya", &["--chunk-size", "1048576"]);
    completed(&grid, "polya");

    assert_eq!(parse_total(&grid.cli_ok(&["results", "polya"])), len as u64);
    let hits = parse_tsv(&grid.cli_ok(&["results", "polya", "--format", "tsv"]));
    assert_eq!(hits.len(), len);
    assert_eq!(hits, naive_hits(&records, "A", false));
}

#[test]
fn five_thousand_records_with_four_kilobyte_names_come_back_from_results() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    // The stored spec lists every record's name: about 20 MB, more than a frame carries.
    let records = long_named_records(5, 5000, 4000);
    let path = grid.path("names.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    submit(&grid, &file, "ACG", "names", &[]);
    completed(&grid, "names");

    let expected = naive_hits(&records, "ACG", false);
    assert!(expected.len() > 1000, "the fixture should have matches");
    let count = grid.cli_ok(&["results", "names"]);
    assert_eq!(parse_total(&count), expected.len() as u64);
    let tsv = grid.cli_ok(&["results", "names", "--format", "tsv"]);
    assert_eq!(parse_tsv(&tsv), expected);
    // Listings carry summaries, not specs.
    let jobs = grid.cli_ok(&["jobs", "--json"]);
    assert!(
        jobs.len() < 10_000,
        "jobs lists specs: {} bytes",
        jobs.len()
    );
}

#[test]
fn a_metrics_flood_with_huge_specs_stored_keeps_the_master_small_and_serving() {
    let mut grid = Grid::start(&[]);
    // Two jobs whose specs are about 20 MB each; no worker yet, so they stay queued.
    let big = long_named_records(7, 5000, 4000);
    let path = grid.path("big.fa");
    write_fasta(&path, &big, 60, "\n");
    let file = path.display().to_string();
    for job in ["big1", "big2"] {
        submit(&grid, &file, "ACG", job, &["--priority", "low"]);
    }
    let pid = grid.master.as_ref().expect("the master runs").pid();
    let http = grid.http_addr();
    assert_eq!(http_get(&http, "/metrics"), 200);
    let before = peak_rss_kib(pid);

    let flood: Vec<_> = (0..100)
        .map(|_| {
            let http = http.clone();
            std::thread::spawn(move || http_get(&http, "/metrics"))
        })
        .collect();
    // A normal job is served meanwhile.
    grid.start_worker("w1", 2);
    let mut bases = Bases::new(3);
    let small: Records = vec![("chr1".into(), bases.take(5000))];
    let small_path = grid.path("small.fa");
    write_fasta(&small_path, &small, 60, "\n");
    let small_file = small_path.display().to_string();
    submit(&grid, &small_file, "ACG", "small", &["--priority", "high"]);
    for request in flood {
        assert_eq!(request.join().expect("a flood request"), 200);
    }
    completed(&grid, "small");
    let expected = naive_hits(&small, "ACG", false).len() as u64;
    assert_eq!(parse_total(&grid.cli_ok(&["results", "small"])), expected);

    let after = peak_rss_kib(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 100,
        "the master's peak memory grew by {grown_mib} MiB during the flood ({before} KiB -> {after} KiB)"
    );
}
