//! Forged results against a real master, embedded and on Redis. The attacker is a raw socket
//! speaking length-prefixed JSON frames (a tokenless loopback master lets anyone in, so it needs
//! no token): it sends `put_result` for a task another worker holds, with guessed tokens, for
//! chunks and jobs that do not exist, and with huge match counts; then, holding a real lease,
//! payloads that are not honest results (counts that disagree with the match count, a payload
//! that is not a search result at all, a hit outside the chunk). Every forgery is refused,
//! nothing is stored, and each is counted in `/metrics`; on Redis the same forgeries through the
//! backend's own Lua scripts are refused too. The honest job then completes with exactly the
//! naive count, in `status` and in `results` alike.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::redis::RedisServer;
use gridwatch::backend::redis::{RedisBackend, RedisOptions};
use gridwatch::backend::{
    BackendError, ChunkResult, Lease, Leases, RefusalReason, ResultSink, ResultStore,
};
use serde_json::{json, Value};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// One protocol connection, written by hand: 4-byte big-endian length, then the payload.
struct RawConn(TcpStream);

impl RawConn {
    /// Connects and says hello as worker `id`, with no token.
    fn worker(addr: &str, id: &str) -> Self {
        Self::try_worker(addr, id).unwrap_or_else(|| panic!("worker {id} was not welcomed"))
    }

    /// Like `worker`, but `None` if the master refuses the hello (an id already in use).
    fn try_worker(addr: &str, id: &str) -> Option<Self> {
        let stream = TcpStream::connect(addr).expect("connecting to the master");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut conn = RawConn(stream);
        conn.send(&json!({ "type": "hello", "role": "worker", "version": 1, "id": id }));
        (conn.recv()["type"] == "welcome").then_some(conn)
    }

    fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).expect("JSON");
        self.0
            .write_all(&(body.len() as u32).to_be_bytes())
            .and_then(|()| self.0.write_all(&body))
            .expect("sending a frame");
    }

    fn frame(&mut self) -> Vec<u8> {
        let mut prefix = [0u8; 4];
        self.0.read_exact(&mut prefix).expect("frame length");
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.0.read_exact(&mut body).expect("frame body");
        body
    }

    fn recv(&mut self) -> Value {
        serde_json::from_slice(&self.frame()).expect("a JSON frame")
    }

    /// Leases a task; returns (job, chunk, token).
    fn lease(&mut self) -> (String, u32, String) {
        self.send(&json!({ "type": "lease", "wait_ms": 5000 }));
        let task = self.recv();
        assert_eq!(task["type"], "task", "{task}");
        self.frame(); // the task's input
        let job = task["job_id"].as_str().expect("job id").to_string();
        let chunk = task["chunk"].as_u64().expect("chunk") as u32;
        (
            job,
            chunk,
            task["token"].as_str().expect("token").to_string(),
        )
    }

    /// Sends a result (one search chunk with `matches` forward matches) and returns the reply.
    fn put(&mut self, job: &str, chunk: u32, token: &str, matches: u64) -> Value {
        let payload =
            json!({ "record": 0, "counts": [{ "forward": matches, "reverse": 0 }], "hits": [] });
        self.put_payload(job, chunk, token, matches, payload)
    }

    /// Sends a result claiming `matches` with any `payload` and returns the reply.
    fn put_payload(
        &mut self,
        job: &str,
        chunk: u32,
        token: &str,
        matches: u64,
        payload: Value,
    ) -> Value {
        self.send(&json!({
            "type": "put_result",
            "job_id": job,
            "token": token,
            "result": { "chunk": chunk, "matches": matches, "payload": payload, "worker": "anyone" },
        }));
        self.recv()
    }

    fn must_be_refused(&mut self, job: &str, chunk: u32, token: &str, matches: u64) {
        let reply = self.put(job, chunk, token, matches);
        assert_eq!(reply["type"], "error", "forgery accepted: {reply}");
        assert_eq!(reply["code"], "result_refused", "{reply}");
    }

    fn nack(&mut self, job: &str, chunk: u32, token: &str) {
        self.send(&json!({
            "type": "nack", "job_id": job, "chunk": chunk, "token": token, "error": "gave up",
        }));
        assert_eq!(self.recv()["type"], "nacked");
    }
}

/// `GET path` on the HTTP API; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    crate::support::http::request_with(addr, "GET", path, &[], "").text()
}

/// The `gridwatch_results_refused_total` sample for `reason`.
fn refused_in_metrics(grid: &Grid, reason: &str) -> u64 {
    let metrics = http_get(&grid.http_addr(), "/metrics");
    let sample = format!("gridwatch_results_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&sample))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{metrics}"))
}

fn genome(grid: &Grid) -> (String, Records) {
    let mut bases = Bases::new(11);
    let records: Records = vec![("chr1".into(), bases.take(3000))];
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    (path.display().to_string(), records)
}

/// Which forgeries were refused for what, to check against the metrics.
#[derive(Default)]
struct Refused {
    not_holder: u64,
    no_such_task: u64,
    out_of_range: u64,
    bad_payload: u64,
}

/// Payloads a lease holder might store for a search chunk of 500 bases starting at `offset`
/// (of record 0, pattern `ACG`), each with the match count it claims; none is an honest result.
fn forged_payloads(offset: u64) -> Vec<(u64, Value)> {
    let hit = |start: u64| json!([start, 0, "+", "ACG"]);
    vec![
        // Counts far beyond the stated match count: `results` would disagree with `status`.
        (
            0,
            json!({ "record": 0, "counts": [{ "forward": 1_000_000_000_000_000u64, "reverse": 0 }], "hits": [] }),
        ),
        // Not a search result at all: the job would complete with unreadable results.
        (0, json!("hello")),
        (0, json!({ "record": 0 })),
        // A hit past the chunk's owned range, and one before it.
        (
            1,
            json!({ "record": 0, "counts": [{ "forward": 1, "reverse": 0 }], "hits": [hit(offset + 500)] }),
        ),
        (
            1,
            json!({ "record": 0, "counts": [{ "forward": 1, "reverse": 0 }], "hits": [hit(offset.wrapping_sub(1))] }),
        ),
        // A count with no position behind it, and a strand the job does not search.
        (
            1,
            json!({ "record": 0, "counts": [{ "forward": 1, "reverse": 0 }], "hits": [] }),
        ),
        (
            1,
            json!({ "record": 0, "counts": [{ "forward": 0, "reverse": 1 }], "hits": [[offset, 0, "-", "CGT"]] }),
        ),
        // Another record, and a pattern the job does not have.
        (
            0,
            json!({ "record": 7, "counts": [{ "forward": 0, "reverse": 0 }], "hits": [] }),
        ),
        (
            1,
            json!({ "record": 0, "counts": [{ "forward": 1, "reverse": 0 }], "hits": [[offset, 3, "+", "ACG"]] }),
        ),
    ]
}

/// Submits the honest job, then forges results for it over the master's port. Leaves both
/// leases it took returned (nacked), so a worker can finish the job.
fn forge_over_the_protocol(grid: &Grid, refused: &mut Refused) -> (String, Records) {
    let (file, records) = genome(grid);
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "ACG",
        "--chunk-size",
        "500",
        "--job-id",
        "honest",
    ]);
    let mut victim = RawConn::worker(&grid.addr, "victim");
    let mut mallory = RawConn::worker(&grid.addr, "mallory");
    let (job, held, held_token) = victim.lease();
    let (_, own, own_token) = mallory.lease();
    assert_eq!(job, "honest");

    // A task another worker holds: with the attacker's own token, with guessed tokens, and
    // from a second connection that claims the victim's id but must guess its token.
    mallory.must_be_refused(&job, held, &own_token, 1);
    for guess in ["1", "2", "3/0-1/x"] {
        mallory.must_be_refused(&job, held, guess, 1);
    }
    refused.not_holder += 4;
    if let Some(mut impostor) = RawConn::try_worker(&grid.addr, "victim") {
        impostor.must_be_refused(&job, held, &format!("{held_token}0"), 1);
        refused.not_holder += 1;
    }
    // Chunks and jobs that do not exist.
    mallory.must_be_refused(&job, 99_999, &own_token, 1);
    mallory.must_be_refused("nope", 0, &own_token, 1);
    refused.no_such_task += 2;
    // Huge values on the attacker's own lease: a chunk of 500 bases holds at most 500 ACGs.
    for huge in [i64::MAX as u64, i64::MAX as u64, u64::MAX] {
        mallory.must_be_refused(&job, own, &own_token, huge);
    }
    refused.out_of_range += 3;

    // Payloads that are not honest results, on the attacker's own lease.
    let offset = u64::from(own) * 500;
    for (matches, payload) in forged_payloads(offset) {
        let reply = mallory.put_payload(&job, own, &own_token, matches, payload.clone());
        assert_eq!(
            reply["code"], "result_refused",
            "{payload} accepted: {reply}"
        );
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains("(bad_payload)"), "{payload}: {reply}");
        refused.bad_payload += 1;
    }

    // A forged ack or extension does nothing.
    mallory.send(&json!({ "type": "ack", "job_id": job, "chunk": held, "token": own_token }));
    assert_eq!(mallory.recv()["type"], "acked");
    mallory.send(&json!({ "type": "extend", "job_id": job, "chunk": held, "token": own_token }));
    assert_eq!(mallory.recv()["held"], false);

    // Nothing was stored, and every listing still works.
    let status = grid.status("honest");
    assert_eq!(status["job"]["progress"]["processed_chunks"], 0, "{status}");
    grid.cli_ok(&["jobs"]);
    http_get(&grid.http_addr(), "/stats");

    victim.nack(&job, held, &held_token);
    mallory.nack(&job, own, &own_token);
    (job, records)
}

/// Runs a worker and checks the job's count against the naive one, and the refusals counted.
fn finish_and_check(grid: &mut Grid, job: &str, records: &Records, refused: &Refused) {
    grid.start_worker("w1", 2);
    let status = grid.wait_finished(job, JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = naive_hits(records, "ACG", false).len() as u64;
    assert!(expected > 20, "the fixture should have matches");
    assert_eq!(parse_total(&grid.cli_ok(&["results", job])), expected);
    assert_eq!(status["job"]["partial_results"]["matches_found"], expected);
    assert_eq!(refused_in_metrics(grid, "not_holder"), refused.not_holder);
    assert_eq!(
        refused_in_metrics(grid, "no_such_task"),
        refused.no_such_task
    );
    assert_eq!(
        refused_in_metrics(grid, "out_of_range"),
        refused.out_of_range
    );
    assert_eq!(refused_in_metrics(grid, "bad_payload"), refused.bad_payload);
    assert!(refused.bad_payload > 0, "the payload forgeries ran");
    let results_json: Value =
        serde_json::from_str(&grid.cli_ok(&["results", job, "--format", "json"]))
            .expect("results --format json is JSON");
    let positions = results_json["hits"].as_array().map(Vec::len);
    assert_eq!(
        positions,
        Some(expected as usize),
        "positions agree with the count"
    );
    assert!(
        grid.master_logs().contains("result refused"),
        "refusals are logged as warnings"
    );
    // Each refusal raises an alert (one per worker and reason per minute), naming the worker whose
    // connection sent it; the alert is an event, so it does not stay in the firing count.
    let alerts: Value = serde_json::from_str(&http_get(&grid.http_addr(), "/alerts?limit=100"))
        .expect("/alerts is JSON");
    let refusal_alerts: Vec<&Value> = alerts
        .as_array()
        .or_else(|| alerts["alerts"].as_array())
        .expect("/alerts lists alerts")
        .iter()
        .filter(|a| a["rule"] == "result_refused" && a["state"] == "firing")
        .collect();
    let reasons = [
        ("not_holder", refused.not_holder),
        ("no_such_task", refused.no_such_task),
        ("out_of_range", refused.out_of_range),
        ("bad_payload", refused.bad_payload),
    ];
    for (reason, count) in reasons.into_iter().filter(|(_, count)| *count > 0) {
        assert!(
            refusal_alerts.iter().any(|a| a["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("({reason})")))
                && a["worker_id"] == "mallory"),
            "no result_refused alert for mallory ({reason}, {count} refused): {alerts}"
        );
    }
    let firing_now = serde_json::from_str::<Value>(&http_get(&grid.http_addr(), "/stats"))
        .expect("/stats is JSON")["alerts_firing"]["warning"]
        .as_u64();
    assert_eq!(firing_now, Some(0), "a refusal alert is resolved at once");
}

#[test]
fn forged_results_are_refused_by_an_embedded_master() {
    let mut grid = Grid::start(&[]);
    let mut refused = Refused::default();
    let (job, records) = forge_over_the_protocol(&grid, &mut refused);
    finish_and_check(&mut grid, &job, &records, &refused);
}

#[test]
fn forged_results_are_refused_on_redis_through_the_master_and_the_scripts() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut grid = Grid::start_on(Some(&url), &[]);
    let mut refused = Refused::default();
    let (job, records) = forge_over_the_protocol(&grid, &mut refused);

    // A process that reaches Redis itself forges through the backend's scripts.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let backend = RedisBackend::connect(&url, RedisOptions::default())
            .await
            .expect("connecting to redis")
            .with_result_check(gridwatch::jobs::result_check());
        let own = backend
            .lease("mallory", Duration::from_secs(5))
            .await
            .expect("lease")
            .expect("a task to lease");
        let other_chunk = if own.id.chunk == 0 { 1 } else { 0 };
        let forge = |edit: &dyn Fn(&mut Lease)| {
            let mut lease = own.clone();
            edit(&mut lease);
            lease
        };
        let forgeries = [
            // Another chunk, with the attacker's own delivery.
            (
                forge(&|l| l.id.chunk = other_chunk),
                RefusalReason::NotHolder,
                1,
            ),
            // The right chunk under someone else's name.
            (
                forge(&|l| l.worker = "victim".into()),
                RefusalReason::NotHolder,
                1,
            ),
            // The right entry with a guessed nonce.
            (
                forge(&|l| l.token = format!("{}0", l.token)),
                RefusalReason::NotHolder,
                1,
            ),
            (
                forge(&|l| l.id.chunk = 99_999),
                RefusalReason::NoSuchTask,
                1,
            ),
            (own.clone(), RefusalReason::OutOfRange, u64::MAX),
        ];
        for (lease, reason, matches) in forgeries {
            let forged = ChunkResult {
                chunk: lease.id.chunk,
                matches,
                payload: json!({ "record": 0, "counts": [], "hits": [] }),
                encoded: None,
                worker: "mallory".into(),
                run: Default::default(),
            };
            match backend.put_chunk_result(&lease, &forged).await {
                Err(BackendError::Refused { reason: got, .. }) => assert_eq!(got, reason),
                other => panic!("forgery {:?} not refused: {other:?}", lease.id),
            }
        }
        refused.not_holder += 3;
        refused.no_such_task += 1;
        refused.out_of_range += 1;
        // A process that stores its own results checks them before they reach Redis.
        let offset = u64::from(own.id.chunk) * 500;
        for (matches, payload) in forged_payloads(offset) {
            let forged = ChunkResult {
                chunk: own.id.chunk,
                matches,
                payload: payload.clone(),
                encoded: None,
                worker: "mallory".into(),
                run: Default::default(),
            };
            match backend.put_chunk_result(&own, &forged).await {
                Err(BackendError::Refused { reason, .. }) => {
                    assert_eq!(reason, RefusalReason::BadPayload, "{payload}")
                }
                other => panic!("forged payload {payload} not refused: {other:?}"),
            }
            refused.bad_payload += 1;
        }
        assert_eq!(own.id.job, job);
        backend.nack(&own, "gave up").await.expect("nack");
        assert_eq!(
            backend.progress(&job).await.expect("progress").done_chunks,
            0
        );
    });
    finish_and_check(&mut grid, &job, &records, &refused);
}
