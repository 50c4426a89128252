//! Real `gridwatch` child processes for tests: stderr captured to a file in the test's temp dir,
//! signals by pid, killed and reaped on drop; and polling with a deadline instead of sleeps.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

thread_local! {
    /// Variables for every process the current test starts (a cluster token, say). Each test runs
    /// on its own thread, and the tests share one process: setting the process's environment would
    /// hand one test's token to every other test's processes.
    static TEST_ENV: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Gives `key=value` to every process the calling test starts from now on.
pub fn set_test_env(key: &str, value: &str) {
    TEST_ENV.with(|env| env.borrow_mut().push((key.to_string(), value.to_string())));
}

/// The `gridwatch` binary under test.
pub fn gridwatch() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridwatch"));
    // Masters and `up` serve HTTP on a free port, never on the shared default 8080.
    command.env("GRIDWATCH_HTTP", "127.0.0.1:0");
    TEST_ENV.with(|env| {
        for (key, value) in env.borrow().iter() {
            command.env(key, value);
        }
    });
    command
}

/// One child process owned by a test.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Runs `gridwatch ARGS` with `envs`, stderr to `DIR/NAME.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = gridwatch();
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        command.env("LOG_LEVEL", "info");
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Runs `gridwatch ARGS` with its stderr to the file `log`, at the program's own log level.
    pub fn spawn_logged(name: &str, args: &[String], log: &Path) -> Proc {
        Proc::spawn_logged_with(name, args, log, &[])
    }

    /// As [`Proc::spawn_logged`], with extra environment variables.
    pub fn spawn_logged_with(
        name: &str,
        args: &[String],
        log: &Path,
        envs: &[(&str, &str)],
    ) -> Proc {
        let stderr = std::fs::File::create(log).expect("log file");
        let child = gridwatch()
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal)
            .unwrap_or_else(|e| panic!("signal {signal} to {}: {e}", self.name));
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit; its exit code if it did.
    pub fn wait_exit_within(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to `limit` for the process to exit; its exit status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its log lines as JSON objects (non-JSON lines skipped).
    pub fn log_json(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process must be continued to die promptly on some kernels' accounting.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
        self.kill9();
    }
}

/// Polls `probe` until it yields a value; panics naming `what` after `limit`. It polls every
/// 20 ms for the first two seconds, then every tenth of the time waited up to 100 ms: a probe
/// often starts a client process, and many tests waiting at once would otherwise spend much of
/// the machine on them.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        let waited = started.elapsed();
        let pause = if waited < Duration::from_secs(2) {
            Duration::from_millis(20)
        } else {
            (waited / 10).min(Duration::from_millis(100))
        };
        std::thread::sleep(pause);
    }
}

/// Reads an `--addr-file` once the server has written it.
pub fn read_addr_file(path: &Path) -> String {
    wait_for(
        &format!("address in {}", path.display()),
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|text| !text.trim().is_empty())
        },
    )
    .trim()
    .to_string()
}
