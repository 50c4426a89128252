//! The byte stream under every TCP connection of the grid: plain TCP, or TLS (rustls) when the
//! network between the hosts is not trusted. Plain TCP carries the cluster token and every
//! genome in the clear, and anyone on the path can read or change them; TLS encrypts the link
//! and lets the connecting side check, against a CA it was given, that it talks to the real
//! server. Which of the two a connection uses is decided here only: [`connect`] for the side
//! that dials, [`ServerTls::accept`] for the side that listens. The frame layer above sees one
//! [`Stream`] type either way. The token check is unchanged inside TLS.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{Connection, ErrorCode, PRE_AUTH_MAX_FRAME};

/// The first byte of every TLS connection (a handshake record); the grid's own first frame
/// starts with a length whose top byte is 0.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How long a plain-text client told to use TLS gets to close its side.
const PLAIN_DRAIN: Duration = Duration::from_secs(2);

/// A connection's byte stream: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (either side of it).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            // A peer that closes the socket without a TLS close alert (a process exiting, a
            // dropped connection) reads as an ordinary end of stream: frames carry their own
            // lengths, so a cut inside a frame is still caught as a truncated frame above.
            Stream::Tls(tls) => match Pin::new(tls.as_mut()).poll_read(cx, buf) {
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS flag of every command that connects to a grid server; flatten it next to the token.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect over TLS, trusting only servers whose certificate this CA (a PEM file) signed.
    /// Use it when the network between the hosts is not trusted: without TLS the cluster token
    /// and every upload cross it in the clear. The server must run with --tls-cert/--tls-key.
    #[arg(long, env = "GRIDWATCH_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The client side of TLS, or `None` for plain TCP.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        self.tls_ca
            .as_deref()
            .map(ClientTls::from_ca_file)
            .transpose()
    }
}

/// The TLS flags of every grid server that listens on TCP.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsServerArgs {
    /// Serve TLS with this certificate chain (PEM, the server's certificate first); needs
    /// --tls-key. Use it when the network between the hosts is not trusted: clients then
    /// connect with --tls-ca and plain-text clients are turned away.
    #[arg(
        long,
        env = "GRIDWATCH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert. Keep it readable by the server's user only.
    #[arg(
        long,
        env = "GRIDWATCH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl TlsServerArgs {
    /// The server side of TLS, or `None` for plain TCP.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ServerTls::from_files(cert, key).map(Some),
            (Some(_), None) => Err(TlsError::Incomplete("--tls-cert needs --tls-key")),
            (None, Some(_)) => Err(TlsError::Incomplete("--tls-key needs --tls-cert")),
        }
    }
}

/// Why TLS could not be set up from the given files.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Unreadable {
        /// Which file (`the TLS CA file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file is not well-formed PEM. The reason is one fixed phrase: the parser's own message
    /// may quote a line of the file, and a key file's lines are secret.
    #[error("{what} {path} is not well-formed PEM: {reason}")]
    Malformed {
        /// Which file (`the TLS CA file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Which rule the file breaks.
        reason: &'static str,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path} holds no {what} in PEM form")]
    Empty {
        /// What was expected.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// Only one half of the certificate and key was given.
    #[error("{0}")]
    Incomplete(&'static str),
    /// rustls refused the certificates or key.
    #[error("unusable TLS {what}: {reason}")]
    Rejected {
        /// What was refused.
        what: &'static str,
        /// rustls's reason.
        reason: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A PEM parse error as [`TlsError::Malformed`], without any of the file's bytes.
fn malformed(what: &'static str, path: &Path, err: &pem::Error) -> TlsError {
    let reason = match err {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section's body is not base64",
        pem::Error::SectionTooLarge => "a section is over 256 MB",
        _ => "unreadable",
    };
    TlsError::Malformed {
        what,
        path: path.to_path_buf(),
        reason,
    }
}

fn pem_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| malformed(what, path, &err))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "certificate",
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The connecting side's TLS settings: which CA vouches for servers.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the CA certificates in the PEM file at `path`.
    pub fn from_ca_file(path: &Path) -> Result<Self, TlsError> {
        let pem = read_file("the TLS CA file", path)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certs("the TLS CA file", path, &pem)? {
            roots.add(cert).map_err(|err| TlsError::Rejected {
                what: "CA certificate",
                reason: format!("{}: {err}", path.display()),
            })?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Rejected {
                what: "protocol versions",
                reason: err.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}

/// The listening side's TLS settings: its certificate and key.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// Why an incoming connection got no TLS stream.
#[derive(Debug, Error)]
pub enum AcceptTlsError {
    /// The peer spoke plain text; it was told (in a grid `error` frame) to use TLS.
    #[error("a plain-text client connected to the TLS port; it was told to use --tls-ca")]
    PlainText,
    /// The peer closed before sending anything.
    #[error("closed before the TLS handshake")]
    Closed,
    /// The handshake failed (a client that does not trust this certificate, garbage, ...).
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

impl ServerTls {
    /// Serves the certificate chain and private key in the PEM files `cert` and `key`.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read_file("the TLS certificate file", cert)?;
        let chain = pem_certs("the TLS certificate file", cert, &cert_pem)?;
        let key_pem = read_file("the TLS key file", key)?;
        // The key's bytes stay out of every error: only the file's name is reported.
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| match err {
            pem::Error::NoItemsFound => TlsError::Empty {
                what: "private key",
                path: key.to_path_buf(),
            },
            err => malformed("the TLS key file", key, &err),
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Rejected {
                what: "protocol versions",
                reason: err.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|err| TlsError::Rejected {
                what: "certificate or key",
                reason: format!("{} / {}: {err}", cert.display(), key.display()),
            })?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the server side of the handshake on a freshly accepted socket. A peer whose first
    /// byte is not a TLS handshake is a plain-text grid client: it gets an `error` frame in its
    /// own protocol saying so, then the connection closes. The caller bounds the time taken.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Stream, AcceptTlsError> {
        let mut first = [0u8; 1];
        let peeked = tcp
            .peek(&mut first)
            .await
            .map_err(AcceptTlsError::Handshake)?;
        if peeked == 0 {
            return Err(AcceptTlsError::Closed);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            let mut conn = Connection::new(tcp).with_max_frame(PRE_AUTH_MAX_FRAME);
            conn.send_error(
                ErrorCode::Unauthorized,
                "this server speaks TLS only: connect with --tls-ca FILE (or GRIDWATCH_TLS_CA) \
                 naming the CA that signed its certificate",
            )
            .await;
            conn.shutdown().await;
            // Read (and drop) what the client sent until it closes: a socket closed with unread
            // bytes is reset, and a reset can destroy the error frame before the client reads it.
            let _ = tokio::time::timeout(PLAIN_DRAIN, async {
                while let Ok(Some(_)) = conn.read_frame().await {}
            })
            .await;
            return Err(AcceptTlsError::PlainText);
        }
        let tls = self
            .acceptor
            .accept(tcp)
            .await
            .map_err(AcceptTlsError::Handshake)?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
    }
}

/// Why [`connect`] made no stream.
#[derive(Debug)]
pub enum ConnectError {
    /// No TCP connection (refused, unreachable, timed out): worth retrying.
    Unreachable(String),
    /// TCP connected but TLS did not: a certificate the CA does not vouch for, a server that
    /// speaks no TLS. Retrying will not help.
    Tls(String),
}

/// The host part of `HOST:PORT` (brackets of an IPv6 address removed).
fn host_of(address: &str) -> &str {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _port)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Explains a failed client handshake in terms of what the user should change.
fn explain_client_handshake(address: &str, err: &io::Error) -> ConnectError {
    let rustls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        )) => ConnectError::Tls(format!(
            "the certificate of the server at {address} is not issued for the host {}; connect \
             by a name or address the certificate lists",
            host_of(address)
        )),
        Some(rustls::Error::InvalidCertificate(reason)) => ConnectError::Tls(format!(
            "the server at {address} presented a certificate that --tls-ca does not vouch for \
             ({reason:?}); pass the CA that signed the server's certificate"
        )),
        Some(rustls::Error::InvalidMessage(_)) => ConnectError::Tls(format!(
            "the server at {address} does not speak TLS (it answered in plain text): start it \
             with --tls-cert/--tls-key, or connect without --tls-ca"
        )),
        Some(other) => ConnectError::Tls(format!("TLS handshake with {address} failed: {other}")),
        // A busy or restarting server drops a handshake it cannot finish in time as well as a
        // plain one does (which would rather answer in plain text, above): retried like any
        // other lost connection, with the hint kept for when it never succeeds.
        None if err.kind() == io::ErrorKind::UnexpectedEof => ConnectError::Unreachable(format!(
            "the server at {address} closed the connection during the TLS handshake (if this \
             goes on, check that it serves TLS: --tls-cert/--tls-key)"
        )),
        None => ConnectError::Unreachable(format!("TLS handshake failed: {err}")),
    }
}

/// Opens a TCP connection to `address` (HOST:PORT) within `timeout`, then runs the TLS
/// handshake when `tls` is given, checking the server's certificate against its CA and the
/// host name (or IP address) in `address`.
pub async fn connect(
    address: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Stream, ConnectError> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(err)) => return Err(ConnectError::Unreachable(err.to_string())),
        Err(_) => {
            return Err(ConnectError::Unreachable(format!(
                "no answer within {timeout:?}"
            )))
        }
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name = ServerName::try_from(host_of(address).to_string()).map_err(|_| {
        ConnectError::Tls(format!(
            "{address}: the host is neither a DNS name nor an IP address, so its certificate \
             cannot be checked"
        ))
    })?;
    match tokio::time::timeout(timeout, tls.connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(
            stream,
        )))),
        Ok(Err(err)) => Err(explain_client_handshake(address, &err)),
        Err(_) => Err(ConnectError::Unreachable(format!(
            "no TLS handshake within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_cut_from_the_address() {
        assert_eq!(host_of("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(host_of("master.example:5000"), "master.example");
        assert_eq!(host_of("[::1]:5000"), "::1");
    }

    #[test]
    fn one_half_of_the_server_pair_is_an_error() {
        let half = TlsServerArgs {
            tls_cert: Some("cert.pem".into()),
            tls_key: None,
        };
        assert!(matches!(half.server(), Err(TlsError::Incomplete(_))));
        assert!(TlsServerArgs::default().server().expect("plain").is_none());
        assert!(TlsArgs::default().client().expect("plain").is_none());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let args = TlsArgs {
            tls_ca: Some("/nonexistent/ca.pem".into()),
        };
        let err = args.client().expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_malformed_key_is_named_without_its_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a certificate");
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        // A key section whose body is not base64, and one that never ends.
        let secret = "SECRETKEYBYTES*&^";
        for body in [
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n"),
        ] {
            std::fs::write(&key, body).expect("write key");
            let err = ServerTls::from_files(&cert, &key).expect_err("malformed key");
            let text = err.to_string();
            assert!(text.contains("key.pem"), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
            assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
        }
        std::fs::write(&key, "no PEM at all\n").expect("write key");
        let err = ServerTls::from_files(&cert, &key).expect_err("no key");
        assert!(matches!(err, TlsError::Empty { .. }), "{err}");
    }
}
