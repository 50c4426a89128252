//! The per-worker agent: takes heartbeats over a Unix socket, samples system metrics, reports to
//! the collector.

mod report;
pub mod sampler;
pub mod watch;

pub use report::{WorkerReport, WorkerStatus};
