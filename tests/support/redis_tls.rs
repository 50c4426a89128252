//! A real `redis-server` speaking only TLS, for tests: a free port, a temporary directory, the
//! certificate and key it is given, killed when dropped. Ready once it logs that it accepts
//! connections (a plain PING cannot tell: the server answers TLS only).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One TLS-only `redis-server` owned by a test.
pub struct TlsRedis {
    child: Child,
    port: u16,
    /// Holds the server's working directory until the server is gone.
    _dir: TempDir,
}

/// Why no server was started.
pub enum NotStarted {
    /// This redis-server was built without TLS: the test cannot run here.
    NoTlsSupport(String),
    /// It failed for another reason.
    Failed(String),
}

impl TlsRedis {
    /// Starts a server with `cert`/`key` (clients are not asked for certificates).
    pub fn start(cert: &Path, key: &Path, ca: &Path) -> Result<TlsRedis, NotStarted> {
        let mut last = String::new();
        // A port picked free can be taken before redis binds it: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for redis-server");
            let port = free_port();
            let log_path = dir.path().join("redis.log");
            let log = std::fs::File::create(&log_path).expect("redis log file");
            let child = Command::new("redis-server")
                .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no", "--daemonize", "no"])
                .arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .map_err(|e| NotStarted::Failed(format!("spawning redis-server: {e}")))?;
            let mut server = TlsRedis {
                child,
                port,
                _dir: dir,
            };
            match server.wait_ready(&log_path) {
                Ok(()) => return Ok(server),
                Err(text) if text.contains("not supported") || text.contains("Bad directive") => {
                    return Err(NotStarted::NoTlsSupport(text))
                }
                Err(text) => last = text,
            }
        }
        Err(NotStarted::Failed(last))
    }

    /// `rediss://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server exited with {status}: {text}"));
            }
            if text.contains("Ready to accept connections") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server not ready within {START_TIMEOUT:?}"))
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
