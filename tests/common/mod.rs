//! Helpers shared by the integration tests: real servers on free ports, torn down on drop.
#![allow(dead_code)]

pub mod procs;
pub mod redis;
