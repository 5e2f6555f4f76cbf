//! `server.tls`: the listener's rustls configuration from PEM certificate-chain and key files
//! (ring as the crypto provider, TLS 1.2 and 1.3, HTTP/1.1 over ALPN). Under TLS every
//! response carries `Strict-Transport-Security` ([`HSTS`]) and session cookies are `Secure`.

use crate::config::TlsSection;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The HSTS header value sent under TLS (one year).
pub const HSTS: &str = "max-age=31536000";

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {message}")]
    Certificates { path: String, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("cannot read the private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

/// The server configuration for `tls` (also run by `--check-config`).
pub fn server_config(tls: &TlsSection) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_path = tls.cert.display().to_string();
    let key_path = tls.key.display().to_string();
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| TlsError::Certificates {
            path: cert_path.clone(),
            message: err.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|err| TlsError::Key {
        path: key_path,
        message: err.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|err| TlsError::Config(err.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
