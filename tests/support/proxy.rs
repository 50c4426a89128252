//! A TCP proxy a test can cut, to lose a process' link the way a network cut does. The cut falls
//! on the first reply larger than a size the test names (a reply carrying tasks), so a test loses
//! exactly that reply whatever the machine's load; from then on requests still reach the server
//! but every reply is dropped (the server acts, the client never hears). Ending the cut resets
//! every connection, as the client's own timeout would after a long cut, and later connections
//! pass again. It can also hang up on the next connections
//! after their first bytes (a handshake cut by a stalled server). It counts the bytes it passes
//! each way, so a test can tell how much crossed the link. Threads and sockets end when it is
//! dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the pumps share.
#[derive(Default)]
struct Link {
    cut: AtomicBool,
    /// When not 0, the first reply read larger than this starts the cut (and is dropped).
    cut_above: AtomicU64,
    closing: AtomicBool,
    hang_up_on: AtomicU64,
    accepted: AtomicU64,
    /// Bytes passed from clients to the server.
    request_bytes: AtomicU64,
    /// Bytes passed from the server to clients.
    reply_bytes: AtomicU64,
    sockets: Mutex<Vec<TcpStream>>,
}

/// A proxy on a free local port to `upstream`.
pub struct CuttableProxy {
    port: u16,
    link: Arc<Link>,
}

impl CuttableProxy {
    /// Starts forwarding connections on a free port to `upstream` (HOST:PORT).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let link = Arc::new(Link::default());
        let upstream = upstream.to_string();
        let accepting = link.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.closing.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut client) = client else { continue };
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                let hang_up = accepting
                    .hang_up_on
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if hang_up {
                    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = client.read(&mut [0u8; 512]);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                pipe(&accepting, client, server);
            }
        });
        CuttableProxy { port, link }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Hangs up on the next `connections` once they have sent their first bytes.
    pub fn hang_up_on_next(&self, connections: u64) {
        self.link.hang_up_on.store(connections, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.link.accepted.load(Ordering::SeqCst)
    }

    /// Bytes passed from clients to the server so far.
    pub fn request_bytes(&self) -> u64 {
        self.link.request_bytes.load(Ordering::SeqCst)
    }

    /// Bytes passed from the server to clients so far.
    pub fn reply_bytes(&self) -> u64 {
        self.link.reply_bytes.load(Ordering::SeqCst)
    }

    /// Arms the cut to start at the first reply read larger than `bytes`, which is dropped with
    /// every reply after it.
    pub fn cut_at_reply_over(&self, bytes: u64) {
        self.link.cut_above.store(bytes, Ordering::SeqCst);
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        self.link.cut.load(Ordering::SeqCst)
    }

    /// Ends the cut: every open connection is reset, new ones pass.
    pub fn restore(&self) {
        self.close_all();
        self.link.cut_above.store(0, Ordering::SeqCst);
        self.link.cut.store(false, Ordering::SeqCst);
    }

    fn close_all(&self) {
        let sockets =
            std::mem::take(&mut *self.link.sockets.lock().unwrap_or_else(|e| e.into_inner()));
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.link.closing.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.close_all();
    }
}

/// Pumps both ways between a client and its server connection.
fn pipe(link: &Arc<Link>, client: TcpStream, server: TcpStream) {
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_reader), Ok(server_reader)) = clones else {
        return;
    };
    {
        let mut sockets = link.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for socket in [&client, &server] {
            if let Ok(socket) = socket.try_clone() {
                sockets.push(socket);
            }
        }
    }
    let requests = link.clone();
    std::thread::spawn(move || pump(&requests, client_reader, server, false));
    let replies = link.clone();
    std::thread::spawn(move || pump(&replies, server_reader, client, true));
}

/// Copies `from` to `to` until either side ends; replies are dropped while the link is cut.
fn pump(link: &Link, mut from: TcpStream, mut to: TcpStream, replies: bool) {
    let _ = from.set_read_timeout(Some(Duration::from_secs(600)));
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if replies {
            let above = link.cut_above.load(Ordering::SeqCst);
            if above > 0 && read as u64 > above {
                link.cut.store(true, Ordering::SeqCst);
            }
        }
        if replies && link.cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
        let counter = match replies {
            true => &link.reply_bytes,
            false => &link.request_bytes,
        };
        counter.fetch_add(read as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
