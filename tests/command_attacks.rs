//! Command jobs under attack: output patterns and file names that try to leave the task's
//! working directory, an output that is a symbolic link to a file elsewhere, a command job sent
//! without the cluster token, and one posted by a page on another site.

use std::process::Command;
use std::time::Duration;

use crate::support::grid::Grid;
use crate::support::gridwatch_bin;
use crate::support::http::request_with;

const FINISH: Duration = Duration::from_secs(120);

/// Runs `gridwatch submit command` with `flags` before `--`; returns its output.
fn submit(grid: &Grid, flags: &[&str], argv: &[&str]) -> std::process::Output {
    Command::new(gridwatch_bin())
        .args(["submit", "command", "--master", &grid.addr])
        .args(flags)
        .arg("--")
        .args(argv)
        .output()
        .expect("running gridwatch submit")
}

#[test]
fn output_patterns_that_leave_the_working_directory_are_refused() {
    let grid = Grid::start(&[]);
    let cases = [
        ("../secret", "climbs out with `..`"),
        ("out/../../x", "climbs out with `..`"),
        ("/etc/*", "is an absolute path"),
    ];
    for (pattern, says) in cases {
        let output = submit(&grid, &["--job-id", "bad", "--output", pattern], &["true"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{pattern}: accepted");
        assert!(stderr.contains(says), "{pattern}: {stderr}");
    }
    // The master refuses them too, from a client that skips the CLI's checks.
    let specs: Vec<(&str, serde_json::Value)> = cases
        .iter()
        .map(|(pattern, _)| {
            (
                "command",
                serde_json::json!({"argv": ["true"], "outputs": [pattern]}),
            )
        })
        .collect();
    let refusals = grid.raw_refusals(&specs);
    for ((pattern, says), message) in cases.iter().zip(&refusals) {
        assert!(message.contains(says), "{pattern}: {message}");
    }
    let jobs = grid.cli_ok(&["jobs", "--json"]);
    assert!(!jobs.contains("\"bad\""), "a refused job exists: {jobs}");
    assert!(!jobs.contains("raw-"), "a refused job exists: {jobs}");
}

#[test]
fn an_output_that_links_out_of_the_working_directory_is_not_followed() {
    let mut grid = Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let outside = grid.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "the worker's secret\n").unwrap();
    let script = format!(
        "ln -s {dir}/secret.txt leak.txt; ln -s {dir} d; mkdir out; \
         printf 'mine\\n' > own.txt; printf '\\000\\377' > out/raw.txt",
        dir = outside.display()
    );
    let output = submit(
        &grid,
        &[
            "--job-id",
            "links",
            "--output",
            "*.txt",
            "--output",
            "d/*",
            "--output",
            "out/*.txt",
        ],
        &["sh", "-c", &script],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = grid.wait_finished("links", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let out = grid.path("results");
    grid.cli_ok(&["results", "links", "--out", &out.display().to_string()]);
    let task = out.join("1");
    assert_eq!(std::fs::read(task.join("own.txt")).unwrap(), b"mine\n");
    assert_eq!(
        std::fs::read(task.join("out/raw.txt")).unwrap(),
        b"\x00\xff"
    );
    assert!(!task.join("leak.txt").exists(), "a link out was followed");
    assert!(!task.join("d").exists(), "a linked directory was followed");
    let json = grid.cli_ok(&["results", "links", "--format", "json"]);
    assert!(!json.contains("secret"), "{json}");
}

/// A one-task command batch: a job array whose tasks print their index.
fn command_batch(job: &str) -> String {
    format!(
        r#"{{"tasks":[{{"task_id":"{job}","algorithm":"command","priority":"high",
        "parameters":{{"argv":["sh","-c","echo task {{i}}"],"array":"1-3"}}}}]}}"#
    )
}

fn job_exists(grid: &Grid, job: &str, token: Option<&str>) -> bool {
    let mut args = vec!["jobs", "--json"];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    let jobs: serde_json::Value = serde_json::from_str(&grid.cli_ok(&args)).unwrap();
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["job_id"] == job || j["id"] == job)
}

#[test]
fn a_cross_site_post_of_a_command_job_is_refused_and_a_same_site_one_runs() {
    let mut grid = Grid::start(&[]);
    let http = grid.http_addr();
    let cross_site = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    let reply = request_with(&http, "POST", "/jobs", &cross_site, &command_batch("evil"));
    assert_eq!(reply.status, 403, "{}", reply.text());
    let fetch_metadata = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Content-Type", "application/json"),
    ];
    let reply = request_with(
        &http,
        "POST",
        "/jobs",
        &fetch_metadata,
        &command_batch("evil"),
    );
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        !job_exists(&grid, "evil", None),
        "a cross-site POST created a job"
    );

    let own = [("Content-Type", "application/json")];
    let reply = request_with(&http, "POST", "/jobs", &own, &command_batch("posted"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let status = grid.wait_finished("posted", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let out = grid.cli_ok(&["results", "posted", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stdout: Vec<&str> = parsed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(stdout, ["task 1\n", "task 2\n", "task 3\n"]);
}

#[test]
fn a_command_job_without_the_token_is_refused() {
    const TOKEN: &str = "command-attack-token-0123456789abcdef";
    let grid = Grid::start(&["--token", TOKEN]);
    let output = submit(&grid, &["--job-id", "sneaky"], &["sh", "-c", "echo hi"]);
    assert!(
        !output.status.success(),
        "a command job went in without the token"
    );
    let wrong = submit(
        &grid,
        &[
            "--job-id",
            "sneaky",
            "--token",
            "not-the-token-at-all-000000000000",
        ],
        &["sh", "-c", "echo hi"],
    );
    assert!(
        !wrong.status.success(),
        "a command job went in with a wrong token"
    );
    let http = grid.http_addr();
    let own = [("Content-Type", "application/json")];
    let reply = request_with(&http, "POST", "/jobs", &own, &command_batch("sneaky"));
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(
        !job_exists(&grid, "sneaky", Some(TOKEN)),
        "a refused command job exists"
    );
    let ok = submit(
        &grid,
        &["--job-id", "honest", "--token", TOKEN],
        &["sh", "-c", "echo hi"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(job_exists(&grid, "honest", Some(TOKEN)));
}

#[test]
fn the_drop_directory_takes_command_tasks_only_when_the_master_allows_it() {
    for allowed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let drop = dir.path().join("queue");
        let drop_flag = drop.display().to_string();
        let mut flags = vec!["--drop-dir", drop_flag.as_str(), "--drop-poll", "100ms"];
        if allowed {
            flags.push("--drop-dir-commands");
        }
        let grid = Grid::start(&flags);
        std::fs::create_dir_all(&drop).unwrap();
        std::fs::write(drop.join("cmd.json"), command_batch("dropped")).unwrap();
        let moved_to = if allowed { "processed" } else { "failed" };
        let names = crate::support::wait_for("the file to move", FINISH, || {
            let names: Vec<String> = std::fs::read_dir(drop.join(moved_to))
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            let reason_written = allowed || names.iter().any(|n| n.ends_with(".error"));
            (!names.is_empty() && reason_written).then_some(names)
        });
        assert_eq!(job_exists(&grid, "dropped", None), allowed, "{names:?}");
        if !allowed {
            let reason_file = names
                .iter()
                .find(|n| n.ends_with(".error"))
                .expect("a reason");
            let reason = std::fs::read_to_string(drop.join("failed").join(reason_file)).unwrap();
            assert!(reason.contains("--drop-dir-commands"), "{reason}");
        }
    }
}

#[test]
fn input_names_and_hashes_that_are_not_what_they_claim_are_refused() {
    let grid = Grid::start(&[]);
    let hash = "ab".repeat(32);
    let input =
        |name: &str, hash: &str| serde_json::json!({"name": name, "hash": hash, "size": 10});
    let cases = [
        (vec![input("../../etc/passwd", &hash)], "contains a `/`"),
        (vec![input("..", &hash)], "give a file name"),
        (vec![input("", &hash)], "an empty name"),
        (vec![input("x", "../../etc/passwd")], "is not a BLAKE3 hash"),
        (
            vec![input("x", &hash.to_uppercase())],
            "is not a BLAKE3 hash",
        ),
        (
            vec![input("x", &hash), input("x", &hash)],
            "two inputs are named",
        ),
        (vec![input("x", &hash)], "is not stored on the master"),
    ];
    let specs: Vec<(&str, serde_json::Value)> = cases
        .iter()
        .map(|(inputs, _)| {
            (
                "command",
                serde_json::json!({"argv": ["true"], "inputs": inputs}),
            )
        })
        .collect();
    let errors = grid.raw_errors(&specs);
    for ((inputs, says), (_, message)) in cases.iter().zip(&errors) {
        assert!(message.contains(says), "{inputs:?}: {message}");
    }
    let jobs = grid.cli_ok(&["jobs", "--json"]);
    assert!(!jobs.contains("raw-"), "a refused job exists: {jobs}");

    // The CLI refuses what it can see before sending anything.
    let a = grid.path("a");
    std::fs::create_dir_all(a.join("same")).expect("dirs");
    std::fs::write(a.join("x.txt"), "1").expect("file");
    std::fs::create_dir_all(grid.path("b")).expect("dirs");
    std::fs::write(grid.path("b/x.txt"), "2").expect("file");
    let shown = |p: &std::path::Path| p.to_string_lossy().into_owned();
    for (flags, says) in [
        (
            vec![shown(&a.join("x.txt")), shown(&grid.path("b/x.txt"))],
            "two inputs are named",
        ),
        (vec![shown(&a.join("same"))], "not a regular file"),
        (vec![shown(&a.join("missing"))], "No such file"),
    ] {
        let mut args = Vec::new();
        for path in &flags {
            args.extend(["--input", path.as_str()]);
        }
        let output = submit(&grid, &args, &["true"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?}: accepted");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}

#[test]
fn a_worker_reading_inputs_gets_bounded_pieces_of_real_inputs_only() {
    use gridwatch::protocol::{ErrorCode, Message, Role};
    let grid = Grid::start(&[]);
    let file = grid.path("data.bin");
    std::fs::write(&file, b"0123456789").expect("input");
    let file_flag = file.to_string_lossy().into_owned();
    let output = submit(
        &grid,
        &["--job-id", "with-input", "--input", &file_flag],
        &["true"],
    );
    assert!(output.status.success(), "{output:?}");
    let hash = blake3::hash(b"0123456789").to_hex().to_string();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let mut conn = grid.greeted(Role::Worker, Some("reader")).await;
        let read = |hash: &str, offset: u64, len: u64| Message::ReadInput {
            hash: hash.to_string(),
            offset,
            len,
        };
        let refused = [
            (read("../../etc/passwd", 0, 10), "not a BLAKE3 hash"),
            (read(&"cd".repeat(32), 0, 10), "input"),
            (read(&hash, 0, 1 << 30), "at most"),
            (read(&hash, 5, 10), "input"),
        ];
        for (message, says) in refused {
            conn.write_message(&message).await.expect("read_input");
            match conn.expect_message().await.expect("a reply") {
                Message::Error { code, message, .. } => {
                    assert!(
                        matches!(code, ErrorCode::BadMessage | ErrorCode::BadInput),
                        "{code:?}: {message}"
                    );
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("expected an error frame, got {other:?}"),
            }
        }
        // The same connection still reads a real piece, exactly.
        conn.write_message(&read(&hash, 2, 5))
            .await
            .expect("read_input");
        match conn.expect_message().await.expect("a reply") {
            Message::InputPiece { len } => assert_eq!(len, 5),
            other => panic!("expected a piece, got {other:?}"),
        }
        let piece = conn.read_data().await.expect("the piece");
        assert_eq!(&piece[..], b"23456");
    });
}

/// A one-task command batch reading `input` (as the file names it) into its stdout.
fn input_batch(job: &str, input: &str) -> String {
    serde_json::json!({"tasks": [{
        "task_id": job,
        "algorithm": "command",
        "parameters": {"argv": ["sh", "-c", "cat *.dat"], "inputs": [input]},
    }]})
    .to_string()
}

/// Waits until `name` has left the drop directory for `processed/` or `failed/`; returns the
/// reason written for a refused file, or `None` for a loaded one.
fn drop_outcome(drop: &std::path::Path, name: &str) -> Option<String> {
    crate::support::wait_for("the batch file to move", FINISH, || {
        if drop.join(name).exists() {
            return None;
        }
        let reason = drop.join("failed").join(format!("{name}.error"));
        if let Ok(text) = std::fs::read_to_string(&reason) {
            return Some(Some(text));
        }
        let processed = std::fs::read_dir(drop.join("processed")).ok()?;
        processed
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(name))
            .then_some(None)
    })
}

#[test]
fn the_drop_directory_takes_inputs_only_from_inside_itself() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("queue");
    let drop_flag = drop.display().to_string();
    let mut grid = Grid::start(&[
        "--drop-dir",
        &drop_flag,
        "--drop-poll",
        "100ms",
        "--drop-dir-commands",
    ]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    std::fs::create_dir_all(drop.join("sub")).unwrap();
    std::fs::write(drop.join("inside.dat"), "dropped bytes\n").unwrap();
    std::fs::write(drop.join("sub/nested.dat"), "nested\n").unwrap();
    let outside = dir.path().join("secret.dat");
    std::fs::write(&outside, "secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, drop.join("link.dat")).unwrap();
    let refused = [
        ("climb.json", "../secret.dat", "only files directly inside"),
        (
            "absolute.json",
            outside.to_str().unwrap(),
            "only files directly inside",
        ),
        (
            "nested.json",
            "sub/nested.dat",
            "only files directly inside",
        ),
        ("link.json", "link.dat", "symbolic link"),
    ];
    for (name, input, says) in refused {
        std::fs::write(
            drop.join(name),
            input_batch(name.trim_end_matches(".json"), input),
        )
        .unwrap();
        let reason = drop_outcome(&drop, name).unwrap_or_else(|| panic!("{name} was loaded"));
        assert!(reason.contains(says), "{name}: {reason}");
        assert!(!job_exists(&grid, name.trim_end_matches(".json"), None));
    }
    std::fs::write(drop.join("ok.json"), input_batch("inside", "inside.dat")).unwrap();
    assert_eq!(
        drop_outcome(&drop, "ok.json"),
        None,
        "the inside input is taken"
    );
    let status = grid.wait_finished("inside", FINISH);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let out = grid.cli_ok(&["results", "inside", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["tasks"][0]["stdout"], "dropped bytes\n");
}

#[test]
fn a_task_naming_inputs_that_do_not_exist_or_escape_fails_its_job_not_the_worker() {
    use gridwatch::backend::redis::{RedisBackend, RedisOptions};
    use gridwatch::backend::{
        JobRecord, JobStatus, JobStore, NewTask, Priority, QueueAdmin, TaskId,
    };
    // Whoever can write to Redis can put any task spec before a worker, bypassing the master.
    let redis = crate::support::redis::RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    grid.worker_flags.push("--allow-commands".into());
    grid.start_worker("w1", 1);
    let hash = "ab".repeat(32);
    let cases = [
        ("missing", "x", hash.as_str(), "fetching input"),
        ("climbing", "../../x", hash.as_str(), "contains a `/`"),
        (
            "not-a-hash",
            "x",
            "../../../etc/passwd",
            "not a BLAKE3 hash",
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let options = RedisOptions {
            max_attempts: 1,
            ..RedisOptions::default()
        };
        let backend = RedisBackend::connect(&url, options).await.expect("redis");
        for (job, name, hash, _) in cases {
            let spec = serde_json::json!({
                "argv": ["cat", name], "index": 1, "timeout_secs": null, "retries": 0,
                "cpus": 1, "output_cap": 1024,
                "inputs": [{"name": name, "hash": hash, "size": 10}],
            });
            let record = JobRecord {
                id: job.into(),
                kind: "command".into(),
                spec: serde_json::json!({"argv": ["cat", name], "tasks": {"array": {"first": 1, "last": 1}},
                    "timeout_secs": null, "retries": 0, "cpus": 1, "output_cap": 1024}),
                summary: "cat".into(),
                priority: Priority::Medium,
                status: JobStatus::Uploading,
                total_chunks: 0,
                error: None,
                created_at: 1.0,
                finished_at: None,
            };
            backend.create_job(&record).await.expect("job");
            let task = NewTask {
                id: TaskId {
                    job: job.into(),
                    chunk: 0,
                },
                kind: "command".into(),
                priority: Priority::Medium,
                spec,
                data: Default::default(),
                max_matches: 1,
                slots: 1,
            };
            backend.enqueue(vec![task]).await.expect("enqueue");
            backend.accept_job(job, 1).await.expect("accept");
        }
    });
    for (job, _, _, says) in cases {
        let status = grid.wait_finished(job, FINISH);
        assert_eq!(status["job"]["status"], "failed", "{status}");
        let error = status["job"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{job}: {error}");
    }
    assert_eq!(
        grid.worker("w1")
            .wait_exit_within(Duration::from_millis(200)),
        None,
        "the worker keeps running"
    );
}
