//! The drop directory under attack, on each backend where a job runs: a symlinked `failed/`
//! stops the master from starting; a planted `failed/NAME.error` symlink, a symlink or a hard
//! link dropped in place of a batch file, an oversized file, a 251-byte name and a non-UTF-8
//! name are each dealt with once, without reading or writing anything outside; then an honest
//! dropped file loads and its job runs exactly.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

/// What an attacker would like to read out of, or write over.
const SECRET: &str = "DB_PASSWORD=hunter2,1,1,1,1\n";

fn entries(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits for `count` entries in `dir`.
fn wait_entries(dir: &Path, count: usize, what: &str) -> Vec<Vec<u8>> {
    wait_for(what, WAIT, || {
        let names = entries(dir);
        (names.len() >= count).then_some(names)
    })
}

/// Drops the honest file, waits for its job and checks it exactly.
fn honest_file_runs_exactly(grid: &mut Grid, drop: &Path) {
    let before = crate::support::honest::job_ids(grid);
    let processed = entries(&drop.join("processed")).len();
    std::fs::write(drop.join("honest.csv"), crate::support::honest::CSV_ROW).unwrap();
    wait_entries(
        &drop.join("processed"),
        processed + 1,
        "the honest file to load",
    );
    let job = crate::support::honest::job_ids(grid)
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the honest file created a job");
    grid.start_worker("w1", 2);
    crate::support::honest::assert_exact(grid, &job);
}

#[test]
fn a_symlinked_failed_dir_stops_the_master_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("queue");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir(drop.join("processed")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, drop.join("failed")).unwrap();
    let output = std::process::Command::new(crate::support::gridwatch_bin())
        .args([
            "master",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--drop-dir")
        .arg(&drop)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let failed = drop.join("failed").display().to_string();
    assert!(stderr.contains(&failed), "{stderr}");
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert!(entries(&elsewhere).is_empty());
}

fn planted_links_are_never_followed(redis: bool) {
    let (mut grid, _redis, drop) = crate::support::honest::watching(redis, "100ms", &[]);
    let outside = grid.path("outside");
    std::fs::create_dir(&outside).unwrap();
    // A read-only file an `.error` write must not reach.
    let precious = outside.join("precious.txt");
    std::fs::write(&precious, "precious\n").unwrap();
    std::fs::set_permissions(&precious, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::os::unix::fs::symlink(&precious, drop.join("failed/x.csv.error")).unwrap();
    // Secrets a batch file must not be read from.
    let secret = outside.join("secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    std::os::unix::fs::symlink(&secret, drop.join("linked.csv")).unwrap();
    std::fs::hard_link(&secret, drop.join("hard.csv")).unwrap();
    std::fs::write(drop.join("x.csv"), "nonsense,1,1,1,1\n").unwrap();

    // failed/ ends with x.csv.error (the plant), the three refused files and their reasons.
    let failed = wait_entries(&drop.join("failed"), 7, "the refused files");
    assert_eq!(failed.len(), 7, "{failed:?}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(drop.join("failed/x.csv.error"))
        .unwrap()
        .file_type()
        .is_symlink());
    let x_error = failed
        .iter()
        .find(|n| n.ends_with(b"_x.csv.error"))
        .expect("x.csv's reason under a fresh name");
    let reason =
        std::fs::read_to_string(drop.join("failed").join(OsStr::from_bytes(x_error))).unwrap();
    assert!(
        reason.contains("unknown algorithm \"nonsense\""),
        "{reason}"
    );
    let linked = std::fs::read_to_string(drop.join("failed/linked.csv.error")).unwrap();
    assert!(linked.contains("symbolic link"), "{linked}");
    assert!(std::fs::symlink_metadata(drop.join("failed/linked.csv"))
        .unwrap()
        .file_type()
        .is_symlink());
    let hard = std::fs::read_to_string(drop.join("failed/hard.csv.error")).unwrap();
    assert!(hard.contains("hard links"), "{hard}");
    for name in &failed {
        let path = drop.join("failed").join(OsStr::from_bytes(name));
        if name.ends_with(b".error") && !std::fs::symlink_metadata(&path).unwrap().is_symlink() {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
    assert!(!grid.master_logs().contains("hunter2"));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), SECRET);

    honest_file_runs_exactly(&mut grid, &drop);
    assert!(!grid.master_logs().contains("hunter2"));
}

#[test]
fn planted_links_are_never_followed_embedded() {
    planted_links_are_never_followed(false);
}

#[test]
fn planted_links_are_never_followed_redis() {
    planted_links_are_never_followed(true);
}

#[test]
fn a_251_byte_name_is_processed_once() {
    let (grid, _redis, drop) = crate::support::honest::watching(false, "100ms", &[]);
    let name = format!("{}.csv", "n".repeat(247));
    assert_eq!(name.len(), 251);
    std::fs::write(drop.join(&name), crate::support::honest::CSV_ROW).unwrap();
    let processed = wait_entries(&drop.join("processed"), 1, "the long name to load");
    assert_eq!(processed.len(), 1);
    let moved = &processed[0];
    assert!(moved.len() <= 255, "{} bytes", moved.len());
    assert!(
        moved.ends_with(b"n.csv"),
        "{}",
        String::from_utf8_lossy(moved)
    );
    assert!(!drop.join(&name).exists());
    // A later file, refused, takes at least two more reads of the directory: still one load
    // and one job.
    std::fs::write(drop.join("later.csv"), "not,a\nbatch\n").unwrap();
    wait_entries(&drop.join("failed"), 2, "the later file to fail");
    assert_eq!(grid.master_logs().matches("batch file loaded").count(), 1);
    assert_eq!(crate::support::honest::job_ids(&grid).len(), 1);
}

#[test]
fn a_non_utf8_name_fails_once_with_its_reason() {
    let (grid, _redis, drop) = crate::support::honest::watching(false, "100ms", &[]);
    let name = OsStr::from_bytes(b"bad\xff\xfe.csv");
    std::fs::write(drop.join(name), crate::support::honest::CSV_ROW).unwrap();
    let failed = wait_entries(&drop.join("failed"), 2, "the name to fail");
    assert_eq!(
        failed,
        [
            b"bad\xff\xfe.csv".to_vec(),
            b"bad\xff\xfe.csv.error".to_vec()
        ]
    );
    let reason = std::fs::read_to_string(
        drop.join("failed")
            .join(OsStr::from_bytes(b"bad\xff\xfe.csv.error")),
    )
    .unwrap();
    assert!(reason.contains("not UTF-8"), "{reason}");
    // A later file, loaded, takes at least two more reads of the directory: still one refusal,
    // and the later file's job the only one.
    std::fs::write(drop.join("later.csv"), crate::support::honest::CSV_ROW).unwrap();
    wait_entries(&drop.join("processed"), 1, "the later file to load");
    assert_eq!(grid.master_logs().matches("batch file refused").count(), 1);
    assert_eq!(crate::support::honest::job_ids(&grid).len(), 1);
    assert_eq!(entries(&drop), [b"failed".to_vec(), b"processed".to_vec()]);
}
