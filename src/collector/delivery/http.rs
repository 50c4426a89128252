//! One JSON POST to a receiver over plain HTTP/1.1: a fresh connection per request, a deadline
//! on the whole exchange, and at most a few KiB of the reply read (for the error message), so a
//! receiver that stalls or answers without end costs a bounded time and memory.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

/// How much of a reply body is read: enough for an error message.
const MAX_REPLY_BYTES: usize = 4096;

/// A receiver's address, checked once at start.
#[derive(Clone, Debug)]
pub struct Endpoint {
    uri: Uri,
    authority: String,
}

/// Why a receiver URL cannot be used.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// Not a URL.
    #[error("{url}: {reason}; give a URL such as http://127.0.0.1:9093")]
    Invalid {
        /// The URL as given.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// Why one delivery failed (it is retried).
#[derive(Debug, Error)]
pub enum PostError {
    /// No connection, or it broke.
    #[error("{0}")]
    Io(String),
    /// The receiver answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of its reply.
        body: String,
    },
    /// No complete answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Endpoint {
    /// Parses `url`, appending `path` to its path (for an API below a base URL). Only
    /// `http://` is spoken: receivers such as Alertmanager usually sit beside the collector,
    /// and one across an untrusted network belongs behind a TLS-terminating proxy.
    pub fn parse(url: &str, path: &str) -> Result<Endpoint, EndpointError> {
        let invalid = |reason: &str| EndpointError::Invalid {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let base: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if base.scheme_str() != Some("http") {
            return Err(invalid(
                "only http:// is supported (put a TLS proxy beside a remote receiver)",
            ));
        }
        let authority = base
            .authority()
            .ok_or_else(|| invalid("no host"))?
            .to_string();
        if authority.contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let base_path = base.path().trim_end_matches('/');
        let query = base.query().map(|q| format!("?{q}")).unwrap_or_default();
        let full = format!("http://{authority}{base_path}{path}{query}");
        let uri = full.parse().map_err(|_| invalid("not a URL"))?;
        Ok(Endpoint { uri, authority })
    }

    /// The URL, for logs.
    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// POSTs `body` as JSON and waits for a 2xx answer, all within `deadline`.
    pub async fn post_json(&self, body: Vec<u8>, deadline: Duration) -> Result<(), PostError> {
        match tokio::time::timeout(deadline, self.exchange(body)).await {
            Ok(result) => result,
            Err(_) => Err(PostError::Timeout(deadline)),
        }
    }

    async fn exchange(&self, body: Vec<u8>) -> Result<(), PostError> {
        let io_error = |e: &dyn std::fmt::Display| PostError::Io(e.to_string());
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| io_error(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io_error(&e))?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "gridwatch-collector")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| io_error(&e))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| io_error(&e))?;
            let status = response.status();
            let reply = Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                Err(PostError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&reply).chars().take(200).collect(),
                })
            }
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_api_path() {
        let endpoint = Endpoint::parse("http://127.0.0.1:9093/", "/api/v2/alerts").expect("valid");
        assert_eq!(endpoint.url(), "http://127.0.0.1:9093/api/v2/alerts");
        let endpoint = Endpoint::parse("http://am:9093/prefix", "/api/v2/alerts").expect("valid");
        assert_eq!(endpoint.url(), "http://am:9093/prefix/api/v2/alerts");
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        for bad in ["https://am:9093", "am:9093", "ftp://x", "http://u:p@am:1/"] {
            let error = Endpoint::parse(bad, "").expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }
}
