//! Certificates made inside a test with rcgen: a CA, and server certificates it signs for
//! 127.0.0.1 and localhost, written as PEM files in a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A certificate authority whose certificate and key live only in the test.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate as a PEM file (what `--tls-ca` is given).
    pub cert_file: PathBuf,
}

/// A server's certificate and key files.
pub struct ServerFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `DIR/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let cert_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write the CA certificate");
        Ca {
            cert,
            key,
            cert_file,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost signed by this CA, written to
    /// `DIR/NAME.pem` and `DIR/NAME.key`.
    pub fn server(&self, dir: &Path, name: &str) -> ServerFiles {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test server"));
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing the server certificate");
        let files = ServerFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write the server certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the server key");
        files
    }
}
