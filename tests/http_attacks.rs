//! The HTTP port and the protocol port under attack from raw sockets: cross-site writes and
//! foreign `Host` names, floods of slow HTTP connections and of protocol connections that never
//! greet, and many large renders at once. Each test measures what an honest client sees during
//! the attack, then runs an honest job and checks it exactly against the plain reference loop.

use std::time::{Duration, Instant};

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::http::{request_with, Reply};
use crate::support::julia::{reference, Spec};
use crate::support::raw::{
    client_hello, connect_from, frame, peak_rss_kib, persistent_flood, read_json,
};
use crate::support::redis::RedisServer;
use crate::support::wait_for;
use tokio::io::AsyncWriteExt;

const JOB_TIMEOUT: Duration = Duration::from_secs(180);
/// What an honest request may take during a flood, on a machine three times slower than ours.
const HONEST_BOUND: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

fn get(http: &str, path: &str) -> Reply {
    request_with(http, "GET", path, &[], "")
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("a JSON body ({e}): {}", reply.text()))
}

/// The job's status over HTTP, once it exists.
fn http_status(http: &str, job: &str) -> Option<String> {
    let reply = get(http, &format!("/jobs/{job}"));
    (reply.status == 200).then(|| json(&reply)["job"]["status"].as_str().unwrap_or("").into())
}

fn wait_completed(http: &str, job: &str) {
    wait_for("the job to complete", JOB_TIMEOUT, || {
        (http_status(http, job).as_deref() == Some("completed")).then_some(())
    });
}

/// Rows of `counts` text (one line per row, tab-separated).
fn parse_counts(text: &str) -> Vec<Vec<u32>> {
    text.lines()
        .map(|line| {
            line.split('\t')
                .map(|n| n.parse().expect("a count"))
                .collect()
        })
        .collect()
}

/// Posts a Julia job as a client that is not a browser, runs it, and checks every pixel's
/// count against the reference loop.
fn honest_julia_job(grid: &mut Grid, job: &str) {
    let http = grid.http_addr();
    if grid.workers.is_empty() {
        grid.start_worker("w1", 2);
    }
    let spec = Spec::classic(48, 36, 60);
    let task = format!(
        r#"{{"task_id": "{job}", "algorithm": "julia",
            "parameters": {{"width": 48, "height": 36, "iterations": 60}}}}"#
    );
    let headers = [("Content-Type", "application/json")];
    let reply = request_with(&http, "POST", "/jobs", &headers, &task);
    assert_eq!(reply.status, 201, "{}", reply.text());
    wait_completed(&http, job);
    assert_counts_match(&http, job, spec);
}

fn assert_counts_match(http: &str, job: &str, spec: Spec) {
    let reply = get(http, &format!("/jobs/{job}/results?format=counts"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let rows = parse_counts(&reply.text());
    let (width, height, expected) = reference(spec);
    assert_eq!(rows.len(), height);
    assert!(rows.iter().all(|row| row.len() == width));
    assert!(
        rows.concat() == expected,
        "the grid's counts differ from the reference loop"
    );
}

/// Job ids the HTTP API lists.
fn listed_jobs(http: &str) -> Vec<String> {
    let reply = get(http, "/jobs");
    assert_eq!(reply.status, 200, "{}", reply.text());
    json(&reply)["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job_id"].as_str().map(str::to_string))
        .collect()
}

const CSV: &str = "algorithm,width,height,iterations,priority\njulia,40,30,50,high\n";

#[test]
fn cross_site_writes_and_foreign_hosts_are_refused() {
    let mut grid = Grid::start(&["--http-allowed-host", "grid.example"]);
    let http = grid.http_addr();
    let port = http.rsplit(':').next().expect("a port").to_string();

    // A page on another site posts a form-like body (no preflight): refused, nothing created.
    let cross_site = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    let reply = request_with(&http, "POST", "/jobs", &cross_site, CSV);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply.text().contains("--http-allowed-host"),
        "{}",
        reply.text()
    );
    let fetch_metadata = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Content-Type", "text/plain"),
    ];
    let reply = request_with(&http, "POST", "/jobs", &fetch_metadata, CSV);
    assert_eq!(reply.status, 403, "{}", reply.text());
    let null_origin = [("Origin", "null"), ("Content-Type", "text/plain")];
    let reply = request_with(&http, "POST", "/jobs", &null_origin, CSV);
    assert_eq!(reply.status, 403, "{}", reply.text());

    // A name of the attacker's that resolves here (DNS rebinding): refused for reads and writes.
    let evil_port = format!("evil.example:{port}");
    for host in ["evil.example", evil_port.as_str()] {
        for path in ["/health", "/jobs", "/", "/metrics"] {
            let reply = request_with(&http, "GET", path, &[("Host", host)], "");
            assert_eq!(reply.status, 421, "GET {path} as {host}: {}", reply.text());
        }
        let rebound = [
            ("Host", host),
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ];
        let reply = request_with(&http, "POST", "/jobs", &rebound, CSV);
        assert_eq!(reply.status, 421, "{}", reply.text());
        assert!(
            reply.text().contains("--http-allowed-host"),
            "{}",
            reply.text()
        );
        let same_origin_rebound = [("Host", host), ("Origin", "http://evil.example")];
        let reply = request_with(&http, "DELETE", "/jobs/x", &same_origin_rebound, "");
        assert_eq!(reply.status, 421, "{}", reply.text());
    }
    assert!(
        listed_jobs(&http).is_empty(),
        "a refused write created a job"
    );

    // The dashboard's own origin, by address and by the loopback name, may write.
    let own_origin = format!("http://{http}");
    let same_origin = [
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("Content-Type", "text/plain"),
    ];
    let reply = request_with(&http, "POST", "/jobs", &same_origin, CSV);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let created: Vec<String> = json(&reply)["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(listed_jobs(&http), created);
    let localhost = format!("localhost:{port}");
    let localhost_origin = format!("http://localhost:{port}");
    let reply = request_with(&http, "GET", "/health", &[("Host", &localhost)], "");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = request_with(&http, "GET", "/health", &[("Host", "grid.example")], "");
    assert_eq!(reply.status, 200, "a name given by flag: {}", reply.text());
    // Another loopback origin than the request's host is another site.
    let mixed = [
        ("Host", http.as_str()),
        ("Origin", localhost_origin.as_str()),
    ];
    let reply = request_with(
        &http,
        "DELETE",
        &format!("/jobs/{}", created[0]),
        &mixed,
        "",
    );
    assert_eq!(reply.status, 403, "{}", reply.text());

    grid.start_worker("w1", 2);
    wait_completed(&http, &created[0]);
    assert_counts_match(&http, &created[0], Spec::classic(40, 30, 50));
    honest_julia_job(&mut grid, "after-cross-site");
}

#[test]
fn writes_need_the_token_through_the_one_gate() {
    let grid = Grid::start(&["--token", "a-token-for-the-gate"]);
    let http = grid.http_addr();
    let own_origin = format!("http://{http}");
    for (method, path) in [
        ("POST", "/jobs"),
        ("DELETE", "/jobs/none"),
        ("POST", "/workers/w9/forget"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer a-token-for-the-gat"),
        ] {
            let mut headers = vec![("Origin", own_origin.as_str())];
            if let Some(auth) = auth {
                headers.push(("Authorization", auth));
            }
            let reply = request_with(&http, method, path, &headers, CSV);
            assert_eq!(
                reply.status,
                401,
                "{method} {path} {auth:?}: {}",
                reply.text()
            );
            assert_eq!(reply.header("www-authenticate"), "Bearer");
        }
    }
    assert!(listed_jobs(&http).is_empty());
    let headers = [
        ("Authorization", "Bearer a-token-for-the-gate"),
        ("Content-Type", "text/plain"),
    ];
    let reply = request_with(&http, "POST", "/jobs", &headers, CSV);
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// A client's hello and `list_jobs` over the protocol, from 127.0.0.1; how long it took.
async fn protocol_round_trip(master: &str) -> Duration {
    let started = Instant::now();
    let mut stream = connect_from([127, 0, 0, 1], master).await.expect("connect");
    stream.write_all(&client_hello()).await.expect("hello");
    let welcome = read_json(&mut stream).await.expect("welcome");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    stream
        .write_all(&frame(br#"{"v":1,"type":"list_jobs"}"#))
        .await
        .expect("list_jobs");
    let jobs = read_json(&mut stream).await.expect("jobs");
    assert_eq!(jobs["type"], "jobs", "{jobs}");
    started.elapsed()
}

#[test]
fn a_slow_http_flood_leaves_the_http_and_protocol_ports_answering() {
    let mut grid = Grid::start(&[
        "--http-max-connections",
        "32",
        "--http-max-connections-per-address",
        "16",
        "--http-max-unauthenticated-connections",
        "32",
        "--http-header-timeout",
        "4",
        "--http-idle-timeout",
        "8",
    ]);
    let (http, master) = (grid.http_addr(), grid.addr.clone());
    let pid = grid.master.as_ref().expect("master").pid();
    let baseline_fds = open_fds(pid);
    let until = Instant::now() + Duration::from_secs(20);
    let (slowest_http, slowest_protocol, most_fds, opened) = runtime().block_on(async {
        // 240 sockets from 16 addresses, one header byte every 2 s, or silent; each reconnects
        // half a second after the master closes it.
        let slow = tokio::spawn(persistent_flood(
            http.clone(),
            160,
            10,
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1",
            Duration::from_secs(2),
            Duration::from_millis(500),
            until,
        ));
        let silent = tokio::spawn(persistent_flood(
            http.clone(),
            80,
            10,
            b"",
            Duration::from_secs(2),
            Duration::from_millis(500),
            until,
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (mut slowest_http, mut slowest_protocol, mut most_fds) =
            (Duration::ZERO, Duration::ZERO, 0);
        while Instant::now() + Duration::from_secs(2) < until {
            let addr = http.clone();
            let took = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let reply = get(&addr, "/health");
                assert_eq!(reply.status, 200, "{}", reply.text());
                started.elapsed()
            })
            .await
            .expect("health");
            slowest_http = slowest_http.max(took);
            slowest_protocol = slowest_protocol.max(protocol_round_trip(&master).await);
            most_fds = most_fds.max(open_fds(pid));
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let opened = slow.await.expect("flood") + silent.await.expect("flood");
        (slowest_http, slowest_protocol, most_fds, opened)
    });
    eprintln!(
        "slow HTTP flood: {opened} attacking connections; slowest honest GET /health \
         {slowest_http:?}, slowest protocol round trip {slowest_protocol:?}; master fds at \
         most {most_fds} (before {baseline_fds})"
    );
    assert!(
        slowest_http < HONEST_BOUND,
        "GET /health took {slowest_http:?}"
    );
    assert!(
        slowest_protocol < HONEST_BOUND,
        "the protocol took {slowest_protocol:?}"
    );
    // The pool of connections without a request (32), the served ones (32) and their queue
    // bound what the flood holds, far below the 240 sockets it keeps open.
    assert!(
        most_fds < baseline_fds + 130,
        "the master held {most_fds} descriptors"
    );
    honest_julia_job(&mut grid, "after-http-flood");
}

#[test]
fn a_pre_hello_flood_from_thirty_addresses_leaves_room_for_clients() {
    let mut grid = Grid::start(&[
        "--max-unauthenticated-connections",
        "64",
        "--hello-timeout",
        "5",
    ]);
    let master = grid.addr.clone();
    let until = Instant::now() + Duration::from_secs(25);
    let runtime = runtime();
    // 1,400 sockets from 30 addresses (47 each) that never greet; each reconnects a second
    // after the master closes it.
    let flood = runtime.spawn(persistent_flood(
        master.clone(),
        1400,
        47,
        b"",
        Duration::from_secs(2),
        Duration::from_secs(1),
        until,
    ));
    std::thread::sleep(Duration::from_secs(3));
    let (mut slowest_health, mut slowest_status) = (Duration::ZERO, Duration::ZERO);
    while Instant::now() + Duration::from_secs(3) < until {
        for (command, slowest) in [
            (&["health"][..], &mut slowest_health),
            (&["jobs", "--json"][..], &mut slowest_status),
        ] {
            let started = Instant::now();
            let output = grid.cli(command);
            let took = started.elapsed();
            assert!(
                output.status.success(),
                "gridwatch {command:?} failed during the flood: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            *slowest = (*slowest).max(took);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let opened = runtime.block_on(flood).expect("flood");
    eprintln!(
        "pre-hello flood: {opened} connections from 30 addresses; slowest honest `health` \
         {slowest_health:?}, `jobs` {slowest_status:?}"
    );
    assert!(
        slowest_health < HONEST_BOUND,
        "health took {slowest_health:?}"
    );
    assert!(
        slowest_status < HONEST_BOUND,
        "jobs took {slowest_status:?}"
    );
    honest_julia_job(&mut grid, "after-pre-hello-flood");
}

/// A render's pixels: RGB bytes of the PNG, with its width and height.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0u8; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut pixels).expect("a PNG frame");
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

#[test]
fn many_large_renders_at_once_stay_in_bounded_memory() {
    let mut grid = Grid::start(&["--http-max-renders", "2"]);
    let http = grid.http_addr();
    grid.start_worker("w1", 2);
    // 16.7 M pixels at one iteration: quick to compute, heavy to render whole (its counts
    // alone are 64 MiB as integers, several times that as JSON values).
    let spec = Spec::classic(4096, 4096, 1);
    let task = r#"{"task_id": "big", "algorithm": "julia",
        "parameters": {"width": 4096, "height": 4096, "iterations": 1}}"#;
    let reply = request_with(&http, "POST", "/jobs", &[], task);
    assert_eq!(reply.status, 201, "{}", reply.text());
    wait_completed(&http, "big");
    let pid = grid.master.as_ref().expect("master").pid();
    let before_kib = peak_rss_kib(pid);

    // Six at once, two more kinds of heavy read beside them; those over the limit are told to
    // come back, and come back until served.
    let paths = [
        "/jobs/big/image.png",
        "/jobs/big/image.png",
        "/jobs/big/image.png",
        "/jobs/big/image.png",
        "/jobs/big/image.png",
        "/jobs/big/image.png",
        "/jobs/big/results?format=counts",
        "/jobs/big",
    ];
    let replies: Vec<(String, Reply, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .map(|path| {
                let http = http.clone();
                scope.spawn(move || {
                    let mut refused = 0;
                    loop {
                        let reply = get(&http, path);
                        if reply.status != 503 {
                            return (path.to_string(), reply, refused);
                        }
                        assert_eq!(reply.header("retry-after"), "5");
                        assert!(
                            reply.text().contains("--http-max-renders"),
                            "{}",
                            reply.text()
                        );
                        refused += 1;
                        assert!(refused < 200, "{path} never served");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect()
    });
    let peak_kib = peak_rss_kib(pid);
    let refusals: usize = replies.iter().map(|(_, _, refused)| refused).sum();

    let (width, height, counts) = reference(spec);
    let expected_rgb = gridwatch::julia::colorize(&counts, 1);
    let expected_sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    for (path, reply, _) in &replies {
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        if path.ends_with("image.png") {
            let (w, h, rgb) = decode_png(&reply.body);
            assert_eq!((w as usize, h as usize), (width, height));
            assert!(
                rgb == expected_rgb,
                "{path}: the pixels differ from the reference"
            );
        } else if path.contains("counts") {
            assert!(
                parse_counts(&reply.text()).concat() == counts,
                "counts differ"
            );
        } else {
            let job = json(reply);
            assert_eq!(
                job["result"]["iterations_sum"], expected_sum,
                "{}",
                job["result"]
            );
        }
    }
    eprintln!(
        "renders: master peak RSS {} MiB after the job, {} MiB after 8 heavy reads at once \
         ({refusals} answers of 503 on the way)",
        before_kib / 1024,
        peak_kib / 1024
    );
    // One band (128 rows of 4096 pixels: 2 MiB as integers, 1 MiB as text) per render, two
    // renders at once, over what the master held already: a whole render would take more
    // than 300 MiB by itself.
    assert!(
        peak_kib < before_kib + 96 * 1024,
        "peak {peak_kib} KiB, {before_kib} KiB before the renders"
    );
    honest_julia_job(&mut grid, "after-renders");
}

fn task_pages_are_the_right_slices(redis_url: Option<String>) {
    let mut grid = Grid::start_on(redis_url.as_deref(), &[]);
    let http = grid.http_addr();
    grid.start_worker("w1", 2);
    grid.cli_ok(&[
        "submit",
        "julia",
        "--width",
        "16",
        "--height",
        "150",
        "--iterations",
        "20",
        "--bands",
        "150",
        "--job-id",
        "paged",
    ]);
    wait_completed(&http, "paged");
    let chunks = |path: &str| -> Vec<u64> {
        let reply = get(&http, path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        json(&reply)["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["chunk"].as_u64().expect("chunk"))
            .collect()
    };
    assert_eq!(chunks("/jobs/paged"), (0..100).collect::<Vec<u64>>());
    assert_eq!(
        chunks("/jobs/paged?offset=37&limit=5"),
        (37..42).collect::<Vec<u64>>()
    );
    assert_eq!(
        chunks("/jobs/paged?offset=140&limit=50"),
        (140..150).collect::<Vec<u64>>()
    );
    assert_eq!(chunks("/jobs/paged?offset=7&limit=1"), vec![7]);
    assert!(chunks("/jobs/paged?offset=150").is_empty());
    let capped = json(&get(&http, "/jobs/paged?limit=5000"));
    assert_eq!(capped["tasks_page"]["limit"], 1000);
    assert_eq!(capped["tasks"].as_array().map(Vec::len), Some(150));
    let bad = get(&http, "/jobs/paged?offset=-1");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_counts_match(&http, "paged", Spec::classic(16, 150, 20));
}

#[test]
fn task_pages_are_the_right_slices_embedded() {
    task_pages_are_the_right_slices(None);
}

#[test]
fn task_pages_are_the_right_slices_redis() {
    let redis = RedisServer::start();
    task_pages_are_the_right_slices(Some(redis.url()));
}

/// A search whose chunks store their positions in several parts each: `count` over HTTP reads
/// them part by part and must equal a naive scan's counts, per pattern and in total.
fn a_search_count_reads_stored_parts_one_at_a_time(redis_url: Option<String>) {
    let mut grid = Grid::start_on(redis_url.as_deref(), &[]);
    let http = grid.http_addr();
    grid.start_worker("w1", 2);
    let records: Records = vec![
        ("chr1".into(), Bases::new(11).take(1_500_000)),
        ("chr2".into(), Bases::new(12).take(700_000)),
    ];
    let path = grid.path("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    let file = path.display().to_string();
    // N matches every base: a chunk of a million bases stores about 20 MB of positions, five
    // parts of 4 MiB.
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "N",
        "-p",
        "ACGTA",
        "--chunk-size",
        "1000000",
        "--job-id",
        "many",
    ]);
    wait_completed(&http, "many");
    let reply = get(&http, "/jobs/many/results?format=count");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let per_pattern: Vec<u64> = text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("total"))
        .map(|l| {
            l.rsplit('\t')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a count")
        })
        .collect();
    // N is any base: it matches once at every base of these ACGT records.
    let bases: usize = records.iter().map(|(_, seq)| seq.len()).sum();
    let expected = [
        bases as u64,
        naive_hits(&records, "ACGTA", false).len() as u64,
    ];
    assert_eq!(per_pattern, expected, "{text}");
    assert_eq!(parse_total(&text), expected.iter().sum::<u64>());
    assert_eq!(
        text,
        grid.cli_ok(&["results", "many"]),
        "the CLI prints the same"
    );
}

#[test]
fn a_search_count_reads_stored_parts_one_at_a_time_embedded() {
    a_search_count_reads_stored_parts_one_at_a_time(None);
}

#[test]
fn a_search_count_reads_stored_parts_one_at_a_time_redis() {
    let redis = RedisServer::start();
    a_search_count_reads_stored_parts_one_at_a_time(Some(redis.url()));
}
