//! The grid on Redis over TLS (`rediss://`): a real TLS-only `redis-server` with certificates
//! made in the test, a master and a worker started with `--backend rediss://... --redis-ca`,
//! a search checked against a brute-force count; a master trusting another CA never uses the
//! server, and no printed URL shows the Redis password.

use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::pki::Ca;
use crate::support::redis_tls::{NotStarted, TlsRedis};
use crate::support::{wait_for, Proc};

const PATTERN: &str = "GATTACA";
const PASSWORD: &str = "redis-tls-password-81b2";

/// The CA, the TLS redis-server, and the certificate directory; `None` (with a loud message)
/// when this redis-server was built without TLS.
fn tls_redis() -> Option<(tempfile::TempDir, Ca, TlsRedis)> {
    let certs = tempfile::tempdir().expect("temp dir for certificates");
    let ca = Ca::new(certs.path(), "redis");
    let server = ca.server(certs.path(), "redis-server");
    match TlsRedis::start(&server.cert, &server.key, &ca.cert_file) {
        Ok(redis) => Some((certs, ca, redis)),
        Err(NotStarted::NoTlsSupport(log)) => {
            eprintln!("SKIPPED: the installed redis-server has no TLS support: {log}");
            None
        }
        Err(NotStarted::Failed(log)) => panic!("could not start a TLS redis-server: {log}"),
    }
}

fn genome(dir: &std::path::Path) -> (std::path::PathBuf, Records) {
    let mut bases = Bases::new(23);
    let mut seq = bases.take(30_000);
    for at in [0usize, 777, 12_345, 29_993] {
        seq[at..at + PATTERN.len()].copy_from_slice(PATTERN.as_bytes());
    }
    let records: Records = vec![("chrT".to_string(), seq)];
    let path = dir.join("genome.fa");
    write_fasta(&path, &records, 70, "\n");
    (path, records)
}

#[test]
fn a_search_on_a_rediss_backend_is_exact() {
    let Some((certs, ca, redis)) = tls_redis() else {
        return;
    };
    let url = redis.url();
    let ca_file = ca.cert_file.display().to_string();
    let mut grid = Grid::start(&["--backend", &url, "--redis-ca", &ca_file]);
    grid.worker_flags = vec![
        "--backend".into(),
        url.clone(),
        "--redis-ca".into(),
        ca_file.clone(),
    ];
    grid.start_worker("w1", 2);
    let (path, records) = genome(certs.path());
    let file = path.display().to_string();
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        PATTERN,
        "--chunk-size",
        "4000",
        "--job-id",
        "rediss",
        "--wait",
        "--json",
    ]);
    let total = parse_total(&grid.cli_ok(&["results", "rediss", "--format", "count"]));
    let expected = naive_hits(&records, PATTERN, false).len() as u64;
    assert!(expected >= 4, "the planted matches are there");
    assert_eq!(total, expected);
    let logs = grid.master_logs();
    assert!(
        logs.contains("rediss://127.0.0.1"),
        "the master names the TLS backend: {logs}"
    );
}

#[test]
fn a_master_trusting_another_ca_never_uses_the_server_and_hides_the_password() {
    let Some((certs, _ca, redis)) = tls_redis() else {
        return;
    };
    let other = Ca::new(certs.path(), "other");
    // The password is in the URL here on purpose: whatever the master prints must hide it.
    let url = redis
        .url()
        .replace("rediss://", &format!("rediss://:{PASSWORD}@"));
    let addr_file = certs.path().join("master.addr");
    let log = certs.path().join("master.log");
    let args: Vec<String> = [
        "master",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &certs.path().join("data").display().to_string(),
        "--addr-file",
        &addr_file.display().to_string(),
        "--backend",
        &url,
        "--redis-ca",
        &other.cert_file.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _master = Proc::spawn_logged("master", &args, &log);
    let text = wait_for(
        "the master to report Redis",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("redis unreachable").then_some(text)
        },
    );
    assert!(
        text.to_lowercase().contains("certificate"),
        "the reason names the certificate: {text}"
    );
    assert!(text.contains("rediss://***@127.0.0.1"), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "the Redis password leaked: {text}"
    );
    assert!(!addr_file.exists(), "the master serves without its backend");
}

#[test]
fn a_redis_ca_with_a_plain_url_is_a_usage_error() {
    let out = std::process::Command::new(crate::support::gridwatch_bin())
        .args([
            "master",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--backend",
            "redis://127.0.0.1:1/0",
            "--redis-ca",
            "/nonexistent/ca.pem",
        ])
        .output()
        .expect("run gridwatch master");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rediss://"), "{stderr}");
}
