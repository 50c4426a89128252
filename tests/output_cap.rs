//! Answers of any size: pattern `N` matches every base, so a genome of some MiB holds millions of
//! positions. Past the master's `--max-positions` the job fails with a message naming the cap
//! and how to raise it; submitted with `--count-only`, it stores counts only and returns the
//! exact count, with the worker, the master and the client staying small. Under the cap, a job
//! of millions of positions prints them as TSV while they arrive, in a fraction of their size.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::grid::{parse_total, write_fasta, Bases, Grid, Records};
use crate::support::iupac::accepts;

const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// Bound on every process's peak resident memory during the `N` jobs.
const PEAK_RSS_BOUND_KIB: u64 = 512 * 1024;

/// Peak resident memory of a process (`VmHWM`), in KiB; `None` once it is gone.
fn read_peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    read_peak_kib(pid).expect("VmHWM in /proc/PID/status")
}

/// Samples a client's peak resident memory until it exits, which it must do successfully;
/// returns the last peak read (KiB).
fn peak_until_exit(child: &mut std::process::Child, args: &[&str]) -> u64 {
    let mut peak = 0;
    loop {
        peak = peak.max(read_peak_kib(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().expect("waiting for the client") {
            assert!(status.success(), "client {args:?} failed: {status}");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a client command to completion, sampling its peak resident memory while it lives;
/// returns its stdout and the last peak read (KiB).
fn client_with_peak(grid: &Grid, args: &[&str]) -> (String, u64) {
    let out = grid.path("client.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .arg("--master")
        .arg(&grid.addr)
        .stdout(std::fs::File::create(&out).expect("client output file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running the client");
    let peak = peak_until_exit(&mut child, args);
    (std::fs::read_to_string(&out).expect("client output"), peak)
}

#[test]
fn an_n_job_past_the_position_cap_fails_naming_it_and_count_only_counts_exactly() {
    let mut grid = Grid::start(&["--max-positions", "300000", "--max-attempts", "1"]);
    grid.start_worker("w1", 2);
    // 6 MiB in two records: pattern N matches every one of these bases.
    let mut bases = Bases::new(19);
    let records: Records = vec![
        ("chr1".into(), bases.take(4 << 20)),
        ("chr2".into(), bases.take(2 << 20)),
    ];
    let expected = records
        .iter()
        .flat_map(|(_, seq)| seq.iter())
        .filter(|&&base| accepts(b'N', base))
        .count() as u64;
    assert_eq!(expected, 6 << 20, "N accepts every base");
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    let chunk = ["--chunk-size", "1048576"];

    let mut args = vec!["submit", &file, "-p", "N", "--job-id", "capped"];
    args.extend_from_slice(&chunk);
    grid.cli_ok(&args);
    let status = grid.wait_finished("capped", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let error = status["job"]["error"].as_str().unwrap_or_default();
    for needed in ["cap of 300000", "--max-positions", "--count-only"] {
        assert!(error.contains(needed), "{needed:?} not in {error:?}");
    }

    let mut args = vec!["submit", &file, "-p", "N", "--job-id", "counted"];
    args.extend_from_slice(&chunk);
    args.push("--count-only");
    grid.cli_ok(&args);
    let status = grid.wait_finished("counted", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    assert_eq!(
        status["job"]["partial_results"]["matches_found"], expected,
        "{status}"
    );
    let (count, client_peak) = client_with_peak(&grid, &["results", "counted"]);
    assert_eq!(parse_total(&count), expected);
    let (json, json_peak) = client_with_peak(&grid, &["results", "counted", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("results JSON");
    assert_eq!(json["hits"].as_array().map(Vec::len), Some(0), "count only");

    let worker = peak_rss_kib(grid.worker("w1").pid());
    let master = peak_rss_kib(grid.master.as_ref().expect("the master runs").pid());
    let client = client_peak.max(json_peak);
    eprintln!("peak RSS: worker {worker} KiB, master {master} KiB, client {client} KiB");
    for (who, peak) in [("worker", worker), ("master", master), ("client", client)] {
        assert!(
            peak < PEAK_RSS_BOUND_KIB,
            "{who} peaked at {peak} KiB, over {PEAK_RSS_BOUND_KIB} KiB"
        );
    }
}

/// Every chunk stays under the cap, but the job's total passes it: the job fails naming the cap.
fn a_job_whose_chunks_together_pass_the_cap_fails(grid: &mut Grid) {
    grid.start_worker("w1", 2);
    let mut bases = Bases::new(29);
    let records: Records = vec![("chr1".into(), bases.take(2 << 20))];
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    // Chunks of 256 KiB: each finds 262,144 positions, under the cap of 300,000.
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "N",
        "--chunk-size",
        "262144",
        "--job-id",
        "summed",
    ]);
    let status = grid.wait_finished("summed", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "failed", "{status}");
    let error = status["job"]["error"].as_str().unwrap_or_default();
    for needed in ["more than 300000", "--max-positions", "--count-only"] {
        assert!(error.contains(needed), "{needed:?} not in {error:?}");
    }
    // The honest count-only job of the same genome completes exactly.
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "N",
        "--chunk-size",
        "262144",
        "--count-only",
        "--job-id",
        "summed-count",
    ]);
    let status = grid.wait_finished("summed-count", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = records[0].1.iter().filter(|&&b| accepts(b'N', b)).count() as u64;
    assert_eq!(
        parse_total(&grid.cli_ok(&["results", "summed-count"])),
        expected
    );
}

#[test]
fn a_job_whose_chunks_together_pass_the_cap_fails_on_the_embedded_backend() {
    let mut grid = Grid::start(&["--max-positions", "300000", "--max-attempts", "1"]);
    a_job_whose_chunks_together_pass_the_cap_fails(&mut grid);
}

#[test]
fn a_job_whose_chunks_together_pass_the_cap_fails_on_redis() {
    let redis = crate::support::redis::RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(
        Some(&url),
        &["--max-positions", "300000", "--max-attempts", "1"],
    );
    a_job_whose_chunks_together_pass_the_cap_fails(&mut grid);
}

/// What a client printed, seen through a hash as it streamed (never held whole).
struct Streamed {
    hash: blake3::Hash,
    lines: u64,
    bytes: u64,
    /// The client's peak resident memory, KiB.
    peak_kib: u64,
}

/// Runs a client command, hashing its stdout line by line as it comes and sampling its peak
/// resident memory while it lives.
fn client_streamed(grid: &Grid, args: &[&str]) -> Streamed {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .arg("--master")
        .arg(&grid.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running the client");
    let stdout = child.stdout.take().expect("client stdout");
    let reader = std::thread::spawn(move || {
        let mut hasher = blake3::Hasher::new();
        let (mut lines, mut bytes) = (0u64, 0u64);
        let mut reader = BufReader::with_capacity(1 << 16, stdout);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .expect("reading the client")
            > 0
        {
            hasher.update(&line);
            lines += 1;
            bytes += line.len() as u64;
            line.clear();
        }
        (hasher.finalize(), lines, bytes)
    });
    let peak = peak_until_exit(&mut child, args);
    let (hash, lines, bytes) = reader.join().expect("the reading thread");
    Streamed {
        hash,
        lines,
        bytes,
        peak_kib: peak,
    }
}

/// The TSV a search for the one-letter pattern `letter` must print, made by looking at every base
/// (the matched column is the base itself: for `N`, whatever base is there).
fn naive_tsv_of_letter(records: &Records, letter: u8) -> (blake3::Hash, u64) {
    let mut hasher = blake3::Hasher::new();
    let mut lines = 1u64;
    hasher.update(b"seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n");
    let name = letter as char;
    let mut line = Vec::new();
    for (record, seq) in records {
        for (at, &base) in seq.iter().enumerate() {
            if accepts(letter, base) {
                line.clear();
                let (pos, base) = (at + 1, base as char);
                writeln!(line, "{record}\t{name}\t{name}\t+\t{pos}\t{pos}\t{base}")
                    .expect("a line");
                hasher.update(&line);
                lines += 1;
            }
        }
    }
    (hasher.finalize(), lines)
}

#[test]
fn millions_of_tsv_rows_stream_through_the_client_in_a_fraction_of_their_size() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    // 20 MiB of random bases in two records: pattern A starts at about a quarter of them.
    let mut bases = Bases::new(43);
    let records: Records = vec![
        ("chr1".into(), bases.take(14 << 20)),
        ("chr2".into(), bases.take(6 << 20)),
    ];
    let (expected_hash, expected_lines) = naive_tsv_of_letter(&records, b'A');
    assert!(expected_lines > 5_000_000, "{expected_lines} rows");
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    drop(records);
    let file = path.display().to_string();
    // Chunks of 1 MiB: the client holds about one chunk's stored result (262,144 positions).
    let chunk = ["--chunk-size", "1048576"];
    let mut args = vec!["submit", &file, "-p", "A", "--job-id", "many"];
    args.extend_from_slice(&chunk);
    grid.cli_ok(&args);
    let status = grid.wait_finished("many", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");

    let started = Instant::now();
    let tsv = client_streamed(&grid, &["results", "many", "--format", "tsv"]);
    eprintln!(
        "results --format tsv: {} rows, {} bytes, client peak RSS {} KiB, {:.1} s",
        tsv.lines,
        tsv.bytes,
        tsv.peak_kib,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(tsv.lines, expected_lines);
    assert_eq!(
        tsv.hash, expected_hash,
        "the TSV differs from a naive scan's"
    );
    let bound_kib = (tsv.bytes / 1024 / 4).min(256 * 1024);
    assert!(
        tsv.peak_kib < bound_kib,
        "the client peaked at {} KiB printing {} bytes; bound {bound_kib} KiB",
        tsv.peak_kib,
        tsv.bytes
    );
}

/// A chunk of 4 MiB in which every base is a match: four million positions in one task's
/// result. The worker builds them compactly and sends their text in parts, the master checks
/// them without decoding them into a tree, and neither comes near the memory bound (the worker
/// used to peak at gigabytes on such a job).
#[test]
fn a_chunk_of_millions_of_positions_keeps_the_worker_and_the_master_small() {
    let mut grid = Grid::start(&["--max-positions", "20000000"]);
    grid.start_worker("w1", 2);
    let mut bases = Bases::new(61);
    let records: Records = vec![
        ("chr1".into(), bases.take(6 << 20)),
        ("chr2".into(), bases.take(2 << 20)),
    ];
    let (expected_hash, expected_lines) = naive_tsv_of_letter(&records, b'N');
    assert_eq!(expected_lines, (8 << 20) + 1, "N matches every base");
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    drop(records);
    let file = path.display().to_string();
    let args = [
        "submit",
        &file,
        "-p",
        "N",
        "--job-id",
        "dense",
        "--chunk-size",
        "4194304",
    ];
    grid.cli_ok(&args);
    let status = grid.wait_finished("dense", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let tsv = client_streamed(&grid, &["results", "dense", "--format", "tsv"]);
    assert_eq!(tsv.lines, expected_lines);
    assert_eq!(
        tsv.hash, expected_hash,
        "the TSV differs from a naive scan's"
    );
    let worker = peak_rss_kib(grid.worker("w1").pid());
    let master = peak_rss_kib(grid.master.as_ref().expect("the master runs").pid());
    eprintln!(
        "peak RSS: worker {worker} KiB, master {master} KiB, client {} KiB",
        tsv.peak_kib
    );
    for (who, peak) in [
        ("worker", worker),
        ("master", master),
        ("client", tsv.peak_kib),
    ] {
        assert!(
            peak < PEAK_RSS_BOUND_KIB,
            "{who} peaked at {peak} KiB, over {PEAK_RSS_BOUND_KIB} KiB"
        );
    }
}

/// The TSV of pattern `pattern` in `records`, found by comparing it at every position.
fn naive_tsv(records: &Records, pattern: &[u8]) -> String {
    let name = String::from_utf8_lossy(pattern);
    let mut tsv = String::from("seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\n");
    for (record, seq) in records {
        for at in 0..seq.len().saturating_sub(pattern.len() - 1) {
            if &seq[at..at + pattern.len()] == pattern {
                let (start, end) = (at + 1, at + pattern.len());
                tsv.push_str(&format!(
                    "{record}\t{name}\t{name}\t+\t{start}\t{end}\t{name}\n"
                ));
            }
        }
    }
    tsv
}

#[test]
fn a_result_part_broken_in_redis_is_refused_naming_its_task_over_http_and_the_cli() {
    let redis = crate::support::redis::RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    grid.start_worker("w1", 2);
    let mut bases = Bases::new(53);
    let records: Records = vec![("chr1".into(), bases.take(300_000))];
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    let submit = ["submit", &file, "-p", "ACGTA", "--chunk-size", "65536"];
    grid.cli_ok(&[&submit[..], &["--job-id", "honest"]].concat());
    let status = grid.wait_finished("honest", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");

    // Honest: the HTTP TSV and the CLI's are what a naive scan finds.
    let expected = naive_tsv(&records, b"ACGTA");
    assert!(expected.lines().count() > 100, "the fixture has matches");
    let http = grid.http_addr();
    let (code, _, body) =
        crate::support::http::request(&http, "GET", "/jobs/honest/results?format=tsv", None, "");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), expected);
    assert_eq!(
        grid.cli_ok(&["results", "honest", "--format", "tsv"]),
        expected
    );

    // Task 2's stored text replaced behind the master's back.
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut redis_conn = client.get_connection().expect("redis connection");
    redis::cmd("LSET")
        .arg("job:honest:result:2")
        .arg(0)
        .arg("hello")
        .query::<()>(&mut redis_conn)
        .expect("LSET the stored part");
    for format in ["tsv", "bed", "json"] {
        let path = format!("/jobs/honest/results?format={format}");
        let (code, _, body) = crate::support::http::request(&http, "GET", &path, None, "");
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 500, "{format}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains("task 2"), "{format}: {message}");
    }
    let out = grid.cli(&["results", "honest", "--format", "tsv"]);
    assert!(!out.status.success(), "the CLI must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("task 2"), "{stderr}");
    // The master still serves: the health check answers.
    let (code, _, _) = crate::support::http::request(&http, "GET", "/health", None, "");
    assert_eq!(code, 200);
}
