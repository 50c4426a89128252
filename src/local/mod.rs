//! Local orchestration: a whole grid on this machine. `up` starts and supervises the roles as
//! child processes; `demo` runs a job on such a grid and checks it against local search (and, if
//! asked, kills a worker mid-job); `bench` compares gridwatch with other tools and times the grid.
//! These drive the grid through the same client commands a user types.

mod autoscale;
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "bench")]
mod bench_args;
#[cfg(feature = "bench")]
pub mod bench_commands;
#[cfg(feature = "bench")]
pub mod bench_grid;
#[cfg(feature = "bench")]
pub mod bench_kinds;
#[cfg(feature = "bench")]
mod bench_mismatch;
pub mod demo;
mod demo_kill;
pub mod elastic;
mod log_file;
mod scaling;
mod spawner;
mod supervise;
pub mod up;
