//! Whether the backend answers the master in time. A client request that needs the backend and
//! gets no answer within `BACKEND_DEADLINE` fails with a clear error instead of hanging (a
//! master cut off from Redis would otherwise wait out the client's patience), and the master
//! logs the first failure of an outage and the first success after it: one line each, not one
//! per call.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a client request may wait for the backend: well under the 5 s a person waits for
/// `status` or `workers`, and far above a healthy backend's milliseconds.
pub const BACKEND_DEADLINE: Duration = Duration::from_secs(3);

/// When the current backend outage began, if one is under way.
#[derive(Debug, Default)]
pub struct BackendHealth {
    outage_since: Mutex<Option<Instant>>,
}

impl BackendHealth {
    fn outage(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.outage_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes a request the backend failed or did not answer in time; logs the first of an
    /// outage.
    pub fn failed(&self, request: &str, error: &str) {
        let mut outage = self.outage();
        if outage.is_none() {
            *outage = Some(Instant::now());
            tracing::error!(
                component = "master",
                request,
                error,
                "the backend is not answering; requests that need it fail until it returns"
            );
        }
    }

    /// Notes a request the backend served; logs the end of an outage.
    pub fn answered(&self) {
        if let Some(since) = self.outage().take() {
            let down_secs = (since.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            tracing::info!(component = "master", down_secs, "the backend answers again");
        }
    }

    /// Whether an outage is under way.
    pub fn is_down(&self) -> bool {
        self.outage().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_begins_with_the_first_failure_and_ends_with_the_next_answer() {
        let health = BackendHealth::default();
        health.answered();
        assert!(!health.is_down());
        health.failed("query_status", "timed out");
        health.failed("list_workers", "timed out");
        assert!(health.is_down());
        health.answered();
        assert!(!health.is_down());
    }
}
