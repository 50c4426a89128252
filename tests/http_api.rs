//! The master's HTTP API against real processes: after a real job completes, every endpoint
//! answers with the shape and the values the job's hand-counted result implies; `/metrics` is
//! valid Prometheus text that agrees with `/jobs`; a killed worker shows as a firing alert.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{genome, WatchedGrid, PATTERN};
use serde_json::Value;

/// One HTTP response.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET path` over a fresh connection, read to the end.
fn get(addr: &str, path: &str) -> Reply {
    let reply = crate::support::http::request_with(addr, "GET", path, &[], "");
    Reply {
        status: reply.status,
        content_type: reply.header("content-type"),
        body: reply.text(),
    }
}

/// `GET path`, expecting `status` and a JSON body.
fn get_json(addr: &str, path: &str, status: u16) -> Value {
    let reply = get(addr, path);
    assert_eq!(reply.status, status, "GET {path}: {}", reply.body);
    assert!(
        reply.content_type.starts_with("application/json"),
        "GET {path}: content type {}",
        reply.content_type
    );
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", reply.body))
}

/// One sample of a Prometheus exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn is_name(text: &str, colons: bool) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses `{a="x",b="y\"z"}` (escapes `\\`, `\"`, `\n`); returns the labels and the rest.
fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').expect("labels open with {");
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("label name=\"");
        assert!(is_name(name, false), "bad label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Checks the text format's line grammar (HELP / TYPE / sample lines; every family typed once,
/// before its samples, its samples together) and returns the samples.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut families: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP name text");
            assert!(is_name(name, true), "bad HELP name in {line:?}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(is_name(name, true), "bad TYPE name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            assert!(
                typed.insert(name.into(), kind.into()).is_none(),
                "{name} typed twice"
            );
        } else if line.starts_with('#') {
            continue;
        } else {
            let name_end = line.find(['{', ' ']).expect("sample name then value");
            let name = &line[..name_end];
            assert!(is_name(name, true), "bad metric name in {line:?}");
            // A histogram's samples are NAME_bucket, NAME_sum and NAME_count.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| typed.get(*base).map(String::as_str) == Some("histogram"))
                .unwrap_or(name);
            assert!(typed.contains_key(family), "{name} sampled before its TYPE");
            let (labels, rest) = match line[name_end..].starts_with('{') {
                true => parse_labels(&line[name_end..]),
                false => (BTreeMap::new(), &line[name_end..]),
            };
            let mut fields = rest
                .strip_prefix(' ')
                .expect("space before value")
                .split(' ');
            let value = fields.next().and_then(parse_value);
            let value = value.unwrap_or_else(|| panic!("bad value in {line:?}"));
            if let Some(timestamp) = fields.next() {
                timestamp.parse::<i64>().expect("integer timestamp");
            }
            assert!(fields.next().is_none(), "trailing fields in {line:?}");
            if let Some(last) = families.last() {
                let earlier = families.iter().any(|f| f == family);
                assert!(
                    last == family || !earlier,
                    "{family}'s samples are not together"
                );
            }
            families.push(family.to_string());
            samples.push((name.to_string(), labels, value));
        }
    }
    samples
}

/// The value of the sample `name` whose labels include `labels`.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| *value)
}

fn metrics(addr: &str) -> Vec<Sample> {
    let reply = get(addr, "/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.content_type.starts_with("text/plain; version=0.0.4"));
    parse_prometheus(&reply.body)
}

/// 200 000 bases in 40 000-base chunks: 5 chunks.
const GENOME_BASES: usize = 200_000;
const CHUNK_BASES: &str = "40000";
const CHUNKS: u64 = 5;

#[test]
fn every_endpoint_reports_a_completed_job_its_workers_and_a_dead_workers_alert() {
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    endpoints_follow_a_job_and_a_worker_death(&mut grid, "embedded");
}

#[test]
fn with_redis_the_endpoints_read_what_workers_and_collector_wrote_there() {
    let redis = crate::support::redis::RedisServer::start();
    let mut grid = WatchedGrid::start_on(&redis.url(), &["w1", "w2"], "15s", &[]);
    endpoints_follow_a_job_and_a_worker_death(&mut grid, "redis");
}

/// Runs a job on `grid`, checks every endpoint against its hand-counted result, then kills w2
/// and checks that its DEAD alert shows everywhere.
fn endpoints_follow_a_job_and_a_worker_death(grid: &mut WatchedGrid, backend: &str) {
    let http = grid.http_addr();
    let (genome_file, expected) = genome(grid.dir.path(), GENOME_BASES);
    assert!(expected > 0, "the fixture has matches to count");
    grid.wait_alive(2);
    let job = grid.submit(&genome_file, CHUNK_BASES);
    grid.wait_completed(&job, Duration::from_secs(60));

    let health = get_json(&http, "/health", 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["backend"], backend);

    let jobs = get_json(&http, "/jobs", 200);
    let listed = jobs["jobs"].as_array().expect("jobs array");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["job_id"], job.as_str());
    assert_eq!(listed[0]["status"], "completed");
    assert_eq!(listed[0]["progress"]["total_chunks"], CHUNKS);
    assert_eq!(listed[0]["progress"]["processed_chunks"], CHUNKS);
    assert_eq!(listed[0]["partial_results"]["matches_found"], expected);

    let one = get_json(&http, &format!("/jobs/{job}"), 200);
    assert_eq!(one["job"], listed[0]);
    let spec = one["spec"].to_string();
    assert!(spec.contains(PATTERN), "spec names the pattern: {spec}");
    let missing = get_json(&http, "/jobs/no-such-job", 404);
    assert!(missing["error"]
        .as_str()
        .unwrap_or("")
        .contains("no-such-job"));

    let workers = wait_for(
        "both workers active over HTTP",
        Duration::from_secs(30),
        || {
            let workers = get_json(&http, "/workers", 200)["workers"].clone();
            let list = workers.as_array()?.clone();
            let active = list.iter().filter(|w| w["state"] == "active").count();
            (active == 2).then_some(list)
        },
    );
    let ids: Vec<&str> = workers
        .iter()
        .filter_map(|w| w["worker_id"].as_str())
        .collect();
    assert_eq!(ids, ["w1", "w2"]);
    for worker in &workers {
        let cpu = worker["latest"]["cpu_percent"]
            .as_f64()
            .expect("cpu percent");
        assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
        assert!(!worker["history"].as_array().expect("history").is_empty());
    }
    let tasks: u64 = workers
        .iter()
        .filter_map(|w| w["tasks_done"].as_u64())
        .sum();
    assert!(
        tasks <= CHUNKS,
        "at most one task per chunk done, no crash happened"
    );

    let stats = get_json(&http, "/stats", 200);
    assert_eq!(stats["jobs"]["completed"], 1);
    assert_eq!(stats["jobs_total"], 1);
    assert_eq!(stats["chunks_done"], CHUNKS);
    assert_eq!(stats["chunks_total"], CHUNKS);
    assert_eq!(stats["matches"], expected);

    let samples = metrics(&http);
    for status in [
        "uploading",
        "pending",
        "processing",
        "completed",
        "failed",
        "cancelled",
    ] {
        let listed_with = listed.iter().filter(|j| j["status"] == status).count() as f64;
        let exposed = metric(&samples, "gridwatch_jobs", &[("status", status)]);
        assert_eq!(
            exposed,
            Some(listed_with),
            "gridwatch_jobs{{status={status:?}}}"
        );
    }
    assert_eq!(
        metric(&samples, "gridwatch_chunks_done", &[]),
        Some(CHUNKS as f64)
    );
    assert_eq!(
        metric(&samples, "gridwatch_chunks", &[]),
        Some(CHUNKS as f64)
    );
    assert_eq!(
        metric(&samples, "gridwatch_matches", &[]),
        Some(expected as f64)
    );
    for id in ["w1", "w2"] {
        for name in ["gridwatch_host_cpu_ratio", "gridwatch_host_memory_ratio"] {
            let value = metric(&samples, name, &[("worker", id)]);
            assert!(
                value.is_some_and(|v| (0.0..=1.0).contains(&v)),
                "{name}{{worker={id:?}}}: {value:?}"
            );
        }
    }

    // A worker killed outright: its agent reports it DEAD, the collector fires a critical alert.
    grid.worker("w2").kill9();
    let alert = wait_for("w2's DEAD alert over HTTP", Duration::from_secs(30), || {
        let alerts = get_json(&http, "/alerts?limit=10", 200)["alerts"].clone();
        alerts
            .as_array()?
            .iter()
            .find(|a| {
                a["rule"] == "worker_dead" && a["worker_id"] == "w2" && a["state"] == "firing"
            })
            .cloned()
    });
    assert_eq!(alert["severity"], "critical");
    let firing = get_json(&http, "/stats", 200)["alerts_firing"]["critical"].as_u64();
    assert!(firing >= Some(1), "critical alerts firing: {firing:?}");
    let exposed = metric(
        &metrics(&http),
        "gridwatch_alerts_firing",
        &[("severity", "critical")],
    );
    assert!(
        exposed >= Some(1.0),
        "gridwatch_alerts_firing critical: {exposed:?}"
    );
    let limited = get_json(&http, "/alerts?limit=1", 200)["alerts"].clone();
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
    wait_for("w2 inactive over HTTP", Duration::from_secs(30), || {
        let workers = get_json(&http, "/workers", 200)["workers"].clone();
        let w2 = workers
            .as_array()?
            .iter()
            .find(|w| w["worker_id"] == "w2")?
            .clone();
        (w2["state"] == "inactive" && w2["status"] == "DEAD").then_some(())
    });
}

#[test]
fn a_scrape_after_a_job_has_prometheus_names_histograms_process_metrics_and_passes_promtool() {
    let grid = WatchedGrid::start(&["w1", "w2"], "15s");
    let http = grid.http_addr();
    let (genome_file, _) = genome(grid.dir.path(), GENOME_BASES);
    grid.wait_alive(2);
    let job = grid.submit(&genome_file, CHUNK_BASES);
    grid.wait_completed(&job, Duration::from_secs(60));
    // The job's end is logged once, with plain values.
    let end = wait_for("the master's job-end line", Duration::from_secs(10), || {
        grid.master()
            .log_json()
            .into_iter()
            .find(|line| line["fields"]["message"] == "job finished")
    });
    let fields = &end["fields"];
    assert_eq!(fields["job"], job.as_str(), "{end}");
    assert_eq!(fields["outcome"], "completed", "{end}");
    assert_eq!(fields["tasks"], CHUNKS, "{end}");
    assert_eq!(fields["retries"], 0, "{end}");
    assert!(
        fields["duration_seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0),
        "{end}"
    );
    // Workers report their process figures a moment after their first report.
    wait_for("worker process metrics", Duration::from_secs(30), || {
        let samples = metrics(&http);
        ["w1", "w2"]
            .iter()
            .all(|id| {
                metric(
                    &samples,
                    "gridwatch_worker_process_resident_memory_bytes",
                    &[("worker", id)],
                )
                .is_some_and(|bytes| bytes > 1e6)
            })
            .then_some(())
    });

    let reply = get(&http, "/metrics");
    let samples = parse_prometheus(&reply.body);
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", reply.body))
    };
    for (name, _, _) in &samples {
        assert!(
            !name.contains("percent"),
            "{name}: a ratio is 0-1, named _ratio"
        );
    }
    for line in reply.body.lines().filter(|l| l.starts_with("# TYPE ")) {
        if line.ends_with(" counter") {
            let name = line.split(' ').nth(2).unwrap_or("");
            assert!(
                name.ends_with("_total"),
                "counter {name} is not named _total"
            );
        }
    }
    assert_eq!(value("gridwatch_tasks_acked_total", &[]), CHUNKS as f64);
    assert_eq!(
        value(
            "gridwatch_task_duration_seconds_count",
            &[("kind", "search")]
        ),
        CHUNKS as f64
    );
    assert_eq!(
        value(
            "gridwatch_task_duration_seconds_bucket",
            &[("kind", "search"), ("le", "+Inf")]
        ),
        CHUNKS as f64
    );
    assert!(value("gridwatch_task_duration_seconds_sum", &[("kind", "search")]) > 0.0);
    assert_eq!(value("gridwatch_job_duration_seconds_count", &[]), 1.0);
    assert_eq!(
        value("gridwatch_jobs_finished_total", &[("outcome", "completed")]),
        1.0
    );
    assert!(value("gridwatch_uploaded_bytes_total", &[]) >= GENOME_BASES as f64);
    assert!(value("gridwatch_searched_bytes_total", &[]) >= GENOME_BASES as f64);
    for priority in ["high", "medium", "low"] {
        assert_eq!(
            value("gridwatch_queue_tasks", &[("priority", priority)]),
            0.0
        );
    }
    assert_eq!(value("gridwatch_leases_in_flight", &[]), 0.0);
    for name in [
        "gridwatch_task_retries_total",
        "gridwatch_tasks_requeued_total",
        "gridwatch_tasks_dead_lettered_total",
    ] {
        assert_eq!(value(name, &[]), 0.0, "{name}");
    }
    // CPU time counts in 10 ms ticks: a master this idle may not have used one yet.
    assert!(value("process_cpu_seconds_total", &[]) >= 0.0);
    let started = value("process_start_time_seconds", &[]);
    let now = crate::support::watchman_grid::unix_now();
    assert!(
        started <= now && started > now - 600.0,
        "started {started}, now {now}"
    );
    assert!(value("process_resident_memory_bytes", &[]) > 1e6);
    for id in ["w1", "w2"] {
        let cpu = value("gridwatch_worker_process_cpu_ratio", &[("worker", id)]);
        assert!(cpu >= 0.0, "{id}: {cpu}");
    }
    promtool_check(grid.dir.path(), &reply.body);
}

/// `promtool check metrics` on `text`, when promtool is installed (scripts/test.sh installs it).
fn promtool_check(dir: &std::path::Path, text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        crate::support::skip_without("promtool is not installed (Debian package prometheus)");
        return;
    };
    std::fs::write(dir.join("metrics.txt"), text).expect("save the scrape");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

#[test]
fn a_fresh_master_serves_empty_views_json_404s_and_a_self_contained_dashboard() {
    let grid = crate::support::grid::Grid::start(&[]);
    let http = grid.http_addr();
    assert_eq!(get_json(&http, "/jobs", 200)["jobs"], serde_json::json!([]));
    assert_eq!(
        get_json(&http, "/workers", 200)["workers"],
        serde_json::json!([])
    );
    assert_eq!(
        get_json(&http, "/alerts", 200)["alerts"],
        serde_json::json!([])
    );
    let stats = get_json(&http, "/stats", 200);
    assert_eq!(
        (stats["jobs_total"].as_u64(), stats["chunks_total"].as_u64()),
        (Some(0), Some(0))
    );
    let missing = get_json(&http, "/jobs/nope", 404);
    assert_eq!(missing["error"], "no job with id \"nope\"");
    let bad = get_json(&http, "/alerts?limit=many", 400);
    assert!(
        bad["error"].as_str().unwrap_or("").contains("limit"),
        "{bad}"
    );
    let unknown = get_json(&http, "/nowhere", 404);
    let hint = unknown["error"].as_str().unwrap_or("").to_string();
    assert!(hint.contains("/nowhere"), "{hint}");
    // The hint names the documented endpoints, and every path it names is served: a GET of
    // each reaches a handler (a missing job or worker, or a POST-only route, but never "no such
    // endpoint").
    let (_, named) = hint
        .split_once("try ")
        .expect("the hint lists the endpoints");
    let named: Vec<&str> = named.split(", ").collect();
    for documented in [
        "/health",
        "/jobs",
        "/jobs/ID",
        "/jobs/ID/results",
        "/workers",
        "/workers/ID/forget",
        "/alerts",
        "/stats",
        "/metrics",
    ] {
        assert!(named.contains(&documented), "{documented} in {hint}");
    }
    for path in named {
        let reply = get(&http, &path.replace("ID", "nope"));
        assert!(
            !reply.body.contains("no such endpoint"),
            "the hint names {path}, which is not served"
        );
    }
    let samples = metrics(&http);
    assert_eq!(
        metric(&samples, "gridwatch_jobs", &[("status", "completed")]),
        Some(0.0)
    );
    assert_eq!(
        metric(&samples, "gridwatch_workers", &[("state", "active")]),
        Some(0.0)
    );

    let page = get(&http, "/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let uses = [
        "\"stats\"",
        "\"workers\"",
        "\"jobs?limit=100\"",
        "\"stats/history\"",
        "\"alerts?limit=20\"",
        "createElement(\"canvas\")",
    ];
    for endpoint in uses {
        assert!(
            page.body.contains(endpoint),
            "the dashboard uses {endpoint}"
        );
    }
    for external in ["http://", "https://", "src=", "@import", "href=\"//"] {
        assert!(
            !page.body.contains(external),
            "the dashboard loads nothing external: {external}"
        );
    }
    // Its one link is the icon, served by the master itself.
    let links: Vec<&str> = page
        .body
        .match_indices("<link")
        .map(|(i, _)| &page.body[i..])
        .collect();
    assert_eq!(links.len(), 1, "one <link>");
    assert!(
        links[0].starts_with("<link rel=\"icon\" href=\"favicon.svg\""),
        "{}",
        &links[0][..60]
    );
    let icon = get(&http, "/favicon.svg");
    assert_eq!(icon.status, 200);
    assert!(icon.content_type.starts_with("image/svg+xml"));
    assert_eq!(
        get(&http, "/favicon.ico").status,
        200,
        "browsers asking /favicon.ico get no 404"
    );
}

#[test]
fn up_prints_the_dashboard_url_and_serves_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("up.log");
    let args: Vec<String> = [
        "up",
        "--workers",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut up = crate::support::Proc::spawn_logged("up", &args, &log);
    let text = wait_for("up to describe the grid", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("press Ctrl-C").then_some(text)
    });
    let http_addr = std::fs::read_to_string(data.join("http.addr")).expect("http.addr");
    let url = format!("http://{}/", http_addr.trim());
    assert!(text.contains(&format!("dashboard {url}")), "{text}");
    assert_eq!(get_json(http_addr.trim(), "/health", 200)["status"], "ok");
    assert_eq!(get(http_addr.trim(), "/").status, 200);
    up.signal(nix::sys::signal::Signal::SIGTERM);
    let status = up.wait_exit(Duration::from_secs(30)).expect("up exits");
    assert!(status.success(), "up exit status {status}");
    assert!(
        TcpStream::connect(http_addr.trim()).is_err(),
        "the HTTP API stopped with the master"
    );
}

/// Command tasks ending each way there is (exit 0, exit 3, killed by a signal, past the
/// timeout) are counted by how they ended, with one duration each, and the scrape stays valid.
#[test]
fn command_task_metrics_count_each_ending_and_pass_promtool() {
    let mut grid = crate::support::grid::Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    command_endings_are_counted_by_class(&mut grid);
}

/// On Redis the workers store their results without the master: the same endings are counted
/// all the same, once each.
#[test]
fn on_redis_command_task_metrics_count_each_ending() {
    let redis = crate::support::redis::RedisServer::start();
    let url = redis.url();
    let mut grid = crate::support::grid::Grid::start_on(Some(&url), &[]);
    grid.worker_flags.push("--allow-commands".into());
    command_endings_are_counted_by_class(&mut grid);
}

fn command_endings_are_counted_by_class(grid: &mut crate::support::grid::Grid) {
    grid.start_worker("w1", 2);
    let http = grid.http_addr();
    let script = "case {i} in 1) exit 0;; 2) exit 3;; 3) kill -9 $$;; 4) sleep 60;; esac";
    crate::command_tasks::submit(
        grid,
        "endings",
        &["--array", "1-4", "--timeout", "1s"],
        &["sh", "-c", script],
    );
    let status = grid.wait_finished("endings", Duration::from_secs(120));
    assert_eq!(status["job"]["status"], "failed", "{status}");
    // A job's tasks are counted when the master notices the job's end, a moment after it.
    let name = "gridwatch_command_task_duration_seconds";
    let reply = wait_for("the job's tasks counted", Duration::from_secs(30), || {
        let reply = get(&http, "/metrics");
        let samples = parse_prometheus(&reply.body);
        (metric(&samples, &format!("{name}_count"), &[])? >= 4.0).then_some(reply)
    });
    let samples = parse_prometheus(&reply.body);
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", reply.body))
    };
    // One task per ending, by the script's cases above.
    let expected = [
        ("ok", 1.0),
        ("exit_nonzero", 1.0),
        ("signal", 1.0),
        ("timeout", 1.0),
        ("memory", 0.0),
    ];
    for (outcome, count) in expected {
        assert_eq!(
            value("gridwatch_command_tasks_total", &[("outcome", outcome)]),
            count,
            "{outcome}"
        );
    }
    assert_eq!(value(&format!("{name}_count"), &[]), 4.0);
    assert_eq!(value(&format!("{name}_bucket"), &[("le", "+Inf")]), 4.0);
    // The timed-out task ran at least its second.
    assert!(value(&format!("{name}_sum"), &[]) >= 1.0);
    assert!(value(&format!("{name}_bucket"), &[("le", "0.5")]) <= 3.0);
    promtool_check(grid.dir.path(), &reply.body);
}
