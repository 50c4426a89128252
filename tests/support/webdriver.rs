//! A minimal W3C WebDriver client over plain HTTP/1.1, enough to drive headless Chromium through
//! chromedriver: open a page, run a script, read the browser console, take a screenshot.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::procs::wait_for;

/// Flags Chromium needs as root in a container with no network beyond localhost.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A chromedriver process with one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

/// Where Chromium and chromedriver are, if installed.
pub fn installed() -> Option<(String, String)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|path| path.is_file())
                .map(|path| path.display().to_string())
        })
    };
    Some((
        find(&["chromium", "chromium-browser", "google-chrome"])?,
        find(&["chromedriver"])?,
    ))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width`×`height`, profile in `profile`.
    pub fn start(
        chromium: &str,
        chromedriver: &str,
        profile: &Path,
        width: u32,
        height: u32,
    ) -> Browser {
        let port = super::free_port();
        let log = std::fs::File::create(profile.with_extension("chromedriver.log")).expect("log");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        wait_for("chromedriver ready", Duration::from_secs(30), || {
            let status = browser.request("GET", "/status", None).ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium, "args": args },
                "goog:loggingPrefs": { "browser": "ALL" },
            }}
        });
        let created = browser
            .request("POST", "/session", Some(&capabilities))
            .expect("create a browser session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.command("url", &json!({ "url": url }));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.command("execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.eval("return document.body.innerText;")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Browser console entries since the last call: (level, message).
    pub fn console(&self) -> Vec<(String, String)> {
        let entries = self.command("se/log", &json!({ "type": "browser" }));
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                        (field("level"), field("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let reply = self
            .request(
                "GET",
                &format!("/session/{}/screenshot", self.session),
                None,
            )
            .expect("screenshot");
        let encoded = reply["value"].as_str().expect("base64 PNG");
        std::fs::write(path, base64_decode(encoded)).expect("write screenshot");
    }

    fn command(&self, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}/{path}", self.session);
        let reply = self
            .request("POST", &path, Some(body))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        if reply["value"].get("error").is_some() {
            panic!("POST {path}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(&self.addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        // chromedriver keeps connections open whatever the request says: read by Content-Length.
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let (head_len, length) = loop {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before the head".into());
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .ok_or_else(|| format!("no Content-Length in {head}"))?;
                break (end + 4, length);
            }
        };
        while raw.len() < head_len + length {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8_lossy(&raw[head_len..]).to_string();
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in group.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}
