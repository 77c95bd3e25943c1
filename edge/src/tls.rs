//! TLS at the edge, on rustls with the ring provider.
//!
//! * [`server_config`]: a certificate chain and its key from PEM files.
//! * [`client_config`]: whom a client trusts, from one PEM file. Each certificate in it is
//!   both a trust anchor (a server whose chain leads to it is accepted, for the name asked)
//!   and a pin (a server presenting exactly that certificate is accepted, whatever its name).
//!   So the file can be the CA that signed the server's certificate, or the server's
//!   certificate itself, as an appliance with a self-signed one hands it out. Either way the
//!   server must prove it holds the certificate's key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind needed.
    #[error("{}: {what}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong ("no certificate", "no private key", ...).
        what: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("{}: {source}", .path.display())]
    Rustls {
        /// The file the configuration came from.
        path: PathBuf,
        /// Error.
        #[source]
        source: rustls::Error,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Install the ring crypto provider for rustls once per process (reqwest and kube need one).
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no certificate (a PEM \"CERTIFICATE\" block) found".to_string(),
        });
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain (leaf first) and its PEM private key,
/// offering HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        what: format!("no private key: {e}"),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|source| TlsError::Rustls {
            path: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in the PEM file `trust`, each as a CA and
/// as a pin (see the module docs).
pub fn client_config(trust: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let certs = load_certs(trust)?;
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    // A certificate that cannot be an anchor (a leaf, say) is still a pin.
    let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
    let webpki = if added > 0 {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Pem {
                    path: trust.to_path_buf(),
                    what: format!("no usable trust anchor: {e}"),
                })?;
        Some(verifier)
    } else {
        None
    };
    let verifier = PinnedOrAnchored {
        pins: certs,
        webpki,
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            path: trust.to_path_buf(),
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// Accepts a server certificate that is one of the pins, or that chains to one of them (as a
/// CA) for the server name asked.
#[derive(Debug)]
struct PinnedOrAnchored {
    pins: Vec<CertificateDer<'static>>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrAnchored {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            // Exactly the certificate the client was given; the handshake signature checks
            // below prove the server holds its key.
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
