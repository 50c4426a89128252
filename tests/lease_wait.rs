//! A worker that dies while it waits for a task must not be handed one: the task would sit
//! invisible until the visibility timeout (two minutes by default), because a write into a socket
//! whose peer is gone can still succeed. Here a hand-written worker asks for a task and closes its
//! socket at once; a job submitted right after must finish long before that timeout, exactly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use serde_json::{json, Value};

fn send(stream: &mut TcpStream, message: &Value) {
    let body = serde_json::to_vec(message).expect("JSON");
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .and_then(|()| stream.write_all(&body))
        .expect("sending a frame");
}

fn recv(stream: &mut TcpStream) -> Value {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).expect("frame length");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).expect("frame body");
    serde_json::from_slice(&body).expect("a JSON frame")
}

#[test]
fn a_worker_gone_while_waiting_for_a_task_is_not_handed_one() {
    let mut grid = Grid::start(&[]);
    let mut ghost = TcpStream::connect(&grid.addr).expect("connecting to the master");
    ghost
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    send(
        &mut ghost,
        &json!({ "type": "hello", "role": "worker", "version": 1, "id": "ghost" }),
    );
    assert_eq!(recv(&mut ghost)["type"], "welcome");
    send(&mut ghost, &json!({ "type": "lease", "wait_ms": 5000 }));
    drop(ghost);

    let mut bases = Bases::new(5);
    let records: Records = vec![("chr1".into(), bases.take(2000))];
    let file = grid.path("genome.fa");
    write_fasta(&file, &records, 60, "\n");
    let file = file.display().to_string();
    grid.cli_ok(&["submit", &file, "-p", "ACG", "--job-id", "after-ghost"]);
    grid.start_worker("w1", 1);
    // Well inside the two-minute visibility timeout a task handed to the ghost would wait out.
    let status = grid.wait_finished("after-ghost", Duration::from_secs(60));
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = naive_hits(&records, "ACG", false).len() as u64;
    assert!(expected > 10, "the fixture should have matches");
    assert_eq!(
        parse_total(&grid.cli_ok(&["results", "after-ghost"])),
        expected
    );
}
