//! The master's protocol against a real `gridwatch master` process: bad frames and refused
//! requests get `error` frames with codes while the master keeps serving others; a chunk result
//! delivered twice counts once; a cancelled job's late results are ignored.

use crate::support::grid::{write_fasta, Bases, Grid};
use gridwatch::backend::ChunkResult;
use gridwatch::protocol::{Connection, ErrorCode, Message, Role, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

type Conn = Connection<TcpStream>;

async fn connect(grid: &Grid, role: Role, id: Option<&str>) -> Conn {
    let stream = TcpStream::connect(&grid.addr)
        .await
        .expect("connecting to the master");
    let mut conn = Connection::new(stream);
    let hello = Message::Hello {
        role,
        version: PROTOCOL_VERSION,
        token: None,
        id: id.map(str::to_string),
        instance: None,
    };
    conn.write_message(&hello).await.expect("hello");
    match conn.expect_message().await.expect("welcome") {
        Message::Welcome { .. } => conn,
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Reads one reply that must be an `error` frame; returns its code.
async fn error_code(conn: &mut Conn) -> ErrorCode {
    match conn.expect_message().await.expect("a reply") {
        Message::Error { code, .. } => code,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// After a frame-level error the master closes the connection.
async fn assert_closed(conn: &mut Conn) {
    assert!(conn.read_frame().await.map(|f| f.is_none()).unwrap_or(true));
}

fn master_still_serves(grid: &Grid) {
    grid.cli_ok(&["jobs", "--json"]);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

#[test]
fn bad_frames_get_error_codes_and_the_master_keeps_serving() {
    let grid = Grid::start(&["--max-frame", "4096"]);
    runtime().block_on(async {
        let mut conn = connect(&grid, Role::Client, None).await;
        conn.send_frame(b"{\"type\": \"query_status\", ")
            .await
            .unwrap();
        conn.flush().await.unwrap();
        assert_eq!(error_code(&mut conn).await, ErrorCode::BadJson);
        assert_closed(&mut conn).await;
        master_still_serves(&grid);

        let mut conn = connect(&grid, Role::Client, None).await;
        conn.send_frame(br#"{"type":"teleport","v":1}"#)
            .await
            .unwrap();
        conn.flush().await.unwrap();
        assert_eq!(error_code(&mut conn).await, ErrorCode::UnknownType);
        assert_closed(&mut conn).await;
        master_still_serves(&grid);

        let mut raw = TcpStream::connect(&grid.addr).await.unwrap();
        raw.write_all(&100_000u32.to_be_bytes()).await.unwrap();
        let mut conn = Connection::new(raw);
        assert_eq!(error_code(&mut conn).await, ErrorCode::FrameTooLarge);
        master_still_serves(&grid);

        let mut conn = connect(&grid, Role::Client, None).await;
        let lease_as_a_client = Message::Lease {
            wait_ms: 0,
            commands: false,
            slots: None,
            genome_files: None,
            genome_partials: false,
        };
        conn.write_message(&lease_as_a_client).await.unwrap();
        assert_eq!(error_code(&mut conn).await, ErrorCode::UnexpectedMessage);
        master_still_serves(&grid);
    });
}

#[test]
fn refused_submissions_say_why_with_a_code_and_exit_code_2() {
    let grid = Grid::start(&["--max-upload", "2000", "--jobs-per-minute", "2"]);
    let records = vec![("chr1".to_string(), Bases::new(5).take(500))];
    let small = grid.path("small.fa");
    write_fasta(&small, &records, 60, "\n");
    let big = grid.path("big.fa");
    write_fasta(
        &big,
        &[("chr1".to_string(), Bases::new(5).take(5000))],
        60,
        "\n",
    );
    let (small, big) = (small.display().to_string(), big.display().to_string());

    runtime().block_on(async {
        let mut conn = connect(&grid, Role::Client, None).await;
        let submit = Message::SubmitJob {
            job_id: "bad-pattern".into(),
            kind: "search".into(),
            spec: Some(serde_json::json!({
                "filename": "x.fa",
                "patterns": [{ "name": "p", "sequence": "ACGX" }],
            })),
            file_size: Some(10),
            priority: Default::default(),
            top_level: Default::default(),
        };
        conn.write_message(&submit).await.unwrap();
        assert_eq!(error_code(&mut conn).await, ErrorCode::BadPattern);
        // A refused request leaves the connection usable.
        conn.write_message(&Message::ListJobs).await.unwrap();
        assert!(matches!(
            conn.expect_message().await.unwrap(),
            Message::Jobs { .. }
        ));
    });

    let too_big = grid.cli(&["submit", &big, "-p", "ACGT"]);
    assert_eq!(too_big.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&too_big.stderr).contains("upload limit"));

    grid.cli_ok(&["submit", &small, "-p", "ACGT"]);
    grid.cli_ok(&["submit", &small, "-p", "ACGT"]);
    let limited = grid.cli(&["submit", &small, "-p", "ACGT"]);
    assert_eq!(limited.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&limited.stderr).contains("jobs in the last minute"));
    master_still_serves(&grid);
}

/// What clients sent before jobs had kinds: a search's fields at the top level, no `kind`.
#[test]
fn a_submit_without_a_kind_is_a_search_and_an_unknown_kind_is_refused() {
    let grid = Grid::start(&[]);
    runtime().block_on(async {
        let mut conn = connect(&grid, Role::Client, None).await;
        let sequence = b"ACGTTACGTA";
        let header = format!(
            r#"{{"type":"submit_job","v":1,"job_id":"pre-kinds","filename":"s.txt",
               "patterns":[{{"name":"p","sequence":"ACG"}}],"options":{{"strand":"forward",
               "case_sensitive":false}},"file_size":{},"chunk_size":4,"priority":"high"}}"#,
            sequence.len()
        );
        conn.send_frame(header.as_bytes()).await.unwrap();
        conn.flush().await.unwrap();
        match conn.expect_message().await.unwrap() {
            Message::Ready { job_id } => assert_eq!(job_id, "pre-kinds"),
            other => panic!("expected ready, got {other:?}"),
        }
        conn.send_frame(sequence).await.unwrap();
        conn.flush().await.unwrap();
        match conn.expect_message().await.unwrap() {
            // 10 bases cut 4 by 4.
            Message::Accepted { total_chunks, .. } => assert_eq!(total_chunks, 3),
            other => panic!("expected accepted, got {other:?}"),
        }
        conn.write_message(&Message::QueryStatus {
            job_id: "pre-kinds".into(),
        })
        .await
        .unwrap();
        match conn.expect_message().await.unwrap() {
            Message::JobStatus { job, .. } => {
                assert_eq!(job.kind, "search");
                assert_eq!(job.summary, "ACG in s.txt");
            }
            other => panic!("expected job_status, got {other:?}"),
        }

        conn.write_message(&Message::SubmitJob {
            job_id: "strange".into(),
            kind: "alchemy".into(),
            spec: Some(serde_json::json!({})),
            file_size: None,
            priority: Default::default(),
            top_level: Default::default(),
        })
        .await
        .unwrap();
        assert_eq!(error_code(&mut conn).await, ErrorCode::BadMessage);
    });
    master_still_serves(&grid);
}

/// A well-formed result of chunk `chunk` (of 100 bases) of a search for `ACGT`: `matches` hits
/// at its first bases (results are checked against their task before they are stored).
fn chunk_result(chunk: u32, matches: u64) -> ChunkResult {
    let start = u64::from(chunk) * 100;
    let hits: Vec<_> = (start..start + matches)
        .map(|at| serde_json::json!([at, 0, "+", "ACGT"]))
        .collect();
    ChunkResult {
        chunk,
        matches,
        payload: serde_json::json!({ "record": 0, "counts": [{ "forward": matches, "reverse": 0 }], "hits": hits }),
        encoded: None,
        worker: "fake".into(),
        run: Default::default(),
    }
}

/// Leases one task as worker `fake`; returns (job, chunk, token).
async fn lease(conn: &mut Conn) -> (String, u32, String) {
    conn.write_message(&Message::Lease {
        wait_ms: 2000,
        commands: false,
        slots: None,
        genome_files: None,
        genome_partials: false,
    })
    .await
    .unwrap();
    match conn.expect_message().await.unwrap() {
        Message::Task {
            job_id,
            chunk,
            token,
            ..
        } => {
            conn.read_data().await.expect("task data frame");
            (job_id, chunk, token)
        }
        other => panic!("expected a task, got {other:?}"),
    }
}

async fn put(conn: &mut Conn, job: &str, token: &str, result: ChunkResult) -> bool {
    let message = Message::PutResult {
        job_id: job.into(),
        token: token.into(),
        result,
        parts: 0,
    };
    conn.write_message(&message).await.unwrap();
    match conn.expect_message().await.unwrap() {
        Message::ResultStored { first } => first,
        other => panic!("expected result_stored, got {other:?}"),
    }
}

#[test]
fn duplicate_results_count_once_and_cancelled_jobs_ignore_late_results() {
    let grid = Grid::start(&[]);
    let path = grid.path("g.fa");
    write_fasta(
        &path,
        &[("chr1".to_string(), Bases::new(9).take(300))],
        60,
        "\n",
    );
    let file = path.display().to_string();
    let submitted = grid.cli(&[
        "submit",
        &file,
        "-p",
        "ACGT",
        "--chunk-size",
        "100",
        "--job-id",
        "dup",
    ]);
    assert!(submitted.status.success());
    assert!(
        String::from_utf8_lossy(&submitted.stderr).contains("no active workers"),
        "submitting with no worker alive says so"
    );

    runtime().block_on(async {
        let mut worker = connect(&grid, Role::Worker, Some("fake")).await;
        let (job, chunk, token) = lease(&mut worker).await;
        assert_eq!(job, "dup");
        assert!(put(&mut worker, &job, &token, chunk_result(chunk, 5)).await);
        assert!(
            !put(&mut worker, &job, &token, chunk_result(chunk, 5)).await,
            "second delivery"
        );
        let status = grid.status("dup");
        assert_eq!(status["job"]["progress"]["processed_chunks"], 1);
        assert_eq!(status["job"]["partial_results"]["matches_found"], 5);

        let (job, late_chunk, token) = lease(&mut worker).await;
        grid.cli_ok(&["cancel", "dup"]);
        assert!(
            !put(&mut worker, &job, &token, chunk_result(late_chunk, 7)).await,
            "late result"
        );
        let status = grid.status("dup");
        assert_eq!(status["job"]["status"], "cancelled");
        assert_eq!(status["job"]["progress"]["processed_chunks"], 1);
        assert_eq!(status["job"]["partial_results"]["matches_found"], 5);

        // The cancelled job's queued task is gone: nothing left to lease.
        worker
            .write_message(&Message::Lease {
                wait_ms: 200,
                commands: false,
                slots: None,
                genome_files: None,
                genome_partials: false,
            })
            .await
            .unwrap();
        assert_eq!(worker.expect_message().await.unwrap(), Message::NoTask);
    });
}
