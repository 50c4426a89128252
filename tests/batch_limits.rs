//! Batch input in bounded memory: a dropped file, an HTTP body and a `gridwatch load` file over
//! `--max-batch-file` are refused before they are read, with the flag named; a dropped file just
//! under the limit, full of rows past the task cap, is refused at the cap while the master's
//! peak memory stays low; then an honest file loads and its job runs exactly (each backend).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::wait_for;

const WAIT: Duration = Duration::from_secs(120);

/// The master's default --max-batch-file.
const DEFAULT_LIMIT: u64 = 64 * 1024 * 1024;

/// Waits for `failed/NAME` to arrive (its reason, written first, is complete then); returns the
/// reason.
fn refusal(drop: &Path, name: &str) -> String {
    let failed = drop.join("failed");
    wait_for("the file to fail", WAIT, || {
        failed.join(name).exists().then_some(())
    });
    std::fs::read_to_string(failed.join(format!("{name}.error"))).unwrap()
}

/// Writes `path` just under `limit` bytes of valid Julia rows (far more rows than a file may
/// hold); returns the row count.
fn write_rows_just_under(path: &Path, limit: u64) -> u64 {
    const ROW: &[u8] = b"Secuencial,8,8,5,3\n";
    let rows = (limit - 1) / ROW.len() as u64;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..rows {
        file.write_all(ROW).unwrap();
    }
    file.flush().unwrap();
    rows
}

fn oversized_batches_are_refused_unread(redis: bool) {
    let (mut grid, _redis, drop) =
        crate::support::honest::watching(redis, "100ms", &["--max-batch-file", "4096"]);
    let big = "Secuencial,8,8,5,3\n".repeat(300);
    assert!(big.len() > 4096);

    std::fs::write(drop.join("big.csv"), &big).unwrap();
    let reason = refusal(&drop, "big.csv");
    assert!(reason.contains(&format!("{} bytes", big.len())), "{reason}");
    assert!(reason.contains("--max-batch-file"), "{reason}");

    let (status, _, body) =
        crate::support::http::request(&grid.http_addr(), "POST", "/jobs", None, &big);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("--max-batch-file"), "{body}");

    let file = grid.path("big.csv");
    std::fs::write(&file, &big).unwrap();
    let load = grid.cli(&[
        "load",
        &file.display().to_string(),
        "--max-batch-file",
        "4096",
    ]);
    let stderr = String::from_utf8_lossy(&load.stderr);
    assert_eq!(load.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--max-batch-file"), "{stderr}");
    assert!(
        crate::support::honest::job_ids(&grid).is_empty(),
        "nothing was created"
    );

    std::fs::write(drop.join("honest.csv"), crate::support::honest::CSV_ROW).unwrap();
    wait_for("the honest job", WAIT, || {
        crate::support::honest::job_ids(&grid).pop()
    });
    grid.start_worker("w1", 2);
    let job = crate::support::honest::job_ids(&grid).pop().unwrap();
    crate::support::honest::assert_exact(&grid, &job);
}

#[test]
fn oversized_batches_are_refused_unread_embedded() {
    oversized_batches_are_refused_unread(false);
}

#[test]
fn oversized_batches_are_refused_unread_redis() {
    oversized_batches_are_refused_unread(true);
}

fn rows_past_the_task_cap_are_refused_in_bounded_memory(redis: bool) {
    let (mut grid, _redis, drop) = crate::support::honest::watching(redis, "100ms", &[]);
    let staging = grid.path("rows.csv");
    let rows = write_rows_just_under(&staging, DEFAULT_LIMIT);
    assert!(rows > 3_000_000);
    // Renamed in whole, as a careful writer does.
    std::fs::rename(&staging, drop.join("rows.csv")).unwrap();
    let reason = refusal(&drop, "rows.csv");
    assert!(reason.contains("more than 100000 tasks"), "{reason}");
    assert!(reason.contains("--max-batch-tasks"), "{reason}");
    let pid = grid.master.as_ref().unwrap().pid();
    let peak_mib = crate::support::raw::peak_rss_kib(pid) / 1024;
    println!(
        "{rows} rows in a {} MiB file ({}): master peak {peak_mib} MiB",
        DEFAULT_LIMIT >> 20,
        if redis { "redis" } else { "embedded" }
    );
    assert!(peak_mib < 512, "master peak {peak_mib} MiB");
    assert!(
        crate::support::honest::job_ids(&grid).is_empty(),
        "nothing was created"
    );

    std::fs::write(drop.join("honest.csv"), crate::support::honest::CSV_ROW).unwrap();
    wait_for("the honest job", WAIT, || {
        crate::support::honest::job_ids(&grid).pop()
    });
    grid.start_worker("w1", 2);
    let job = crate::support::honest::job_ids(&grid).pop().unwrap();
    crate::support::honest::assert_exact(&grid, &job);
}

#[test]
fn rows_past_the_task_cap_are_refused_in_bounded_memory_embedded() {
    rows_past_the_task_cap_are_refused_in_bounded_memory(false);
}

#[test]
fn rows_past_the_task_cap_are_refused_in_bounded_memory_redis() {
    rows_past_the_task_cap_are_refused_in_bounded_memory(true);
}
