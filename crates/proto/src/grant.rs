use base64::Engine;
use portcullis_crypto::identity::{SigningIdentity, verify_signature};
use serde::{Deserialize, Serialize};

/// What a grant says. Signed by the server; checked by the server whenever the grant is used
/// (a certificate is issued, a gateway opens a session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    pub grant_id: String,
    pub request_id: String,
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    pub target_id: String,
    pub target_name: String,
    pub login: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    /// What was approved besides the target itself: the gateway refuses the grant when the
    /// target's host key or credential changed since (or the login, above).
    #[serde(default)]
    pub host_key_fingerprint: String,
    #[serde(default)]
    pub credential_version: i64,
    /// SSH access to the target (the default, left out of older grants), or a secret
    /// (`target_id`/`target_name` then name the secret) to check out or use.
    #[serde(default, skip_serializing_if = "is_ssh")]
    pub access: crate::Access,
}

fn is_ssh(access: &crate::Access) -> bool {
    *access == crate::Access::Ssh
}

/// The exact signed bytes travel with the signature, so verification never depends on
/// re-serialising the claims the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant {
    /// base64 of the JSON claims
    pub claims: String,
    /// base64 Ed25519 signature over `GRANT_DOMAIN || claims bytes`
    pub signature: String,
}

const GRANT_DOMAIN: &[u8] = b"portcullis/v1/grant\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("the grant's signature is not the server's")]
    Forged,
    #[error("the grant is malformed")]
    Malformed,
    #[error("the grant is not valid until {0}")]
    NotYetValid(i64),
    #[error("the grant expired at {0}")]
    Expired(i64),
    #[error("the grant was issued to another device or user")]
    Foreign,
    #[error("the grant is for target {0:?}")]
    OtherTarget(String),
}

fn signing_input(claims: &[u8]) -> Vec<u8> {
    [GRANT_DOMAIN, claims].concat()
}

impl SignedGrant {
    pub fn sign(claims: &GrantClaims, key: &SigningIdentity) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        // Serialising a plain struct of strings and integers cannot fail.
        let bytes = serde_json::to_vec(claims).unwrap_or_default();
        let signature = key.sign(&signing_input(&bytes));
        Self { claims: b64.encode(&bytes), signature: b64.encode(signature) }
    }

    /// Checks the signature only; see [`GrantClaims::check_use`] for time, holder and target.
    pub fn verify(&self, server_public_key: &[u8]) -> Result<GrantClaims, GrantError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let bytes = b64.decode(&self.claims).map_err(|_| GrantError::Malformed)?;
        let sig = b64.decode(&self.signature).map_err(|_| GrantError::Malformed)?;
        verify_signature(server_public_key, &signing_input(&bytes), &sig).map_err(|_| GrantError::Forged)?;
        serde_json::from_slice(&bytes).map_err(|_| GrantError::Malformed)
    }
}

impl GrantClaims {
    /// May `device_id` use this grant on `target_name` at `now`?
    pub fn check_use(&self, now: i64, device_id: &str, target_name: &str) -> Result<(), GrantError> {
        if self.device_id != device_id {
            return Err(GrantError::Foreign);
        }
        if self.target_name != target_name {
            return Err(GrantError::OtherTarget(self.target_name.clone()));
        }
        if now < self.not_before {
            return Err(GrantError::NotYetValid(self.not_before));
        }
        if now >= self.not_after {
            return Err(GrantError::Expired(self.not_after));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crypto::OsRng;

    fn claims() -> GrantClaims {
        GrantClaims {
            grant_id: "g".into(),
            request_id: "r".into(),
            user_id: "u".into(),
            user_name: "alice".into(),
            device_id: "d".into(),
            target_id: "t".into(),
            target_name: "web".into(),
            login: "root".into(),
            not_before: 100,
            not_after: 200,
            issued_at: 100,
            host_key_fingerprint: "SHA256:x".into(),
            credential_version: 1,
            access: crate::Access::Ssh,
        }
    }

    #[test]
    fn signed_grant_verifies_and_forgeries_fail() {
        let server = SigningIdentity::generate(&mut OsRng);
        let g = SignedGrant::sign(&claims(), &server);
        assert_eq!(g.verify(&server.public_key()).unwrap(), claims());

        let other = SigningIdentity::generate(&mut OsRng);
        assert_eq!(g.verify(&other.public_key()).unwrap_err(), GrantError::Forged);

        let mut edited = claims();
        edited.not_after = 10_000;
        let b64 = base64::engine::general_purpose::STANDARD;
        let tampered = SignedGrant { claims: b64.encode(serde_json::to_vec(&edited).unwrap()), ..g.clone() };
        assert_eq!(tampered.verify(&server.public_key()).unwrap_err(), GrantError::Forged);
    }

    #[test]
    fn use_is_checked_for_time_device_and_target() {
        let c = claims();
        assert!(c.check_use(150, "d", "web").is_ok());
        assert_eq!(c.check_use(99, "d", "web"), Err(GrantError::NotYetValid(100)));
        assert_eq!(c.check_use(200, "d", "web"), Err(GrantError::Expired(200)));
        assert_eq!(c.check_use(150, "other", "web"), Err(GrantError::Foreign));
        assert!(matches!(c.check_use(150, "d", "db"), Err(GrantError::OtherTarget(_))));
    }
}
