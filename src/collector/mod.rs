//! The collector: keeps every worker's metrics, evaluates alert rules with durations, and tells
//! the master when a worker is dead.
