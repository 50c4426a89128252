//! The cluster token: where it comes from (`--token`, `--token-file`, `GRIDWATCH_TOKEN`), and the
//! rule that a server reachable from other hosts needs one. Anyone who reaches an unauthenticated
//! master can submit jobs and answer for workers, so off loopback a server refuses to start
//! without a token unless `--insecure` says the network is trusted. The token is never logged.

use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

/// Where a command finds the cluster token; flatten it into every command that connects or
/// listens.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TokenArgs {
    /// The cluster's shared secret. Prefer GRIDWATCH_TOKEN or --token-file: a flag's value is
    /// visible to every local user in `ps`.
    #[arg(long, env = "GRIDWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the cluster token (surrounding whitespace is ignored); wins over --token.
    #[arg(long, env = "GRIDWATCH_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// Why the token could not be read.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read the token file {path}: {source}; check --token-file")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The token file holds nothing.
    #[error("the token file {0} is empty; write the cluster token into it")]
    Empty(PathBuf),
}

impl TokenArgs {
    /// Arguments carrying `token` directly (for callers that build commands in code).
    pub fn with_token(token: Option<String>) -> Self {
        Self {
            token,
            token_file: None,
        }
    }

    /// The token: the file's contents when `--token-file` is given, else `--token` or
    /// `GRIDWATCH_TOKEN`; an empty token counts as none.
    pub fn resolve(&self) -> Result<Option<String>, TokenError> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable {
                path: path.clone(),
                source,
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(TokenError::Empty(path.clone()));
            }
            return Ok(Some(token.to_string()));
        }
        Ok(self.token.clone().filter(|t| !t.trim().is_empty()))
    }
}

/// A server about to listen on an address other hosts can reach, with no token to check.
#[derive(Debug, Error)]
#[error(
    "refusing to serve the {service} on {address} without a cluster token: anyone who reaches \
     this address could {risk}. Set GRIDWATCH_TOKEN (or --token-file) on every process of the \
     grid, listen on 127.0.0.1, or pass --insecure if every host on this network is trusted"
)]
pub struct Unprotected {
    /// What would be served (`master protocol`, `master HTTP API`, `collector`).
    pub service: String,
    /// The bound address.
    pub address: SocketAddr,
    /// What an attacker could do.
    pub risk: &'static str,
}

/// Checks that `address` may be served: loopback always; elsewhere only with a token, or with
/// `insecure`, which logs a warning each time.
pub fn check_listen(
    service: &str,
    address: SocketAddr,
    has_token: bool,
    insecure: bool,
    risk: &'static str,
) -> Result<(), Unprotected> {
    if has_token || address.ip().is_loopback() {
        return Ok(());
    }
    if insecure {
        tracing::warn!(
            %address,
            "--insecure: serving the {service} without a cluster token; anyone who reaches \
             {address} could {risk}"
        );
        return Ok(());
    }
    Err(Unprotected {
        service: service.to_string(),
        address,
        risk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn loopback_needs_no_token_but_other_addresses_do() {
        assert!(check_listen("master", addr("127.0.0.1:5000"), false, false, "x").is_ok());
        assert!(check_listen("master", addr("[::1]:5000"), false, false, "x").is_ok());
        let err = check_listen(
            "master",
            addr("0.0.0.0:5000"),
            false,
            false,
            "forge results",
        )
        .expect_err("an open address without a token");
        let message = err.to_string();
        assert!(message.contains("0.0.0.0:5000") && message.contains("--insecure"));
        assert!(check_listen("master", addr("0.0.0.0:5000"), true, false, "x").is_ok());
        assert!(check_listen("master", addr("10.0.0.1:5000"), false, true, "x").is_ok());
    }

    #[test]
    fn the_token_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").expect("write");
        let args = TokenArgs {
            token: Some("flag".into()),
            token_file: Some(file.clone()),
        };
        assert_eq!(args.resolve().expect("readable").as_deref(), Some("s3cret"));
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(args.resolve(), Err(TokenError::Empty(_))));
        let missing = TokenArgs {
            token: None,
            token_file: Some(dir.path().join("missing")),
        };
        let err = missing.resolve().expect_err("no such file");
        assert!(err.to_string().contains("missing"), "{err}");
        assert_eq!(
            TokenArgs::with_token(Some(String::new())).resolve().ok(),
            Some(None)
        );
    }
}
