//! The process-wide shutdown signal: Ctrl-C or SIGTERM. Servers take any future as their
//! shutdown trigger (tests pass their own); binaries pass this one.

/// Completes on the first Ctrl-C (SIGINT) or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
