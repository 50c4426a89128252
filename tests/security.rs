//! The grid as an attacker on the same network or host sees it: raw sockets speaking
//! length-prefixed JSON frames, without the token, with a wrong one, or forging an agent's
//! reports; servers started on open addresses; duplicate worker ids; a hostile agent socket
//! directory and peer; the Redis password in `ps` and logs. Each refusal leaves the honest job
//! exact.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases};
use crate::support::procs::{gridwatch, read_addr_file, wait_for, Proc};
use crate::support::watchman_grid::WatchedGrid;
use serde_json::{json, Value};

const TOKEN: &str = "correct-horse-battery-staple";
/// The uid of `nobody`, a user that is neither root nor the test's.
const NOBODY: u32 = 65534;

/// Every process the calling test starts from now on gets the cluster token.
fn with_token() {
    crate::support::procs::set_test_env("GRIDWATCH_TOKEN", TOKEN);
}

fn send(stream: &mut TcpStream, message: &Value) {
    let body = serde_json::to_vec(message).expect("JSON");
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .and_then(|()| stream.write_all(&body))
        .expect("write a frame");
}

fn receive(stream: &mut TcpStream) -> Value {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("a frame length");
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).expect("a frame body");
    serde_json::from_slice(&body).expect("a JSON frame")
}

/// Opens a raw connection and says hello; returns the stream and the answer.
fn hello(address: &str, role: &str, id: Option<&str>, token: Option<&str>) -> (TcpStream, Value) {
    let mut stream = TcpStream::connect(address).expect("connect");
    let mut hello = json!({"type": "hello", "v": 1, "role": role, "version": 1});
    if let Some(id) = id {
        hello["id"] = json!(id);
    }
    if let Some(token) = token {
        hello["token"] = json!(token);
    }
    send(&mut stream, &hello);
    let reply = receive(&mut stream);
    (stream, reply)
}

fn assert_refused(reply: &Value, code: &str) {
    assert_eq!(reply["type"], "error", "expected a refusal, got {reply}");
    assert_eq!(reply["code"], code, "{reply}");
}

/// A report that `worker` is DEAD, as an agent would send it.
fn dead_report(worker: &str) -> Value {
    json!({"type": "metrics", "v": 1, "data": {
        "worker_id": worker, "seq": 1, "timestamp": crate::support::watchman_grid::unix_now(),
        "status": "DEAD", "status_reason": "forged", "cpu_percent": 1.0, "memory_mb": 1.0,
        "memory_percent": 1.0, "disk_percent": 1.0, "tasks_processed": 0,
        "report_interval_secs": 1.0
    }})
}

#[test]
fn strangers_wrong_tokens_and_forged_reports_are_refused_and_the_job_stays_exact() {
    with_token();
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    let (job, expected) = grid.start_job_under_way(400_000);
    for address in [&grid.addr, &grid.collector_addr] {
        let (_, reply) = hello(address, "client", None, None);
        assert_refused(&reply, "unauthorized");
        let (_, reply) = hello(address, "worker", Some("w9"), Some("guess"));
        assert_refused(&reply, "unauthorized");
    }
    // Agents without the token cannot report at all.
    let (_, reply) = hello(&grid.collector_addr, "agent", Some("w1"), None);
    assert_refused(&reply, "unauthorized");
    // A token holder's agent for another worker may not report for w1...
    let (mut forger, reply) = hello(&grid.collector_addr, "agent", Some("intruder"), Some(TOKEN));
    assert_eq!(reply["type"], "welcome", "{reply}");
    send(&mut forger, &dead_report("w1"));
    assert_refused(&receive(&mut forger), "unauthorized");
    // ...nor take over w1's id while w1's agent lives.
    let (_, reply) = hello(&grid.collector_addr, "agent", Some("w1"), Some(TOKEN));
    assert_refused(&reply, "id_in_use");
    // A client connection reports nothing either.
    let (mut client, reply) = hello(&grid.collector_addr, "client", None, Some(TOKEN));
    assert_eq!(reply["type"], "welcome", "{reply}");
    send(&mut client, &dead_report("w2"));
    assert_refused(&receive(&mut client), "unauthorized");

    grid.wait_completed(&job, Duration::from_secs(60));
    assert_eq!(
        grid.total_matches(&job),
        expected,
        "the honest job is exact"
    );
    assert!(
        grid.alert("w1", "firing").is_none() && grid.alert("w2", "firing").is_none(),
        "no worker was reported dead: {:?}",
        grid.alerts()
    );
    assert_eq!(grid.reclaimed("w1"), None, "no task of w1 was re-queued");
    assert_eq!(grid.reclaimed("w2"), None, "no task of w2 was re-queued");
    assert!(
        !grid.master().log().contains(TOKEN) && !grid.collector.log().contains(TOKEN),
        "the token is never logged"
    );
}

/// Runs `gridwatch ARGS` without any token; returns (exit code, stderr) once it exits, or
/// `None` if it is still running after 3 s (it started).
fn run_without_token(dir: &Path, args: &[&str]) -> (Proc, Option<(i32, String)>) {
    let name = format!("{}-{}", args[0], args.len());
    let mut proc = Proc::spawn(&name, dir, args, &[("GRIDWATCH_TOKEN", "")]);
    let exited = proc.wait_exit_within(Duration::from_secs(3));
    let log = proc.log();
    (proc, exited.map(|code| (code, log)))
}

#[test]
fn servers_refuse_open_addresses_without_a_token_unless_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let alerts = dir.path().join("alerts.log");
    let alerts = alerts.to_str().expect("utf-8");
    let open_master = ["master", "--listen", "0.0.0.0:0", "--data-dir", data];
    let open_http = [
        "master",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
        "--data-dir",
        data,
    ];
    let open_collector = ["collector", "--listen", "0.0.0.0:0", "--alert-log", alerts];
    for args in [&open_master[..], &open_http[..], &open_collector[..]] {
        let (_, exited) = run_without_token(dir.path(), args);
        let (code, log) = exited.unwrap_or_else(|| panic!("{args:?} must refuse to start"));
        assert_eq!(code, 2, "{log}");
        assert!(
            log.contains("without a cluster token") && log.contains("0.0.0.0"),
            "{log}"
        );
    }
    let addr_file = dir.path().join("master.addr");
    let mut insecure = open_master.to_vec();
    insecure.extend([
        "--insecure",
        "--addr-file",
        addr_file.to_str().expect("utf-8"),
    ]);
    let (master, exited) = run_without_token(dir.path(), &insecure);
    assert!(exited.is_none(), "--insecure starts: {exited:?}");
    read_addr_file(&addr_file);
    assert!(master.log().contains("--insecure"), "{}", master.log());
    let mut insecure = open_collector.to_vec();
    insecure.push("--insecure");
    let (collector, exited) = run_without_token(dir.path(), &insecure);
    assert!(exited.is_none(), "--insecure starts: {exited:?}");
    wait_for("the warning", Duration::from_secs(10), || {
        collector.log().contains("--insecure").then_some(())
    });
}

/// Starts a master on loopback with its data under `dir` and `backend` as its backend; returns
/// it and the address it listens on.
fn master_on(dir: &Path, backend: &str) -> (Proc, String) {
    let addr_file = dir.join("master.addr");
    let args = master_args(&dir.join("data"), &addr_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let master = Proc::spawn("master", dir, &args, &[("GRIDWATCH_BACKEND", backend)]);
    let addr = read_addr_file(&addr_file);
    (master, addr)
}

/// The arguments of a master on loopback with its data in `data`, writing its address to
/// `addr_file`.
fn master_args(data: &Path, addr_file: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();
    vec![
        "master".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        path(data),
        "--addr-file".into(),
        path(addr_file),
    ]
}

/// Starts `gridwatch worker --id ID` against `master`; its log says whether it was accepted.
fn worker(dir: &Path, name: &str, id: &str, master: &str, backend: &str) -> Proc {
    let socket = dir.join(format!("{name}.sock"));
    let args = [
        "worker",
        "--id",
        id,
        "--master",
        master,
        "--agent-socket",
        socket.to_str().expect("utf-8"),
    ];
    Proc::spawn(name, dir, &args, &[("GRIDWATCH_BACKEND", backend)])
}

fn duplicate_ids_are_refused_while_the_first_lives(backend: &str) {
    with_token();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_master, master) = master_on(dir.path(), backend);
    let mut first = worker(dir.path(), "first", "dup", &master, backend);
    wait_for("the first worker", Duration::from_secs(20), || {
        first.log().contains("worker started").then_some(())
    });
    // An honest job runs on the first worker while the copy tries to join.
    let records = vec![("chr1".to_string(), Bases::new(21).take(300_000))];
    let fasta = dir.path().join("genome.fa");
    write_fasta(&fasta, &records, 60, "\n");
    let honest = gridwatch()
        .arg("submit")
        .arg(&fasta)
        .args([
            "-p",
            "ACGTA",
            "--chunk-size",
            "2000",
            "--wait",
            "--format",
            "count",
        ])
        .args(["--master", &master])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running gridwatch submit");
    let mut second = worker(dir.path(), "second", "dup", &master, backend);
    let code = second.wait_exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{}", second.log());
    assert!(
        second.log().contains("\"dup\" is in use by a live worker"),
        "{}",
        second.log()
    );
    let honest = honest.wait_with_output().expect("submit --wait ends");
    assert!(
        honest.status.success(),
        "the honest job failed: {}",
        String::from_utf8_lossy(&honest.stderr)
    );
    assert_eq!(
        parse_total(&String::from_utf8_lossy(&honest.stdout)),
        naive_hits(&records, "ACGTA", false).len() as u64,
        "the honest job is exact"
    );
    assert!(
        !first.log().contains("lease lost") && !first.log().contains("result refused"),
        "the first worker kept its leases: {}",
        first.log()
    );
    first.kill9();
    the_id_is_taken_back(|| worker(dir.path(), "third", "dup", &master, backend));
}

#[test]
fn a_duplicate_worker_id_is_refused_by_the_master_until_the_first_dies() {
    duplicate_ids_are_refused_while_the_first_lives("embedded");
}

#[test]
fn a_duplicate_worker_id_is_refused_in_redis_until_the_first_dies() {
    let redis = crate::support::redis::RedisServer::start();
    duplicate_ids_are_refused_while_the_first_lives(&redis.url());
}

/// One id rule on both ways into a Redis grid: a worker leasing through the master is refused an
/// id a worker reading Redis directly holds, and the other way round; once the first is killed
/// the id is free again for the other way in.
fn duplicate_id_is_refused_across_ways_in(first_way: &str, second_way: &str) {
    with_token();
    let redis = crate::support::redis::RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = redis.url();
    let (_master, master) = master_on(dir.path(), &url);
    let way = |name: &str| {
        if name == "direct" {
            url.as_str()
        } else {
            "embedded"
        }
    };
    let mut first = worker(dir.path(), "first", "dup", &master, way(first_way));
    wait_for("the first worker", Duration::from_secs(20), || {
        first.log().contains("worker started").then_some(())
    });
    let mut second = worker(dir.path(), "second", "dup", &master, way(second_way));
    let code = second.wait_exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{}", second.log());
    assert!(
        second.log().contains("\"dup\" is in use by a live worker"),
        "{}",
        second.log()
    );
    first.kill9();
    the_id_is_taken_back(|| worker(dir.path(), "third", "dup", &master, way(second_way)));
}

/// Once the first holder of an id is dead, a worker started by `start` under that id is
/// accepted within seconds (each refused try is started again).
fn the_id_is_taken_back(start: impl Fn() -> Proc) {
    wait_for("the id free again", Duration::from_secs(30), || {
        let third = start();
        let accepted = wait_for("an answer", Duration::from_secs(20), || {
            let log = third.log();
            if log.contains("worker started") {
                Some(true)
            } else if log.contains("in use by a live worker") {
                Some(false)
            } else {
                None
            }
        });
        accepted.then_some(third)
    });
}

#[test]
fn a_worker_through_a_redis_backed_master_is_refused_an_id_held_in_redis() {
    duplicate_id_is_refused_across_ways_in("direct", "through the master");
}

#[test]
fn a_worker_reading_redis_is_refused_an_id_held_through_the_master() {
    duplicate_id_is_refused_across_ways_in("through the master", "direct");
}

/// Starts an agent on `socket`; returns its exit code if it exits within 3 s.
fn agent_exit(dir: &Path, socket: &Path) -> (Proc, Option<i32>) {
    let args = [
        "agent",
        "--worker-id",
        "w1",
        "--socket",
        socket.to_str().expect("utf-8"),
        "--collector-port",
        "1",
    ];
    let name = format!("agent-{}", socket.display()).replace('/', "_");
    let mut agent = Proc::spawn(&name, dir, &args, &[]);
    let code = agent.wait_exit_within(Duration::from_secs(3));
    (agent, code)
}

#[test]
fn the_agent_refuses_a_directory_others_control_and_peers_of_another_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).expect("chown nobody");
    let (agent, code) = agent_exit(dir.path(), &theirs.join("w1.sock"));
    assert_eq!(code, Some(2), "{}", agent.log());
    assert!(
        agent.log().contains("owned by uid 65534"),
        "{}",
        agent.log()
    );
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).expect("mkdir");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let (agent, code) = agent_exit(dir.path(), &loose.join("w1.sock"));
    assert_eq!(code, Some(2), "{}", agent.log());
    assert!(agent.log().contains("mode is 1777"), "{}", agent.log());

    // A private directory: the agent starts, its own user is let in.
    let private = dir.path().join("private");
    let socket = private.join("w1.sock");
    let (_agent, code) = agent_exit(dir.path(), &socket);
    assert_eq!(code, None, "the agent runs");
    let health = |uid: Option<u32>, path: &Path| {
        let mut command = gridwatch();
        command
            .args(["health", "--agent-socket", path.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(uid) = uid {
            command.uid(uid).gid(NOBODY);
        }
        let output = command.output().expect("run health");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(health(None, &socket).0, Some(0), "the agent's own user");
    // Another user who gets past the directory (here through a hard link in an open one, with
    // the socket's mode loosened) is still refused by its credentials.
    let open = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let link = open.path().join("w1.sock");
    std::fs::hard_link(&socket, &link).expect("hard link to the socket");
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (code, stderr) = health(Some(NOBODY), &link);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("uid 65534 may not use the agent"),
        "{stderr}"
    );
}

/// A `redis-server` requiring `password`, on a free port.
struct LockedRedis {
    child: std::process::Child,
    port: u16,
}

impl LockedRedis {
    fn start(password: &str, port: u16) -> LockedRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--requirepass", password])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        wait_for("redis", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
        });
        LockedRedis { child, port }
    }
}

impl Drop for LockedRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_redis_password_stays_out_of_ps_and_logs() {
    with_token();
    let password = "pw-7c1f-never-shown";
    let dir = tempfile::tempdir().expect("temp dir");
    // Redis not running yet: the master logs that it is unreachable, without the password.
    let port = crate::support::free_port();
    let backend = format!("redis://127.0.0.1:{port}/0");
    let addr_file = dir.path().join("master.addr");
    let mut args = master_args(&dir.path().join("data"), &addr_file);
    args.extend(["--backend".to_string(), backend]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let master = Proc::spawn("master", dir.path(), &args, &[("REDIS_PASSWORD", password)]);
    wait_for("redis unreachable", Duration::from_secs(20), || {
        master.log().contains("redis unreachable").then_some(())
    });
    // A password in the URL itself is redacted from the same log line.
    let in_url = format!("redis://:{password}@127.0.0.1:{port}/0");
    // A master of its own: one data directory holds one master at a time.
    let mut url_args = master_args(
        &dir.path().join("url-data"),
        &dir.path().join("url-master.addr"),
    );
    url_args.extend(["--backend".to_string(), in_url]);
    let url_args: Vec<&str> = url_args.iter().map(String::as_str).collect();
    let url_master = Proc::spawn("url-master", dir.path(), &url_args, &[]);
    wait_for("redis unreachable", Duration::from_secs(20), || {
        url_master.log().contains("redis unreachable").then_some(())
    });
    assert!(url_master.log().contains("***@"), "{}", url_master.log());
    assert!(!url_master.log().contains(password), "{}", url_master.log());
    drop(url_master);
    // Redis starts on that port with the password: the master connects, and serves.
    let redis = LockedRedis::start(password, port);
    assert_eq!(redis.port, port);
    read_addr_file(&addr_file);
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("gridwatch"), "ps shows the processes");
    assert!(!ps.contains(password), "ps shows no password");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", master.pid())).expect("cmdline");
    assert!(!String::from_utf8_lossy(&cmdline).contains(password));
    let log = master.log();
    assert!(log.contains("connected to redis"), "{log}");
    assert!(!log.contains(password), "{log}");
}
