//! The one gate every HTTP request passes. Any request naming a host the master does not serve
//! is refused (421), so a web page cannot reach the API through a name of its own that resolves
//! here (DNS rebinding). A write (any method but GET and HEAD) must also come from the API's
//! own origin when a browser sends it (`Origin`, `Sec-Fetch-Site`), so a page the user visits
//! cannot submit or cancel jobs; and it must carry the cluster token when the master has one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{json_error, HttpState};
use crate::protocol::handshake::token_matches;

/// The host names the HTTP API answers to.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// The port the API listens on.
    port: u16,
    /// Names valid at that port: loopback names, the bound address, names given by flag.
    names: Vec<String>,
    /// `NAME:PORT` entries given by flag, valid only as written.
    exact: Vec<String>,
    /// Names given by flag without a port, valid at any port (a reverse proxy's).
    any_port: Vec<String>,
    /// Bound to every address: any IP literal at the port is one of ours, and a literal
    /// address cannot be rebound to another host.
    any_address: bool,
}

impl AllowedHosts {
    /// The names a server bound to `bound` answers to, plus `extra` (NAME or NAME:PORT).
    pub fn new(bound: SocketAddr, extra: &[String]) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        names.push(bound.ip().to_string());
        let (mut exact, mut any_port) = (Vec::new(), Vec::new());
        for entry in extra.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            match split_host(entry) {
                Some((name, Some(port))) => exact.push(format!("{name}:{port}")),
                Some((name, None)) => any_port.push(name),
                None => {}
            }
        }
        Self {
            port: bound.port(),
            names,
            exact,
            any_port,
            any_address: bound.ip().is_unspecified(),
        }
    }

    /// Whether a `Host` header names this server.
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if self.any_port.contains(&name) {
            return true;
        }
        // No port in `Host` means the scheme's default, 80 for plain HTTP.
        let port = port.unwrap_or(80);
        if self.exact.contains(&format!("{name}:{port}")) {
            return true;
        }
        port == self.port && (self.names.contains(&name) || (self.any_address && is_ip(&name)))
    }

    /// The names, for a refusal's message.
    fn describe(&self) -> String {
        let mut listed: Vec<String> = self
            .names
            .iter()
            .map(|name| match name.contains(':') {
                true => format!("[{name}]:{}", self.port),
                false => format!("{name}:{}", self.port),
            })
            .collect();
        listed.extend(self.exact.iter().cloned());
        listed.extend(self.any_port.iter().cloned());
        listed.dedup();
        listed.join(", ")
    }
}

/// `host[:port]`, lowercased, brackets of an IPv6 literal and a trailing dot removed; `None`
/// when it does not parse.
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim().to_ascii_lowercase();
    let (name, port) = if let Some(rest) = value.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            port => Some(port.strip_prefix(':')?.parse().ok()?),
        };
        (name.to_string(), port)
    } else {
        match value.rsplit_once(':') {
            Some((name, port)) => (name.to_string(), Some(port.parse().ok()?)),
            None => (value.clone(), None),
        }
    };
    let name = name.trim_end_matches('.').to_string();
    (!name.is_empty()).then_some((name, port))
}

fn is_ip(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok()
}

/// The gate: host for everyone, then origin and token for writes.
pub async fn check(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !state.allowed_hosts.allows(host) {
        return json_error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "host {host:?} is not one this master serves (it answers to {}); to open the API \
                 under another name, start the master with --http-allowed-host NAME",
                state.allowed_hosts.describe()
            ),
        );
    }
    let is_write = !matches!(*request.method(), Method::GET | Method::HEAD);
    if is_write {
        if let Err(refusal) = same_origin(headers, host) {
            return json_error(StatusCode::FORBIDDEN, refusal);
        }
        if !authorized(headers, state.master.config.token.as_deref()) {
            return unauthorized();
        }
    }
    next.run(request).await
}

/// A write sent by a browser must come from a page of this API; clients that are not browsers
/// send neither header.
fn same_origin(headers: &HeaderMap, host: &str) -> Result<(), String> {
    let refuse = |what: String| {
        Err(format!(
            "{what}: this API accepts writes only from its own pages (or from clients that are \
             not browsers); to open it under another name, start the master with \
             --http-allowed-host NAME"
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if !matches!(site, "same-origin" | "none") {
            return refuse(format!("a cross-site request (Sec-Fetch-Site: {site})"));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|rest| rest.trim_end_matches('/'));
    match origin_host {
        Some(origin_host) if origin_host.eq_ignore_ascii_case(host.trim()) => Ok(()),
        _ => refuse(format!("a request from origin {origin:?}")),
    }
}

/// Whether the request carries the master's token (always, when it has none), compared as every
/// door compares it: the same time whichever byte differs.
fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(expected) = token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|offered| token_matches(offered, expected))
}

fn unauthorized() -> Response {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "this request changes the grid and this master has a cluster token: send it as \
         `Authorization: Bearer TOKEN`"
            .into(),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(bound: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<String> = extra.iter().map(|e| e.to_string()).collect();
        AllowedHosts::new(bound.parse().expect("address"), &extra)
    }

    #[test]
    fn loopback_names_at_the_port_are_allowed_and_foreign_names_are_not() {
        let allowed = hosts("127.0.0.1:8080", &[]);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1:8081",
            "localhost",
            "10.0.0.5:8080",
            "",
            "[::1",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
    }

    #[test]
    fn names_given_by_flag_are_allowed() {
        let allowed = hosts("127.0.0.1:8080", &["grid.example", "proxy.example:443"]);
        assert!(allowed.allows("grid.example"));
        assert!(allowed.allows("grid.example:9000"));
        assert!(allowed.allows("proxy.example:443"));
        assert!(!allowed.allows("proxy.example:8443"));
        assert!(!allowed.allows("evil.example:8080"));
    }

    #[test]
    fn a_server_bound_to_every_address_allows_address_literals_only() {
        let allowed = hosts("0.0.0.0:8080", &[]);
        assert!(allowed.allows("192.168.1.20:8080"));
        assert!(allowed.allows("[fe80::1]:8080"));
        assert!(!allowed.allows("rebound.example:8080"));
    }

    #[test]
    fn a_write_from_another_origin_is_refused() {
        let mut headers = HeaderMap::new();
        assert!(
            same_origin(&headers, "127.0.0.1:8080").is_ok(),
            "no browser"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers, "127.0.0.1:8080").is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin(&headers, "127.0.0.1:8080").is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&headers, "127.0.0.1:8080").is_err());
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&headers, "127.0.0.1:8080").is_err());
    }
}
