//! A stranger's view of a grid server: raw TCP sockets from a chosen loopback address (another
//! address plays another host), hand-made frames, and a server process's peak memory.

use std::net::SocketAddr;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `server` from `source`.
pub async fn connect_from(source: [u8; 4], server: &str) -> std::io::Result<TcpStream> {
    let server: SocketAddr = server.parse().expect("server address");
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// One frame: a 4-byte big-endian length, then the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// A client's hello without a token.
pub fn client_hello() -> Vec<u8> {
    frame(br#"{"v":1,"type":"hello","role":"client","version":1}"#)
}

/// Opens `count` connections to `server` from 127.0.0.2 that never authenticate: half stay
/// silent, half trickle a hello one byte every 3 s. Each task ends once the server has closed
/// its connection, and fails unless the server closed it within 60 s, with nothing or with a
/// `timeout` or `busy` error: a server must not let strangers hold its slots.
pub async fn flood(server: &str, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut attackers = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = connect_from([127, 0, 0, 2], server)
            .await
            .expect("attacker connects");
        let trickle = i % 2 == 1;
        attackers.push(tokio::spawn(async move {
            let hello = client_hello();
            for byte in hello.iter().take(if trickle { 20 } else { 0 }) {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            }
            let reply =
                tokio::time::timeout(std::time::Duration::from_secs(60), read_json(&mut stream))
                    .await
                    .expect("the server closes a connection that never greets");
            if let Some(reply) = reply {
                assert_eq!(reply["type"], "error", "{reply}");
                let code = reply["code"].as_str().unwrap_or_default().to_string();
                assert!(code == "timeout" || code == "busy", "{reply}");
            }
        }));
    }
    attackers
}

/// Reads one frame's JSON, or `None` if the connection closed first.
pub async fn read_json(stream: &mut TcpStream) -> Option<serde_json::Value> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len < 1 << 20, "reply of {len} bytes");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    serde_json::from_slice(&payload).ok()
}

/// The peak resident set of process `pid`, in KiB (VmHWM: no sampling can miss a spike).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find(|line| line.starts_with("VmHWM"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM line")
}

/// Holds `count` connections to `server` from 127.0.0.2 onwards (`per_address` per address)
/// until `until`: each trickles `bytes` one byte every `trickle` (none when `bytes` is empty)
/// and, once the server closes it, connects again after `pause`. Returns how many connections
/// were opened in all.
pub async fn persistent_flood(
    server: String,
    count: usize,
    per_address: usize,
    bytes: &'static [u8],
    trickle: Duration,
    pause: Duration,
    until: Instant,
) -> usize {
    let opened = Arc::new(Mutex::new(0usize));
    let mut attackers = Vec::with_capacity(count);
    for i in 0..count {
        let source = [127, 0, 0, 2 + (i / per_address) as u8];
        let (server, opened) = (server.clone(), opened.clone());
        attackers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(mut stream) = connect_from(source, &server).await else {
                    tokio::time::sleep(pause).await;
                    continue;
                };
                *opened.lock().expect("count") += 1;
                let mut sent = 0;
                let mut buf = [0u8; 1024];
                loop {
                    if Instant::now() >= until {
                        return;
                    }
                    if sent < bytes.len() {
                        let _ = stream.write_all(&bytes[sent..sent + 1]).await;
                        sent += 1;
                    }
                    let wait = if bytes.is_empty() { pause * 4 } else { trickle };
                    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }
    for attacker in attackers {
        attacker.await.expect("attacker task");
    }
    let total = *opened.lock().expect("count");
    total
}
