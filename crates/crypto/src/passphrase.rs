//! A random key stored wrapped under a passphrase stretched with Argon2id.
//!
//! The key itself is never derived from the passphrase: the passphrase only unlocks it, so a
//! passphrase change re-wraps one key. The Argon2 parameters travel with the wrapped key, are
//! refused below [`MIN_PARAMS`], and are part of the associated data, so editing the file to
//! weaker parameters fails both ways.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{Aad, CryptoError, SecretString, SymmetricKey, b64};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={} KiB, t={}, p={}", self.m_kib, self.t, self.p)
    }
}

/// The floor from DESIGN.md; also the default.
pub const MIN_PARAMS: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 4 };

impl KdfParams {
    pub fn check(&self) -> Result<(), CryptoError> {
        if self.m_kib < MIN_PARAMS.m_kib || self.t < MIN_PARAMS.t || self.p < MIN_PARAMS.p {
            return Err(CryptoError::WeakKdfParams(self.to_string()));
        }
        // An absurd cost is a denial of service on whoever opens the file.
        if self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 64 {
            return Err(CryptoError::Kdf(format!("parameters {self} are out of range")));
        }
        Ok(())
    }
}

/// The on-disk form (JSON). Everything here is public except what `wrapped` hides.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PassphraseWrappedKey {
    pub format: String,
    pub params: KdfParams,
    /// base64
    pub salt: String,
    /// base64 of `nonce || ciphertext || tag`
    pub wrapped: String,
}

const FORMAT: &str = "portcullis-argon2id-aes256gcm-v1";

fn aad(purpose: &str, params: &KdfParams, salt: &[u8]) -> Aad {
    Aad::from_parts(&[
        FORMAT.as_bytes(),
        purpose.as_bytes(),
        &params.m_kib.to_be_bytes(),
        &params.t.to_be_bytes(),
        &params.p.to_be_bytes(),
        salt,
    ])
}

fn stretch(passphrase: &SecretString, salt: &[u8], params: &KdfParams) -> Result<SymmetricKey, CryptoError> {
    params.check()?;
    let argon_params =
        Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut out)
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let key = SymmetricKey::from_slice(&out);
    out.zeroize();
    key
}

/// Wraps `key` for storage. `purpose` names what the key is for (e.g. `"server-root"`), so a
/// wrapped key file cannot be swapped for another one of a different purpose.
pub fn wrap(
    key: &SymmetricKey,
    passphrase: &SecretString,
    params: KdfParams,
    purpose: &str,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<PassphraseWrappedKey, CryptoError> {
    if passphrase.expose_secret().is_empty() {
        return Err(CryptoError::Kdf("the passphrase is empty".into()));
    }
    let salt: [u8; 16] = crate::random_bytes(rng);
    let kek = stretch(passphrase, &salt, &params)?;
    let wrapped = kek.seal(rng, key.expose_bytes(), &aad(purpose, &params, &salt))?;
    Ok(PassphraseWrappedKey { format: FORMAT.into(), params, salt: b64().encode(salt), wrapped: b64().encode(wrapped) })
}

pub fn unwrap(
    stored: &PassphraseWrappedKey,
    passphrase: &SecretString,
    purpose: &str,
) -> Result<SymmetricKey, CryptoError> {
    if stored.format != FORMAT {
        return Err(CryptoError::Encoding(format!("unknown key format {:?}", stored.format)));
    }
    stored.params.check()?;
    let salt = b64().decode(&stored.salt).map_err(|e| CryptoError::Encoding(e.to_string()))?;
    let wrapped = b64().decode(&stored.wrapped).map_err(|e| CryptoError::Encoding(e.to_string()))?;
    let kek = stretch(passphrase, &salt, &stored.params)?;
    let raw = kek.open(&wrapped, &aad(purpose, &stored.params, &salt))?;
    SymmetricKey::from_slice(raw.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn wrap_unwrap_and_wrong_passphrase() {
        let key = SymmetricKey::generate(&mut OsRng);
        let stored = wrap(&key, &pw("correct horse"), MIN_PARAMS, "device-local", &mut OsRng).unwrap();
        let back = unwrap(&stored, &pw("correct horse"), "device-local").unwrap();
        assert_eq!(back.expose_bytes(), key.expose_bytes());
        assert_eq!(unwrap(&stored, &pw("wrong"), "device-local").unwrap_err(), CryptoError::Decrypt);
        assert_eq!(unwrap(&stored, &pw("correct horse"), "server-root").unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn downgraded_parameters_are_refused() {
        let key = SymmetricKey::generate(&mut OsRng);
        let mut stored = wrap(&key, &pw("pw"), MIN_PARAMS, "x", &mut OsRng).unwrap();
        stored.params.m_kib = 8;
        assert!(matches!(unwrap(&stored, &pw("pw"), "x"), Err(CryptoError::WeakKdfParams(_))));
        assert!(matches!(
            wrap(&key, &pw("pw"), KdfParams { m_kib: 65536, t: 1, p: 4 }, "x", &mut OsRng),
            Err(CryptoError::WeakKdfParams(_))
        ));
        // Raising the parameters in the file (without re-wrapping) does not open either.
        let mut raised = wrap(&key, &pw("pw"), MIN_PARAMS, "x", &mut OsRng).unwrap();
        raised.params.t = 4;
        assert_eq!(unwrap(&raised, &pw("pw"), "x").unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn empty_passphrase_is_refused() {
        let key = SymmetricKey::generate(&mut OsRng);
        assert!(wrap(&key, &pw(""), MIN_PARAMS, "x", &mut OsRng).is_err());
    }
}
