//! Alert receivers served by the tests: a small HTTP server that keeps every JSON body POSTed to
//! it (or one that accepts connections and never answers), and a real Prometheus Alertmanager
//! whose webhook receiver is such a server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bodies larger than this are refused: no test sends one.
const MAX_BODY: usize = 1 << 20;

/// An HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it, with their arrival time.
pub struct Receiver {
    pub port: u16,
    bodies: Arc<Mutex<Vec<(Instant, serde_json::Value)>>>,
}

impl Receiver {
    /// Serves on a free port, answering every POST with 200.
    pub fn start() -> Receiver {
        Receiver::serve_on(TcpListener::bind(("127.0.0.1", 0)).expect("bind the receiver"))
    }

    /// Serves on a port the test held until now (see `HeldPort`).
    pub fn start_held(held: super::HeldPort) -> Receiver {
        Receiver::serve_on(held.listen())
    }

    fn serve_on(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().expect("receiver address").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { port, bodies }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every body received so far, oldest first, with when it arrived.
    pub fn bodies(&self) -> Vec<(Instant, serde_json::Value)> {
        self.bodies.lock().expect("receiver lock").clone()
    }
}

/// Reads one request (headers, then a body of Content-Length bytes), keeps its JSON body and
/// answers 200.
fn serve(stream: TcpStream, kept: &Mutex<Vec<(Instant, serde_json::Value)>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    if length > MAX_BODY {
        return;
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if let Ok(value) = serde_json::from_slice(&body) {
        kept.lock()
            .expect("receiver lock")
            .push((Instant::now(), value));
    }
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// A receiver that accepts connections and never reads or answers them; returns its URL.
pub fn never_answering() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the silent receiver");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

/// A real Alertmanager on a free port, sending every notification to a `Receiver`; killed on drop.
pub struct Alertmanager {
    pub url: String,
    pub receiver: Receiver,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The Alertmanager binary, if installed (Debian's package names it prometheus-alertmanager).
pub fn alertmanager_binary() -> Option<&'static str> {
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
}

impl Alertmanager {
    /// Starts `binary` with one route to the receiver: grouped by alert name and worker, sent
    /// after `group_wait`, resolutions sent too.
    pub fn start(binary: &str, group_wait: &str) -> Alertmanager {
        let receiver = Receiver::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "route:\n  receiver: test\n  group_by: [alertname, worker]\n  group_wait: {group_wait}\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
             webhook_configs:\n      - url: {}\n        send_resolved: true\n",
            receiver.url()
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).expect("write the Alertmanager config");
        let port = super::free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager {
            url: format!("http://127.0.0.1:{port}"),
            receiver,
            child,
            _dir: dir,
        };
        am.wait_ready(port);
        am
    }

    fn wait_ready(&self, port: u16) {
        super::wait_for("alertmanager ready", Duration::from_secs(60), || {
            let address = format!("127.0.0.1:{port}");
            TcpStream::connect(&address).ok()?;
            let reply = super::http::request_with(&address, "GET", "/-/ready", &[], "");
            (reply.status == 200).then_some(())
        });
    }

    /// The alerts the Alertmanager holds as active right now (its v2 API).
    pub fn active_alerts(&self) -> Vec<serde_json::Value> {
        let address = self.url.trim_start_matches("http://");
        let reply =
            super::http::request_with(address, "GET", "/api/v2/alerts?active=true", &[], "");
        serde_json::from_slice(&reply.body).unwrap_or_default()
    }

    /// Its log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
