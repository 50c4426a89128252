//! Helpers shared by the integration tests: real servers on free ports, torn down on drop.

pub mod grid;
pub mod honest;
pub mod http;
pub mod iupac;
pub mod julia;
pub mod patterns;
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
use std::path::PathBuf;

pub use procs::{wait_for, Proc};

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

/// A port held for a test: bound but not listening, so connections to it are refused and no
/// other test's server can take it, until [`HeldPort::listen`] turns it into a listener. (A port
/// bound and freed again may be taken by a server of a test running beside.)
pub struct HeldPort {
    socket: socket2::Socket,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl HeldPort {
    pub fn new() -> HeldPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
        socket.bind(&any.into()).expect("binding a free port");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("the bound address")
            .to_string();
        HeldPort { socket, addr }
    }

    /// Starts listening on the held port.
    pub fn listen(self) -> TcpListener {
        self.socket.listen(128).expect("listening on the held port");
        self.socket.into()
    }
}

/// An address where connections are refused for as long as the returned port is held.
pub fn refusing_address() -> (HeldPort, String) {
    let held = HeldPort::new();
    let addr = held.addr.clone();
    (held, addr)
}

/// The record of a genome of one record, `g`, holding `bases`, as a test stores it.
pub fn genome_record(bases: &[u8]) -> gridwatch::backend::GenomeRecord {
    gridwatch::backend::GenomeRecord {
        kind: gridwatch::backend::StoredKind::Genome,
        hash: blake3::hash(bases).to_hex().to_string(),
        storage: String::new(),
        size_bytes: bases.len() as u64,
        bases: bases.len() as u64,
        records: serde_json::json!([{"name": "g", "length": bases.len()}]),
        filename: "g.fa".into(),
        created_at: 0.0,
        last_used: 0.0,
        jobs: 0,
    }
}
