//! One rate limiter for every way in, on each backend: many `submit_batch` messages on one
//! connection, many HTTP `POST /jobs` and jobs of many tasks are each cut off exactly at the
//! configured jobs and tasks per minute (each attacker on its own loopback address, so each has
//! its own budget); after the window an honest job is accepted and runs exactly.

use std::time::{Duration, Instant};

use crate::support::raw::connect_from;
use gridwatch::protocol::{BatchJob, Connection, ErrorCode, Message, Role, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JOBS_PER_MINUTE: usize = 30;
const TASKS_PER_MINUTE: usize = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client connection from `source`, past its hello.
async fn client(source: [u8; 4], addr: &str) -> Connection<tokio::net::TcpStream> {
    let stream = connect_from(source, addr).await.expect("connect");
    let mut conn = Connection::new(stream);
    let hello = Message::Hello {
        role: Role::Client,
        version: PROTOCOL_VERSION,
        token: None,
        id: None,
        instance: None,
    };
    conn.write_message(&hello).await.expect("hello");
    match conn.expect_message().await.expect("welcome") {
        Message::Welcome { .. } => conn,
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn particles(id: String) -> BatchJob {
    BatchJob {
        job_id: id,
        kind: "particles".into(),
        spec: serde_json::json!({ "particles": 4, "steps": 4, "seed": 1 }),
        priority: Default::default(),
        algorithm: None,
        description: None,
    }
}

fn banded_julia(id: String, bands: u32) -> BatchJob {
    BatchJob {
        job_id: id,
        kind: "julia".into(),
        spec: serde_json::json!({ "width": 24, "height": 16, "iterations": 10, "bands": bands }),
        priority: Default::default(),
        algorithm: None,
        description: None,
    }
}

/// Sends `messages` batches built by `batch` on one connection; returns the jobs accepted and
/// the refusal messages.
async fn send_batches(
    conn: &mut Connection<tokio::net::TcpStream>,
    messages: usize,
    batch: impl Fn(usize) -> Vec<BatchJob>,
) -> (usize, Vec<String>) {
    let (mut accepted, mut refusals) = (0, Vec::new());
    for m in 0..messages {
        let message = Message::SubmitBatch {
            source: "flood.json".into(),
            jobs: batch(m),
        };
        conn.write_message(&message).await.expect("send");
        match conn.expect_message().await.expect("a reply") {
            Message::BatchAccepted { jobs, .. } => {
                accepted += jobs.iter().filter(|job| !job.existing).count()
            }
            Message::Error { code, message, .. } => {
                assert_eq!(code, ErrorCode::RateLimited, "{message}");
                refusals.push(message);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (accepted, refusals)
}

/// One HTTP request from `source`; returns the status and body.
async fn post_from(source: [u8; 4], addr: &str, body: &str) -> (u16, String) {
    let mut stream = connect_from(source, addr).await.expect("connect");
    let request = format!(
        "POST /jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn every_way_in_is_cut_off_at_the_limits(redis: bool) {
    let jobs_flag = JOBS_PER_MINUTE.to_string();
    let tasks_flag = TASKS_PER_MINUTE.to_string();
    let (mut grid, _redis) = crate::support::honest::grid(
        redis,
        &[
            "--jobs-per-minute",
            &jobs_flag,
            "--tasks-per-minute",
            &tasks_flag,
        ],
    );
    let http = grid.http_addr();
    let started = Instant::now();
    runtime().block_on(async {
        // 20 messages of 5 jobs on one connection: 6 fit 30 jobs a minute.
        let mut conn = client([127, 0, 0, 2], &grid.addr).await;
        let (accepted, refusals) = send_batches(&mut conn, 20, |m| {
            (0..5).map(|j| particles(format!("flood-{m}-{j}"))).collect()
        })
        .await;
        assert_eq!(accepted, JOBS_PER_MINUTE);
        assert_eq!(refusals.len(), 14);
        assert!(refusals[0].contains("--jobs-per-minute"), "{}", refusals[0]);

        // 40 POSTs of one job from another address: 30 created.
        let mut created = 0;
        for i in 0..40 {
            let body = format!(
                r#"{{"task_id":"post-{i}","algorithm":"python","parameters":{{"num_particles":4,"num_steps":4,"seed":{i}}}}}"#
            );
            let (status, text) = post_from([127, 0, 0, 3], &http, &body).await;
            match status {
                201 => created += 1,
                429 => assert!(text.contains("--jobs-per-minute"), "{text}"),
                other => panic!("POST /jobs: {other} {text}"),
            }
        }
        assert_eq!(created, JOBS_PER_MINUTE);

        // Jobs of 16 tasks from a third address: 6 fit 100 tasks a minute.
        let mut conn = client([127, 0, 0, 4], &grid.addr).await;
        let (accepted, refusals) =
            send_batches(&mut conn, 10, |m| vec![banded_julia(format!("bands-{m}"), 16)]).await;
        assert_eq!(accepted, TASKS_PER_MINUTE / 16);
        assert!(refusals[0].contains("--tasks-per-minute"), "{}", refusals[0]);
    });
    let flood_jobs = crate::support::honest::job_ids(&grid).len();
    assert_eq!(flood_jobs, 2 * JOBS_PER_MINUTE + TASKS_PER_MINUTE / 16);

    // The window is a minute: once it has passed, the first address may submit again. The
    // limiter is the master's whatever the backend, so the minute is waited out once; on Redis
    // a fresh address shows the grid still takes work.
    let honest_from = if redis {
        [127, 0, 0, 5]
    } else {
        std::thread::sleep(
            (started + Duration::from_secs(61)).saturating_duration_since(Instant::now()),
        );
        [127, 0, 0, 2]
    };
    runtime().block_on(async {
        let mut conn = client(honest_from, &grid.addr).await;
        let (accepted, refusals) = send_batches(&mut conn, 1, |_| {
            vec![BatchJob {
                job_id: "honest".into(),
                kind: "julia".into(),
                spec: serde_json::json!({ "width": 24, "height": 16, "iterations": 60 }),
                priority: Default::default(),
                algorithm: None,
                description: None,
            }]
        })
        .await;
        assert_eq!((accepted, refusals.len()), (1, 0), "{refusals:?}");
    });
    grid.start_worker("w1", 2);
    crate::support::honest::assert_exact(&grid, "honest");
}

#[test]
fn every_way_in_is_cut_off_at_the_limits_embedded() {
    every_way_in_is_cut_off_at_the_limits(false);
}

#[test]
fn every_way_in_is_cut_off_at_the_limits_redis() {
    every_way_in_is_cut_off_at_the_limits(true);
}
