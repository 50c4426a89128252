//! Helpers shared by the integration tests: real servers on free ports, torn down on drop.

pub mod grid;
pub mod honest;
pub mod http;
pub mod iupac;
pub mod julia;
pub mod pki;
pub mod procs;
pub mod proxy;
pub mod raw;
pub mod receiver;
pub mod redis;
pub mod redis_tls;
pub mod tmux;
pub mod watchman_grid;
pub mod webdriver;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The `gridwatch` binary built for these tests.
pub fn gridwatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gridwatch"))
}

/// A test that needs an outside tool (chromium, tmux, promtool) calls this when the tool is
/// missing. `scripts/test.sh` installs them all and sets `GRIDWATCH_REQUIRE_TOOLS=1`, so there a
/// missing tool fails the test instead of letting it pass without having run; elsewhere the test
/// says that it skipped.
pub fn skip_without(what: &str) {
    if std::env::var_os("GRIDWATCH_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{what}, and GRIDWATCH_REQUIRE_TOOLS=1 requires it (scripts/test.sh installs it)");
    }
    eprintln!("SKIPPING: {what} (scripts/test.sh installs it)");
}

/// A port nobody listens on right now (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn poll_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `gridwatch ARGS`, logging stderr to `log`.
    pub fn spawn(name: &str, args: &[String], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("creating a log file");
        let child = procs::gridwatch()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for exit up to `timeout`; returns the exit status if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
