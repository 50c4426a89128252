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

/// An address where connections are refused for as long as the returned socket lives: bound, so
/// no other test's server can take the port, but never listening. (A port bound and freed again
/// may be taken by a server of a test running beside.)
pub fn refusing_address() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("binding a free port");
    let addr = socket.local_addr().expect("the bound address").to_string();
    (socket, addr)
}
