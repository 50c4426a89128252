//! The grid protocol over TLS, with real processes on free ports and certificates made in the
//! test: a search through a TLS master and worker is exact; a plain-text socket, a client that
//! trusts another CA and a TLS client without the token all get no service, and the master goes
//! on serving honest clients; a TLS client pointed at a plain master is told so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::pki::Ca;
use crate::support::wait_for;

const TOKEN: &str = "tls-test-token-5f3a9c";
const PATTERN: &str = "ACGTA";

/// A master serving TLS with a certificate from `ca`, a token, and one worker over TLS.
struct TlsGrid {
    grid: Grid,
    ca: Ca,
    certs: tempfile::TempDir,
    token_file: String,
}

impl TlsGrid {
    fn start() -> TlsGrid {
        let certs = tempfile::tempdir().expect("temp dir for certificates");
        let ca = Ca::new(certs.path(), "grid");
        let server = ca.server(certs.path(), "master");
        let token_file = certs.path().join("token");
        std::fs::write(&token_file, TOKEN).expect("write the token file");
        let token_file = token_file.display().to_string();
        let mut grid = Grid::start(&[
            "--tls-cert",
            &server.cert.display().to_string(),
            "--tls-key",
            &server.key.display().to_string(),
            "--token-file",
            &token_file,
            "--hello-timeout",
            "1",
        ]);
        grid.worker_flags = vec![
            "--tls-ca".into(),
            ca.cert_file.display().to_string(),
            "--token-file".into(),
            token_file.clone(),
        ];
        grid.start_worker("w1", 2);
        TlsGrid {
            grid,
            ca,
            certs,
            token_file,
        }
    }

    fn ca(&self) -> String {
        self.ca.cert_file.display().to_string()
    }

    /// A client command with the right CA and token; `extra` first.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let ca = self.ca();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--tls-ca", &ca, "--token-file", &self.token_file]);
        self.grid.cli(&all)
    }

    /// Submits a search of `genome` and returns its total, checked to be exact.
    fn search_is_exact(&self, genome: &Path, records: &Records, job: &str) {
        let file = genome.display().to_string();
        let out = self.cli(&[
            "submit",
            &file,
            "-p",
            PATTERN,
            "--chunk-size",
            "5000",
            "--job-id",
            job,
            "--wait",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "submit over TLS failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.cli(&["results", job, "--format", "count"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let total = parse_total(&String::from_utf8_lossy(&out.stdout));
        let expected = naive_hits(records, PATTERN, false).len() as u64;
        assert!(expected > 0, "the fixture has matches");
        assert_eq!(total, expected, "job {job}");
    }
}

fn genome(dir: &Path) -> (std::path::PathBuf, Records) {
    let mut bases = Bases::new(11);
    let records: Records = vec![
        ("chr1".to_string(), bases.take(40_000)),
        ("chr2".to_string(), bases.take(23_456)),
    ];
    let path = dir.join("genome.fa");
    write_fasta(&path, &records, 60, "\n");
    (path, records)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Reads one grid frame (length, then JSON) from a raw socket, or `None` at a close.
fn read_frame(socket: &mut TcpStream) -> Option<String> {
    let mut len = [0u8; 4];
    socket.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    socket.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// Whether the peer closes the socket (no more bytes, EOF or reset) within a few seconds.
fn closes_soon(socket: &mut TcpStream) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut rest = Vec::new();
    match socket.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_search_through_a_tls_master_and_worker_is_exact_and_keeps_the_token_out_of_logs() {
    let tls = TlsGrid::start();
    let (path, records) = genome(tls.grid.dir.path());
    tls.search_is_exact(&path, &records, "tls-search");
    let logs = tls.grid.master_logs();
    assert!(
        logs.contains("\"tls\":true"),
        "the master says it serves TLS: {logs}"
    );
    let worker_log = std::fs::read_to_string(tls.grid.path("w1.log")).expect("the worker's log");
    assert!(
        !logs.contains(TOKEN) && !worker_log.contains(TOKEN),
        "the token leaked"
    );
    // Clients that exit without a TLS close alert end their connection like any other.
    assert!(!logs.contains("close_notify"), "{logs}");
}

#[test]
fn plain_text_sockets_get_no_service_from_a_tls_master() {
    let tls = TlsGrid::start();
    let (path, records) = genome(tls.grid.dir.path());

    // A plain-text client with the right token: told to use TLS in its own protocol, then
    // closed; never welcomed.
    let mut socket = TcpStream::connect(&tls.grid.addr).expect("connect");
    let hello =
        format!(r#"{{"v":1,"type":"hello","role":"client","version":1,"token":"{TOKEN}"}}"#);
    socket
        .write_all(&(hello.len() as u32).to_be_bytes())
        .expect("write");
    socket.write_all(hello.as_bytes()).expect("write");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let reply = read_frame(&mut socket).expect("an error frame in plain text");
    assert!(
        reply.contains("\"error\"") && reply.contains("TLS"),
        "{reply}"
    );
    assert!(!reply.contains("welcome"), "{reply}");
    assert!(closes_soon(&mut socket), "the plain connection is closed");

    // Bytes that look like a TLS record but are not: the handshake fails and the socket closes.
    let mut socket = TcpStream::connect(&tls.grid.addr).expect("connect");
    socket
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .expect("write");
    assert!(closes_soon(&mut socket), "a broken handshake is closed");

    // A socket that says nothing is closed after the hello timeout (1 s here).
    let mut silent = TcpStream::connect(&tls.grid.addr).expect("connect");
    assert!(closes_soon(&mut silent), "a silent connection is closed");

    // The command-line client without --tls-ca is told what to do.
    let out = tls.grid.cli(&["jobs", "--token-file", &tls.token_file]);
    assert!(!out.status.success(), "a plain client got service");
    assert!(stderr(&out).contains("--tls-ca"), "{}", stderr(&out));

    // The master is still up and exact for an honest client.
    tls.search_is_exact(&path, &records, "after-plain");
}

#[test]
fn a_client_or_worker_trusting_another_ca_is_refused() {
    let mut tls = TlsGrid::start();
    let (path, records) = genome(tls.grid.dir.path());
    let other = Ca::new(tls.certs.path(), "other");
    let other_ca = other.cert_file.display().to_string();

    let out = tls.grid.cli(&[
        "jobs",
        "--tls-ca",
        &other_ca,
        "--token-file",
        &tls.token_file,
    ]);
    assert!(
        !out.status.success(),
        "a client trusting another CA got service"
    );
    let message = stderr(&out);
    assert!(
        message.contains("certificate") && message.contains("--tls-ca"),
        "{message}"
    );
    assert_eq!(out.status.code(), Some(2), "a fixable mistake: {message}");

    // A worker trusting another CA stops with the reason instead of retrying forever.
    tls.grid.worker_flags = vec![
        "--tls-ca".into(),
        other_ca.clone(),
        "--token-file".into(),
        tls.token_file.clone(),
    ];
    tls.grid.start_worker("w-wrong-ca", 1);
    let status = tls
        .grid
        .worker("w-wrong-ca")
        .wait_exit(Duration::from_secs(20))
        .expect("the worker with the wrong CA exits");
    assert!(!status.success());
    let log = std::fs::read_to_string(tls.grid.path("w-wrong-ca.log")).expect("worker log");
    assert!(log.contains("certificate"), "{log}");

    tls.search_is_exact(&path, &records, "after-wrong-ca");
}

#[test]
fn tls_does_not_replace_the_cluster_token() {
    let tls = TlsGrid::start();
    let ca = tls.ca();
    let out = tls.grid.cli(&["jobs", "--tls-ca", &ca]);
    assert!(
        !out.status.success(),
        "a TLS client without the token got service"
    );
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    let out = tls
        .grid
        .cli(&["jobs", "--tls-ca", &ca, "--token", "not-the-token"]);
    assert!(
        !out.status.success(),
        "a TLS client with a wrong token got service"
    );
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    // With both, it works.
    let out = tls.cli(&["jobs"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_tls_client_at_a_plain_master_is_told_it_speaks_no_tls() {
    let grid = Grid::start(&[]);
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(certs.path(), "grid");
    let out = grid.cli(&["jobs", "--tls-ca", &ca.cert_file.display().to_string()]);
    assert!(
        !out.status.success(),
        "a TLS handshake with a plain master succeeded?"
    );
    assert!(
        stderr(&out).contains("does not speak TLS"),
        "{}",
        stderr(&out)
    );
    // The plain master still serves plain clients.
    grid.cli_ok(&["jobs"]);
}

#[test]
fn half_a_certificate_pair_is_a_usage_error() {
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(certs.path(), "grid");
    let server = ca.server(certs.path(), "master");
    let out = std::process::Command::new(crate::support::gridwatch_bin())
        .args([
            "master",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--tls-cert",
        ])
        .arg(&server.cert)
        .output()
        .expect("run gridwatch master");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

/// `GET path` on a plain HTTP address; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    let (_, _, body) = crate::support::http::request(addr, "GET", path, None, "");
    String::from_utf8_lossy(&body).into_owned()
}

#[test]
fn agents_report_to_a_tls_collector_which_reaches_a_tls_master() {
    use crate::support::procs::{read_addr_file, wait_for, Proc as RoleProc};

    let dir = tempfile::tempdir().expect("temp dir");
    let at = |name: &str| dir.path().join(name).display().to_string();
    let ca = Ca::new(dir.path(), "grid");
    let master_files = ca.server(dir.path(), "master");
    let collector_files = ca.server(dir.path(), "collector");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
    let ca_file = ca.cert_file.display().to_string();
    let token = at("token");
    let _master = RoleProc::spawn(
        "master",
        dir.path(),
        &[
            "master",
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            &at("master.addr"),
            "--http-addr-file",
            &at("http.addr"),
            "--data-dir",
            &at("data"),
            "--tls-cert",
            &master_files.cert.display().to_string(),
            "--tls-key",
            &master_files.key.display().to_string(),
            "--token-file",
            &token,
        ],
        &[],
    );
    let master_addr = read_addr_file(&dir.path().join("master.addr"));
    let collector = RoleProc::spawn(
        "collector",
        dir.path(),
        &[
            "collector",
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            &at("collector.addr"),
            "--master",
            &master_addr,
            "--alert-log",
            &at("alerts.log"),
            "--tls-cert",
            &collector_files.cert.display().to_string(),
            "--tls-key",
            &collector_files.key.display().to_string(),
            "--tls-ca",
            &ca_file,
            "--token-file",
            &token,
        ],
        &[],
    );
    let collector_addr = read_addr_file(&dir.path().join("collector.addr"));
    let (host, port) = collector_addr.rsplit_once(':').expect("host:port");
    let socket = at("w1.sock");
    let _agent = RoleProc::spawn(
        "agent",
        dir.path(),
        &[
            "agent",
            "--worker-id",
            "w1",
            "--socket",
            &socket,
            "--collector-host",
            host,
            "--collector-port",
            port,
            "--report-interval",
            "1s",
            "--tls-ca",
            &ca_file,
            "--token-file",
            &token,
        ],
        &[],
    );
    let _worker = RoleProc::spawn(
        "worker",
        dir.path(),
        &[
            "worker",
            "--id",
            "w1",
            "--master",
            &master_addr,
            "--agent-socket",
            &socket,
            "--tls-ca",
            &ca_file,
            "--token-file",
            &token,
        ],
        &[],
    );
    // The worker's view reaches the master's store only through agent → collector (TLS) →
    // master (TLS).
    let http = read_addr_file(&dir.path().join("http.addr"));
    wait_for(
        "w1 alive in the master's view",
        Duration::from_secs(30),
        || {
            let body = http_get(&http, "/workers");
            (body.contains("\"w1\"") && body.contains("ALIVE")).then_some(())
        },
    );

    // A plain-text agent at the TLS collector is turned away.
    let _plain_agent = RoleProc::spawn(
        "plain-agent",
        dir.path(),
        &[
            "agent",
            "--worker-id",
            "w2",
            "--socket",
            &at("w2.sock"),
            "--collector-host",
            host,
            "--collector-port",
            port,
            "--report-interval",
            "1s",
            "--token-file",
            &token,
        ],
        &[],
    );
    wait_for(
        "the collector to refuse the plain agent",
        Duration::from_secs(20),
        || collector.log().contains("plain-text client").then_some(()),
    );
    assert!(!http_get(&http, "/workers").contains("\"w2\""));
    assert!(!collector.log().contains(TOKEN), "the token leaked");
}

#[test]
fn a_busy_tls_master_says_so_over_tls() {
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(certs.path(), "grid");
    let server = ca.server(certs.path(), "master");
    let mut grid = Grid::start(&[
        "--tls-cert",
        &server.cert.display().to_string(),
        "--tls-key",
        &server.key.display().to_string(),
        "--max-connections",
        "1",
        "--connection-queue",
        "0",
        "--hello-timeout",
        "10",
    ]);
    // A greeted worker holds the only slot (a silent socket would not: connections that have
    // not greeted wait in a pool of their own), so a client is turned away, over TLS.
    let ca_file = ca.cert_file.display().to_string();
    grid.worker_flags = vec!["--tls-ca".into(), ca_file.clone()];
    grid.start_worker("w1", 1);
    let refusal = wait_for("a client refused as busy", Duration::from_secs(30), || {
        let out = grid.cli(&["jobs", "--tls-ca", &ca_file]);
        (!out.status.success()).then(|| stderr(&out))
    });
    assert!(refusal.contains("server busy"), "{refusal}");
}

/// A TLS handshake cut short (a stalled or restarting master hangs up mid-handshake) is a lost
/// connection like any other: the client connects again and gets its answer, instead of ending
/// with advice to check that the master serves TLS.
#[test]
fn a_client_retries_a_tls_handshake_the_master_hung_up_on() {
    let tls = TlsGrid::start();
    let front = crate::support::proxy::CuttableProxy::start(&tls.grid.addr);
    front.hang_up_on_next(1);
    let out = std::process::Command::new(crate::support::gridwatch_bin())
        .args(["jobs", "--json", "--master"])
        .arg(format!("127.0.0.1:{}", front.port()))
        .args(["--tls-ca", &tls.ca(), "--token-file", &tls.token_file])
        .output()
        .expect("run gridwatch jobs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        front.accepted() >= 2,
        "the client did not connect again: {} connection(s)",
        front.accepted()
    );
    let listing: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("jobs --json prints JSON");
    assert!(listing["active_workers"].is_u64(), "{listing}");
}
