//! Command-line clients and local tools: submit, status, results, cancel, jobs, workers, alerts,
//! search, julia, particles, generate, up, demo, bench.

pub mod bench_grid;
pub mod connect;
pub mod demo;
mod demo_kill;
pub mod julia;
pub mod particles;
pub mod progress;
pub mod query;
pub mod submit;
pub mod up;
pub mod watch;

pub mod bench;
pub mod generate;
pub mod search;
pub mod tool_error;
