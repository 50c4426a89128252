//! gridwatch: a distributed compute grid that watches its own health.
//!
//! One binary plays every role (master, worker, agent, collector, clients); each role is a module
//! here, and the shared pieces are `protocol` (frames and messages), `backend` (queue and store),
//! `search` (the pure DNA search kernel) and `jobs` (job kinds and how they are cut into tasks).

pub mod agent;
pub mod backend;
pub mod buffers;
pub mod collector;
pub mod jobs;
pub mod julia;
pub mod master;
pub mod particles;
pub mod procfs;
pub mod protocol;
pub mod records;
pub mod search;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod worker;
