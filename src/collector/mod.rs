//! The collector: keeps every worker's metrics, evaluates alert rules with durations, and tells
//! the master when a worker is dead.

pub mod alert;
pub mod clock;
pub mod liveness;
pub mod rules;

pub use alert::{Alert, AlertLog, AlertState, Severity};
pub use clock::Moment;
pub use liveness::{Liveness, LivenessState, WorkerView};
pub use rules::{RuleEngine, Thresholds};
