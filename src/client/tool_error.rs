//! The error type of the local tools (`search`, `generate`, `bench`), with its exit code:
//! 2 for errors the user can fix (bad arguments, unreadable or unusable input), 1 otherwise.

use thiserror::Error;

/// Why a local tool failed.
#[derive(Debug, Error)]
pub enum ToolError {
    /// Bad arguments or input the user can fix; the message names the input.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Anything else (a tool the benchmark runs failed, …).
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    /// Process exit code: 2 for errors the user can fix, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Usage(_) => 2,
            ToolError::Output(_) | ToolError::Failed(_) => 1,
        }
    }
}

/// Treats a closed stdout (`gridwatch search … | head`) as success rather than an error.
pub fn ignore_broken_pipe(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
