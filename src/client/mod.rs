//! Command-line commands: thin wrappers that parse flags, ask the master (or run a local tool)
//! and print. `main.rs` lists the commands and dispatches each to its function here.

pub mod backlog;
pub mod command;
pub mod connect;
pub mod fetch;
pub mod genomes;
pub mod health;
pub mod inputs;
pub mod job_request;
pub mod julia;
pub mod load;
pub mod logs;
pub mod monitor;
pub mod particles;
pub mod progress;
pub mod prune;
pub mod purge;
pub mod query;
pub mod submit;
#[cfg(feature = "tui")]
pub mod top;

pub mod generate;
pub mod search;
pub mod tool_error;

pub use gridwatch::jobs::count_of;
