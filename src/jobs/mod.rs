//! Job kinds and how each is cut into tasks and its results assembled.

pub mod search;
