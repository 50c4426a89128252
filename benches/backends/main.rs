//! Redis against the embedded backend, in one run so the ratios compare like with like:
//! a genome searched end to end on a local grid, then queue overhead with tiny tasks.
//!
//! `cargo bench --bench backends` measures 200 MiB (best of 3) and 20,000 tasks; under `cargo test` (no
//! `--bench` flag) it runs a small smoke pass so the code keeps working. `-- queue` runs only
//! the queue overhead part.

#[path = "../../tests/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

mod grid;
mod queue;

fn main() {
    let full_run = std::env::args().any(|arg| arg == "--bench");
    let (genome_bytes, runs, tasks) = if full_run {
        (200 << 20, 3, 20_000)
    } else {
        (1 << 20, 1, 300)
    };
    if !std::env::args().any(|arg| arg == "queue") {
        let scratch = tempfile::tempdir().expect("scratch dir");
        grid::run(genome_bytes, runs, scratch.path());
        println!();
    }
    queue::run(tasks);
}
