//! The server's self-signed TLS certificate (generated at init) and the TLS accept loop.

use std::path::Path;
use std::sync::Arc;

use portcullis_crypto::{SecretBytes, SymmetricKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::ServerError;
use crate::store::{SECRET_TLS, Store};

pub struct TlsMaterial {
    pub cert_der: Vec<u8>,
    key_der: SecretBytes,
    /// SHA-256 of the certificate (DER), lowercase hex: what clients pin.
    pub fingerprint: String,
}

/// A fresh self-signed certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String]) -> Result<(TlsMaterial, String), ServerError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| ServerError::Internal(format!("certificate generation: {e}")))?;
    let cert_der = certified.cert.der().to_vec();
    let material = TlsMaterial {
        fingerprint: portcullis_crypto::sha256_hex(&cert_der),
        cert_der,
        key_der: SecretBytes::from(certified.key_pair.serialize_der()),
    };
    Ok((material, certified.cert.pem()))
}

impl TlsMaterial {
    pub async fn store(&self, data_dir: &Path, pem: &str, db: &Store, root: &SymmetricKey) -> Result<(), ServerError> {
        db.put_server_secret(root, SECRET_TLS, self.key_der.expose_secret()).await?;
        std::fs::write(data_dir.join(crate::paths::TLS_CERT), pem)
            .map_err(|e| ServerError::Internal(format!("writing the certificate: {e}")))
    }

    pub async fn load(data_dir: &Path, db: &Store, root: &SymmetricKey) -> Result<Self, ServerError> {
        let pem = std::fs::read(data_dir.join(crate::paths::TLS_CERT))
            .map_err(|e| ServerError::Internal(format!("reading the certificate: {e}")))?;
        let cert_der = pem_to_der(&pem)?;
        let key_der = db.server_secret(root, SECRET_TLS).await?;
        Ok(Self { fingerprint: portcullis_crypto::sha256_hex(&cert_der), cert_der, key_der })
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.expose_secret().clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Internal(format!("tls: {e}")))?
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(self.cert_der.clone())], key)
            .map_err(|e| ServerError::Internal(format!("tls: {e}")))?;
        Ok(Arc::new(config))
    }
}

fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, ServerError> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).map_err(|_| ServerError::Internal("certificate is not PEM".into()))?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| ServerError::Internal("certificate is not PEM".into()))
}
