//! A real `redis-server` for tests: started on a free port in its own temporary directory,
//! ready once it answers PING, killed when dropped. Optionally persists with an append-only file
//! so a test can restart it and find its data again, or requires a password, so a test can check
//! that the password reaches only the processes that need it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the server persists its data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// Memory only.
    None,
    /// Append-only file, fsync on every write: nothing acknowledged is lost in a restart.
    AofAlways,
    /// Append-only file, fsync once a second, as the shipped deployment runs Redis
    /// (`--appendonly yes`).
    // The backends benchmark, which includes this file, runs it.
    #[allow(dead_code)]
    AofEverySec,
}

/// One `redis-server` child process owned by a test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    persistence: Persistence,
    /// The `requirepass` the server was started with, if any.
    password: Option<String>,
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> Self {
        Self::start_with(Persistence::None, None)
    }

    /// A server without persistence that refuses every command until a client sends
    /// `AUTH password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Persistence::None, Some(password.to_string()))
    }

    /// A server writing an append-only file (fsync on every write), so it survives a restart.
    pub fn start_with_aof() -> Self {
        Self::start_with(Persistence::AofAlways, None)
    }

    /// A server configured as the shipped deployment runs it: append-only file, fsync every second.
    // The backends benchmark, which includes this file, runs it.
    #[allow(dead_code)]
    pub fn start_like_the_deployment() -> Self {
        Self::start_with(Persistence::AofEverySec, None)
    }

    fn start_with(persistence: Persistence, password: Option<String>) -> Self {
        let mut last_error = String::new();
        // A port picked free can be taken by someone else before redis binds it: try a few.
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir for redis-server"),
                persistence,
                password: password.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// `redis://127.0.0.1:PORT/0`, without the password: a process started with a password gets
    /// it from `REDIS_PASSWORD` or `--redis-password-file`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (SIGTERM: it flushes its append-only file), waits for it to
    /// exit, then starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop_gracefully();
        self.spawn_and_wait()
            .unwrap_or_else(|e| panic!("redis-server did not come back: {e}"));
    }

    /// Stops the server gracefully and leaves it down until [`RedisServer::start_again`].
    pub fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again on the same port and directory.
    pub fn start_again(&mut self) {
        self.spawn_and_wait()
            .unwrap_or_else(|e| panic!("redis-server did not come back: {e}"));
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the server (SIGSTOP / SIGCONT: a partition without a closed socket).
    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), signal).expect("signal redis-server");
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("redis.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(match self.persistence {
                Persistence::None => ["--appendonly", "no", "--appendfsync", "everysec"],
                Persistence::AofAlways => ["--appendonly", "yes", "--appendfsync", "always"],
                Persistence::AofEverySec => ["--appendonly", "yes", "--appendfsync", "everysec"],
            })
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass", p.as_str()]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|e| format!("spawning redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        self.wait_for_pong()
    }

    fn wait_for_pong(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("exited with {status}: {}", self.log_tail()));
                }
            }
            if ping(self.port, self.password.as_deref()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no PONG within {START_TIMEOUT:?}: {}",
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// True once the server answers PING with PONG (and has finished loading its data), after
/// authenticating with `password` when it has one.
fn ping(port: u16, password: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut request = Vec::new();
    if let Some(password) = password {
        // The password goes as a bulk string, so any byte in it is sent as is.
        request.extend_from_slice(
            format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len()).as_bytes(),
        );
    }
    request.extend_from_slice(b"PING\r\n");
    if stream.write_all(&request).is_err() {
        return false;
    }
    // AUTH's +OK (or an error) comes first; PONG follows when the server is ready.
    let mut reply = Vec::new();
    let mut buffer = [0u8; 64];
    while reply.len() < 256 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&buffer[..n]),
        }
        if reply.windows(5).any(|w| w == b"+PONG") {
            return true;
        }
        if reply.starts_with(b"-") || reply.windows(3).any(|w| w == b"\r\n-") {
            return false;
        }
    }
    false
}

/// A number from Redis's `INFO section`, such as `used_memory` or `total_net_input_bytes`.
pub async fn info_number(
    conn: &mut ::redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO");
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO {section}"))
}
