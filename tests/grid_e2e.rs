//! The grid end to end with real processes on free ports: a master, worker processes and the
//! command-line client, checked against a brute-force matcher. Covers chunk edges, a worker killed
//! mid-job, a master restarted mid-job, and many clients at once.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::grid::{naive_hits, parse_total, parse_tsv, write_fasta, Bases, Grid, Records};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Records of awkward lengths (shorter than a chunk, exactly a chunk, a chunk plus one...).
fn awkward_records(seed: u64, lengths: &[usize]) -> Records {
    let mut bases = Bases::new(seed);
    lengths
        .iter()
        .enumerate()
        .map(|(i, len)| {
            let mut seq = bases.take(*len);
            // Plant matches right at chunk edges (50-base chunks) and across line breaks.
            for at in [48usize, 49, 99, 148] {
                if at + 4 <= seq.len() {
                    seq[at..at + 4].copy_from_slice(b"ACGT");
                }
            }
            (format!("chr{i}"), seq)
        })
        .collect()
}

#[test]
fn chunk_edges_line_breaks_and_record_ends_give_exact_positions() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    let records = awkward_records(7, &[3, 50, 51, 100, 149, 1000, 2503]);
    for (width, eol) in [(10, "\n"), (50, "\r\n"), (7, "\n")] {
        let path = grid.path(&format!("edges-{width}.fa"));
        write_fasta(&path, &records, width, eol);
        let file = path.display().to_string();
        for pattern in ["ACGT", "ACGTAC", "GG"] {
            let job = format!("edges-{width}-{pattern}");
            grid.cli_ok(&[
                "submit",
                &file,
                "-p",
                pattern,
                "--strand",
                "both",
                "--chunk-size",
                "50",
                "--job-id",
                &job,
                "--wait",
                "--json",
            ]);
            let tsv = grid.cli_ok(&["results", &job, "--format", "tsv"]);
            let expected = naive_hits(&records, pattern, true);
            assert_eq!(
                parse_tsv(&tsv),
                expected,
                "positions of {pattern} (width {width})"
            );
            let count = grid.cli_ok(&["results", &job]);
            assert_eq!(parse_total(&count), expected.len() as u64);
            // Byte for byte what local `gridwatch search` prints, for counts and positions.
            for format in ["count", "tsv", "bed", "json"] {
                let local = local_search(&file, pattern, format);
                let remote = grid.cli_ok(&["results", &job, "--format", format]);
                assert_eq!(
                    remote, local,
                    "{format} output of {pattern} (width {width})"
                );
            }
        }
    }
}

/// `submit search FILE` is the bare `submit FILE`, with `--wait` printing the kind's formats and
/// `status`/`jobs` naming the kind.
#[test]
fn submit_search_names_the_kind_and_results_print_in_its_formats() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    let records = awkward_records(11, &[120, 333]);
    let path = grid.path("named.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    let expected = naive_hits(&records, "ACGT", true);
    let tsv = grid.cli_ok(&[
        "submit",
        "search",
        &file,
        "-p",
        "ACGT",
        "--strand",
        "both",
        "--chunk-size",
        "40",
        "--job-id",
        "named",
        "--wait",
        "--format",
        "tsv",
    ]);
    assert_eq!(parse_tsv(&tsv), expected);
    let out = grid.path("named.bed");
    grid.cli_ok(&[
        "results",
        "named",
        "--format",
        "bed",
        "--out",
        &out.display().to_string(),
    ]);
    let bed = std::fs::read_to_string(&out).expect("results --out wrote the file");
    assert_eq!(bed.lines().count(), expected.len());
    let status = grid.cli_ok(&["status", "named"]);
    assert!(status.contains("Job Kind: search"), "{status}");
    assert!(
        status.contains("Job: ACGT in named.fa (both strands)"),
        "{status}"
    );
    let refused = grid.cli(&["results", "named", "--format", "png"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("formats: count, tsv, bed, json"));
}

/// A search with mismatches cut into 50-base chunks: an approximate match has its pattern's
/// length, so the chunk overlap still covers it and the grid prints what a local search prints.
#[test]
fn mismatch_search_on_the_grid_equals_local_search_in_every_format() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 2);
    let records = awkward_records(23, &[3, 50, 51, 149, 1000, 2503]);
    let path = grid.path("mismatch.fa");
    write_fasta(&path, &records, 13, "\n");
    let file = path.display().to_string();
    let mut found = 0;
    for (pattern, k) in [("ACGTACGTAC", "2"), ("ACGTNRYAC", "1"), ("GGATCCAAGT", "3")] {
        let job = format!("mm-{pattern}-{k}");
        grid.cli_ok(&[
            "submit",
            &file,
            "-p",
            pattern,
            "-m",
            k,
            "--strand",
            "both",
            "--chunk-size",
            "50",
            "--job-id",
            &job,
            "--wait",
            "--json",
        ]);
        for format in ["count", "tsv", "bed", "json"] {
            let local = std::process::Command::new(crate::support::gridwatch_bin())
                .args([
                    "search", &file, "-p", pattern, "-m", k, "--strand", "both", "--format", format,
                ])
                .output()
                .expect("running gridwatch search");
            assert!(local.status.success());
            let local = String::from_utf8_lossy(&local.stdout).into_owned();
            let remote = grid.cli_ok(&["results", &job, "--format", format]);
            assert_eq!(remote, local, "{format} output of {pattern} with -m {k}");
            if format == "tsv" {
                found += local.lines().count() - 1;
                assert!(local.starts_with(
                    "seqID\tpatternName\tpattern\tstrand\tstart\tend\tmatched\tmismatches\n"
                ));
            }
        }
    }
    assert!(found > 20, "only {found} hits: the test would prove little");
}

/// 1,200 guides are more than one task's pattern group, so even a one-chunk genome becomes
/// several tasks (one per group) on several workers; the merged result is local search's.
#[test]
fn many_guides_are_cut_by_pattern_group_and_merge_to_the_local_result() {
    let mut grid = Grid::start(&[]);
    grid.start_worker("w1", 1);
    grid.start_worker("w2", 1);
    let records = awkward_records(31, &[700, 1300]);
    let path = grid.path("guides.fa");
    write_fasta(&path, &records, 60, "\n");
    let mut guides = String::new();
    let mut bases = Bases::new(5);
    for i in 0..1200 {
        let (_, seq) = &records[i % 2];
        let at = (i * 37) % (seq.len() - 12);
        let guide = if i % 3 == 0 {
            bases.take(12)
        } else {
            seq[at..at + 12].to_vec()
        };
        guides.push_str(&format!("g{i}\t{}\n", String::from_utf8_lossy(&guide)));
    }
    let list = grid.path("guides.tsv");
    std::fs::write(&list, guides).expect("write guides");
    let (file, list) = (path.display().to_string(), list.display().to_string());
    let accepted = grid.cli_ok(&[
        "submit",
        &file,
        "--patterns",
        &list,
        "-m",
        "1",
        "--strand",
        "both",
        "--job-id",
        "guides",
        "--wait",
        "--json",
    ]);
    assert!(accepted.contains("guides"), "{accepted}");
    let status = grid.status("guides");
    assert_eq!(
        status["job"]["progress"]["processed_chunks"], 3,
        "two short records share one chunk, cut into three pattern groups: {status}"
    );
    for format in ["count", "tsv"] {
        let local = std::process::Command::new(crate::support::gridwatch_bin())
            .args([
                "search",
                &file,
                "--patterns",
                &list,
                "-m",
                "1",
                "--strand",
                "both",
                "--format",
                format,
            ])
            .output()
            .expect("running gridwatch search");
        assert!(local.status.success());
        let local = String::from_utf8_lossy(&local.stdout).into_owned();
        if format == "tsv" {
            assert!(
                local.lines().count() > 800,
                "guides taken from the genome match"
            );
            assert!(
                local.contains("\tg1199\t"),
                "names from the list are printed"
            );
        }
        let remote = grid.cli_ok(&["results", "guides", "--format", format]);
        assert_eq!(remote, local, "{format}");
    }
}

/// Output of local `gridwatch search` (no servers) on both strands.
fn local_search(file: &str, pattern: &str, format: &str) -> String {
    let output = std::process::Command::new(crate::support::gridwatch_bin())
        .args([
            "search", file, "-p", pattern, "--strand", "both", "--format", format,
        ])
        .output()
        .expect("running gridwatch search");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A genome big enough that a job takes many tasks.
fn big_genome(grid: &Grid, name: &str, records: usize, len: usize) -> (String, Records) {
    let mut bases = Bases::new(99);
    let records: Records = (0..records)
        .map(|i| (format!("r{i}"), bases.take(len)))
        .collect();
    let path = grid.path(name);
    write_fasta(&path, &records, 60, "\n");
    (path.display().to_string(), records)
}

fn done_chunks(grid: &Grid, job: &str) -> u64 {
    grid.status(job)["job"]["progress"]["processed_chunks"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn worker_killed_mid_job_still_gives_the_exact_result() {
    let mut grid = Grid::start(&["--visibility-timeout", "1"]);
    let (file, records) = big_genome(&grid, "big.fa", 4, 1_000_000);
    grid.start_worker("w1", 4);
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "ACGTAC",
        "--chunk-size",
        "5000",
        "--job-id",
        "k9",
    ]);
    crate::support::wait_for("w1 to finish a chunk", JOB_TIMEOUT, || {
        (done_chunks(&grid, "k9") > 0).then_some(())
    });
    // Frozen, w1 sends nothing more; once the master's count of leases in flight settles, they
    // are all w1's. A worker caught between an ack and its next lease holds none, and then only
    // the kill is tested, not the reclaim: thaw it and catch it again.
    let held = crate::support::wait_for("w1 frozen while holding leases", JOB_TIMEOUT, || {
        grid.worker("w1").signal(Signal::SIGSTOP);
        let held = settled_leases_in_flight(&grid);
        if held == 0 {
            grid.worker("w1").signal(Signal::SIGCONT);
        }
        (held > 0).then_some(held)
    });
    grid.worker("w1").kill9();
    let status = grid.status("k9");
    assert_ne!(
        status["job"]["status"], "completed",
        "the kill came too late to prove anything"
    );
    grid.start_worker("w2", 2);
    let status = grid.wait_finished("k9", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed");
    let expected = naive_hits(&records, "ACGTAC", false).len() as u64;
    assert_eq!(parse_total(&grid.cli_ok(&["results", "k9"])), expected);
    // A lease the master was still handing over when w1 died goes back at once; one w1 had
    // received goes back when its visibility timeout passes.
    let logs = grid.master_logs();
    assert!(
        logs.contains("expired leases returned to the queue")
            || logs.contains("its worker disconnected before receiving it"),
        "w1's {held} leases should have been returned to the queue"
    );
}

/// The master's `gridwatch_leases_in_flight`, read until two reads agree.
fn settled_leases_in_flight(grid: &Grid) -> u64 {
    let read = || {
        let (status, _, body) =
            crate::support::http::request(&grid.http_addr(), "GET", "/metrics", None, "");
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|line| line.strip_prefix("gridwatch_leases_in_flight "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .expect("gridwatch_leases_in_flight in /metrics") as u64
    };
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn master_restarted_mid_job_completes_exactly() {
    let mut grid = Grid::start(&[]);
    let (file, records) = big_genome(&grid, "big.fa", 3, 1_000_000);
    grid.start_worker("w1", 1);
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "TTAGGC",
        "--chunk-size",
        "5000",
        "--job-id",
        "restart",
    ]);
    crate::support::wait_for("a first chunk", JOB_TIMEOUT, || {
        (done_chunks(&grid, "restart") > 0).then_some(())
    });
    if let Some(master) = grid.master.as_mut() {
        master.kill9();
    }
    grid.master = None;
    grid.start_master();
    let status = grid.wait_finished("restart", JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed");
    let expected = naive_hits(&records, "TTAGGC", false).len() as u64;
    assert_eq!(parse_total(&grid.cli_ok(&["results", "restart"])), expected);
    assert!(grid.master_logs().contains("resuming unfinished jobs"));
}

#[test]
fn twenty_clients_at_once_all_get_exact_results() {
    let mut grid = Grid::start(&["--jobs-per-minute", "100"]);
    grid.start_worker("w1", 2);
    grid.start_worker("w2", 2);
    let mut bases = Bases::new(3);
    let fixtures: Vec<(String, Records)> = (0..20)
        .map(|i| {
            let records = vec![(format!("s{i}"), bases.take(20_000 + i * 997))];
            let path = grid.path(&format!("c{i}.fa"));
            write_fasta(&path, &records, 61, "\n");
            (path.display().to_string(), records)
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = fixtures
            .iter()
            .map(|(file, records)| {
                let grid = &grid;
                scope.spawn(move || {
                    let out = grid.cli_ok(&[
                        "submit",
                        file,
                        "-p",
                        "GATC",
                        "--strand",
                        "both",
                        "--wait",
                        "--chunk-size",
                        "4096",
                    ]);
                    (
                        parse_total(&out),
                        naive_hits(records, "GATC", true).len() as u64,
                    )
                })
            })
            .collect();
        for handle in handles {
            let (got, expected) = handle.join().expect("client thread");
            assert_eq!(got, expected);
        }
    });
}
