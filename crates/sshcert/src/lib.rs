//! The user certificate authority: short-lived OpenSSH user certificates that open a gateway,
//! and the checks a gateway (and the server again, when it authorises a session) applies to a
//! presented certificate. russh does not validate client certificates itself.
//!
//! The user CA is its own Ed25519 key, distinct from anything a target trusts: a user
//! certificate only ever opens a Portcullis gateway, which records.

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{Fingerprint, LineEnding};
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};

use portcullis_crypto::{OsRng, SecretString};

/// Why a presented certificate is refused, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is malformed")]
    Malformed,
    #[error("this is not a user certificate")]
    NotUserCertificate,
    #[error(
        "the certificate was not issued by this Portcullis server's user CA (self-signed or another CA); get one with `portcullis ssh-config`"
    )]
    UnknownAuthority,
    #[error("the certificate's signature does not verify")]
    BadSignature,
    #[error("the certificate is not valid before {0}")]
    NotYetValid(u64),
    #[error("the certificate expired at {0}; your access has ended or the certificate is stale")]
    Expired(u64),
    #[error("the certificate carries critical options this gateway does not understand")]
    CriticalOptions,
    #[error("the certificate names no user")]
    NoPrincipal,
}

/// An Ed25519 OpenSSH private key from 32 random bytes (keeps the RNG of the key crate out).
pub fn random_ed25519() -> PrivateKey {
    let seed = portcullis_crypto::random_bytes::<32>(&mut OsRng);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// The key as OpenSSH private key text, for storing encrypted.
pub fn to_openssh_secret(key: &PrivateKey) -> Result<SecretString, String> {
    key.to_openssh(LineEnding::LF).map(|z| SecretString::from(z.to_string())).map_err(|e| e.to_string())
}

pub fn public_openssh(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default()
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

pub struct UserCa {
    key: PrivateKey,
}

/// What a certificate names, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedCertificate {
    pub serial: u64,
    /// The grant it was issued for.
    pub key_id: String,
    pub principals: Vec<String>,
    pub key_fingerprint: String,
    pub valid_before: u64,
}

impl UserCa {
    pub fn from_openssh(text: &str) -> Result<Self, String> {
        PrivateKey::from_openssh(text).map(|key| Self { key }).map_err(|e| e.to_string())
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    pub fn public_openssh(&self) -> String {
        public_openssh(self.key.public_key())
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.key.public_key().fingerprint(HashAlg::Sha256)
    }

    /// Signs `subject` for one grant: principal = `user`, key id = `grant_id`, valid in
    /// `[valid_after, valid_before)`, with `permit-pty` only (no forwarding of any kind).
    pub fn issue(
        &self,
        subject: &PublicKey,
        user: &str,
        grant_id: &str,
        serial: u64,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<Certificate, String> {
        let nonce = portcullis_crypto::random_bytes::<32>(&mut OsRng);
        let mut builder = Builder::new(nonce.to_vec(), subject.key_data().clone(), valid_after, valid_before)
            .map_err(|e| e.to_string())?;
        builder
            .serial(serial)
            .and_then(|b| b.cert_type(CertType::User))
            .and_then(|b| b.key_id(grant_id))
            .and_then(|b| b.valid_principal(user))
            .and_then(|b| b.extension("permit-pty", ""))
            .and_then(|b| b.comment(format!("portcullis grant {grant_id}")))
            .map_err(|e| e.to_string())?;
        builder.sign(&self.key).map_err(|e| e.to_string())
    }
}

/// The checks russh leaves to us: a user certificate, signed by the CA with fingerprint `ca`,
/// valid at `now`, with a principal and no critical options.
pub fn check_user_certificate(
    cert: &Certificate,
    ca: &Fingerprint,
    now: u64,
) -> Result<CheckedCertificate, CertificateError> {
    if cert.cert_type() != CertType::User {
        return Err(CertificateError::NotUserCertificate);
    }
    if cert.signature_key().fingerprint(HashAlg::Sha256) != *ca {
        return Err(CertificateError::UnknownAuthority);
    }
    if cert.validate_at(now, [ca]).is_err() {
        return Err(if now < cert.valid_after() {
            CertificateError::NotYetValid(cert.valid_after())
        } else if now >= cert.valid_before() {
            CertificateError::Expired(cert.valid_before())
        } else {
            CertificateError::BadSignature
        });
    }
    if !cert.critical_options().is_empty() {
        return Err(CertificateError::CriticalOptions);
    }
    if cert.valid_principals().is_empty() {
        return Err(CertificateError::NoPrincipal);
    }
    let subject = PublicKey::new(cert.public_key().clone(), "");
    Ok(CheckedCertificate {
        serial: cert.serial(),
        key_id: cert.key_id().to_string(),
        principals: cert.valid_principals().to_vec(),
        key_fingerprint: fingerprint(&subject),
        valid_before: cert.valid_before(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> UserCa {
        UserCa { key: random_ed25519() }
    }

    #[test]
    fn issued_certificates_check_and_everything_else_is_refused_with_a_reason() {
        let ca = ca();
        let user_key = random_ed25519();
        let cert = ca.issue(user_key.public_key(), "alice", "grant-1", 7, 100, 200).unwrap();
        let checked = check_user_certificate(&cert, &ca.fingerprint(), 150).unwrap();
        assert_eq!(checked.serial, 7);
        assert_eq!(checked.key_id, "grant-1");
        assert_eq!(checked.principals, vec!["alice".to_string()]);
        assert_eq!(checked.key_fingerprint, fingerprint(user_key.public_key()));
        assert!(cert.extensions().contains_key("permit-pty"));
        assert!(!cert.extensions().contains_key("permit-port-forwarding"));
        assert!(!cert.extensions().contains_key("permit-agent-forwarding"));

        let table: [(u64, CertificateError); 3] = [
            (99, CertificateError::NotYetValid(100)),
            (200, CertificateError::Expired(200)),
            (10_000, CertificateError::Expired(200)),
        ];
        for (now, want) in table {
            assert_eq!(check_user_certificate(&cert, &ca.fingerprint(), now), Err(want), "at {now}");
        }

        // Self-signed (the user's own "CA") and a foreign CA.
        let own = UserCa { key: user_key.clone() };
        let self_signed = own.issue(user_key.public_key(), "alice", "grant-1", 7, 100, 200).unwrap();
        assert_eq!(
            check_user_certificate(&self_signed, &ca.fingerprint(), 150),
            Err(CertificateError::UnknownAuthority)
        );
        let other = UserCa { key: random_ed25519() };
        let foreign = other.issue(user_key.public_key(), "alice", "grant-1", 7, 100, 200).unwrap();
        assert_eq!(check_user_certificate(&foreign, &ca.fingerprint(), 150), Err(CertificateError::UnknownAuthority));

        // A certificate edited after signing (longer validity) no longer verifies.
        let text = cert.to_openssh().unwrap();
        let mut bytes = cert.to_bytes().unwrap();
        let pos = bytes.len() - 120;
        bytes[pos] ^= 1;
        if let Ok(edited) = Certificate::from_bytes(&bytes) {
            assert!(check_user_certificate(&edited, &ca.fingerprint(), 150).is_err());
        }
        assert!(Certificate::from_openssh(&text).is_ok());
    }
}
