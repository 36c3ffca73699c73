//! TLS for the HTTP servers (the `http_server` example's, `#[path]`-included
//! by the benchmarks' tokio comparison): a tokio-rustls acceptor from PEM files,
//! with rustls' default cryptography (aws-lc-rs). Nothing here depends on
//! the runtime: the acceptor runs over any tokio-trait stream (`TcpIo`).
//!
//! Every failure to load the files is an `io::Error` whose message names
//! the file and what is wrong with it, for the example's one-line error.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// An acceptor of TLS connections that presents the certificate chain in
/// `cert` (PEM, the server's certificate first), holds its private key
/// from `key` (PEM: PKCS#8, PKCS#1 or SEC1), and offers the application
/// protocols `alpn` (most preferred first) to clients that ask.
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> io::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error("certificate", cert, e))?;
    if chain.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no certificate in {} (expected PEM)", cert.display()),
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("private key", key, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("cannot configure TLS", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            tls_error(
                &format!(
                    "cannot serve the TLS certificate {} with the key {}",
                    cert.display(),
                    key.display()
                ),
                e,
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_error(what: &str, path: &Path, e: rustls::pki_types::pem::Error) -> io::Error {
    use rustls::pki_types::pem::Error;
    let (kind, message) = match e {
        Error::Io(e) => {
            return io::Error::new(
                e.kind(),
                format!("cannot read the TLS {what} {}: {e}", path.display()),
            )
        }
        Error::NoItemsFound => (
            io::ErrorKind::InvalidInput,
            format!("no {what} in {} (expected PEM)", path.display()),
        ),
        other => (
            io::ErrorKind::InvalidData,
            format!(
                "the TLS {what} {} is not valid PEM: {other}",
                path.display()
            ),
        ),
    };
    io::Error::new(kind, message)
}

fn tls_error(what: &str, e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
}
