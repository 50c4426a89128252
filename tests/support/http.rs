//! A raw HTTP/1.1 client for the tests: one request per connection, read to the end, so a test
//! sees exactly the status, headers and body the master sends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request; returns the status, the content type and the body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let reply = request_with(addr, method, path, &headers, body);
    (reply.status, reply.header("content-type"), reply.body)
}

/// A response: its status, head and (de-chunked) body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value, or empty.
    pub fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request with the given headers (`Host: addr` unless one is given).
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP API");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (key, value) in headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(head.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head and body");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let mut reply = Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    };
    if reply
        .header("transfer-encoding")
        .eq_ignore_ascii_case("chunked")
    {
        reply.body = dechunk(&reply.body);
    }
    reply
}

/// The body of a chunked response, its chunks joined.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("a hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        assert!(raw.len() >= size + 2, "a chunk cut short");
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The value of one sample of the master's `/metrics` at `http` (`name{labels}` exactly as
/// exposed), if present.
pub fn metric(http: &str, sample: &str) -> Option<f64> {
    let (status, _, body) = request(http, "GET", "/metrics", None, "");
    assert_eq!(status, 200, "GET /metrics");
    String::from_utf8_lossy(&body).lines().find_map(|line| {
        let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
