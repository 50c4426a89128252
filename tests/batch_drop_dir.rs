//! The master's drop directory on each backend: batch files put there are loaded and moved to
//! `processed/TIMESTAMP_NAME`, malformed ones to `failed/` with the reason beside them; a file
//! still being written is not read early; a master killed between creating a file's jobs and
//! moving the file loads it again on restart without creating anything twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::honest::watching;
use crate::support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn job_count(grid: &Grid) -> usize {
    let out = grid.cli_ok(&["jobs", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    value["jobs"].as_array().map_or(0, Vec::len)
}

/// Waits until `processed/` holds `count` files; returns their names.
fn wait_processed(drop: &Path, count: usize) -> Vec<String> {
    wait_for("files to reach processed/", WAIT, || {
        let names = names(&drop.join("processed"));
        (names.len() >= count).then_some(names)
    })
}

fn is_stamped(name: &str, original: &str) -> bool {
    let Some(stamp) = name
        .strip_suffix(original)
        .and_then(|s| s.strip_suffix('_'))
    else {
        return false;
    };
    let (date, time) = stamp.split_once('_').unwrap_or(("", ""));
    date.len() == 8
        && time.len() == 6
        && stamp
            .chars()
            .filter(|c| *c != '_')
            .all(|c| c.is_ascii_digit())
}

fn loaded_files_move_to_processed_and_bad_ones_to_failed(redis: bool) {
    let (grid, _redis, drop) = watching(redis, "100ms", &[]);
    std::fs::copy(fixture("trabajos.txt"), drop.join("trabajos.txt")).unwrap();
    std::fs::copy(
        fixture("tareas_manuales_ejemplo.json"),
        drop.join("tareas_manuales_ejemplo.json"),
    )
    .unwrap();
    std::fs::write(drop.join("bad.json"), r#"{"tasks":[{"task_id":"x","algorithm":"python","priority":"urgent","parameters":{"num_particles":5,"num_steps":5,"seed":1}}]}"#).unwrap();
    std::fs::write(drop.join("notes.md"), "not a batch file").unwrap();

    let processed = wait_processed(&drop, 2);
    assert_eq!(processed.len(), 2, "{processed:?}");
    assert!(
        is_stamped(&processed[0], "tareas_manuales_ejemplo.json"),
        "{processed:?}"
    );
    assert!(is_stamped(&processed[1], "trabajos.txt"), "{processed:?}");
    let failed = wait_for("the bad file to fail", WAIT, || {
        let names = names(&drop.join("failed"));
        (names.len() == 2).then_some(names)
    });
    assert_eq!(failed, ["bad.json", "bad.json.error"]);
    let reason = std::fs::read_to_string(drop.join("failed/bad.json.error")).unwrap();
    assert!(
        reason.contains("tasks[0], field \"priority\": unknown priority \"urgent\""),
        "{reason}"
    );
    assert_eq!(job_count(&grid), 5, "3 Julia rows and 2 particle tasks");
    assert_eq!(names(&drop), ["failed", "notes.md", "processed"]);
}

#[test]
fn loaded_files_move_to_processed_and_bad_ones_to_failed_embedded() {
    loaded_files_move_to_processed_and_bad_ones_to_failed(false);
}

#[test]
fn loaded_files_move_to_processed_and_bad_ones_to_failed_redis() {
    loaded_files_move_to_processed_and_bad_ones_to_failed(true);
}

#[test]
fn a_half_written_file_is_not_read_early() {
    let (grid, _redis, drop) = watching(false, "500ms", &[]);
    let text = std::fs::read(fixture("tareas_manuales_ejemplo.json")).unwrap();
    let (first, rest) = text.split_at(text.len() / 2);
    let path = drop.join("slow.json");
    std::fs::write(&path, first).unwrap();
    wait_for("the master to see the file", WAIT, || {
        grid.master_logs().contains("slow.json").then_some(())
    });
    // The writer finishes after the master's first look: the next look sees it changed.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(rest).unwrap();
    drop_file(file);
    let processed = wait_processed(&drop, 1);
    assert!(is_stamped(&processed[0], "slow.json"), "{processed:?}");
    assert!(
        names(&drop.join("failed")).is_empty(),
        "the half file was read"
    );
    assert_eq!(job_count(&grid), 2);
}

fn drop_file(file: std::fs::File) {
    file.sync_all().unwrap();
}

/// A kill between creating a file's jobs and moving the file leaves the file in place with its
/// jobs created; that state is built here (the file put back after its load) together with a new
/// file, and the master is killed and restarted.
fn a_restart_neither_loads_twice_nor_loses_a_file(redis: bool) {
    let (mut grid, _redis, drop) = watching(redis, "100ms", &[]);
    std::fs::copy(fixture("trabajos.txt"), drop.join("trabajos.txt")).unwrap();
    wait_processed(&drop, 1);
    assert_eq!(job_count(&grid), 3);

    grid.master.as_mut().unwrap().kill9();
    std::fs::copy(fixture("trabajos.txt"), drop.join("trabajos.txt")).unwrap();
    std::fs::copy(
        fixture("tareas_manuales_ejemplo.json"),
        drop.join("tareas.json"),
    )
    .unwrap();
    grid.start_master();

    let processed = wait_processed(&drop, 3);
    assert_eq!(processed.len(), 3, "{processed:?}");
    assert_eq!(
        job_count(&grid),
        5,
        "the reloaded file created nothing twice"
    );
    assert!(names(&drop.join("failed")).is_empty());
    assert_eq!(names(&drop), ["failed", "processed"]);
}

#[test]
fn a_restart_neither_loads_twice_nor_loses_a_file_embedded() {
    a_restart_neither_loads_twice_nor_loses_a_file(false);
}

#[test]
fn a_restart_neither_loads_twice_nor_loses_a_file_redis() {
    a_restart_neither_loads_twice_nor_loses_a_file(true);
}
