use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use crate::{CryptoError, Secret, SecretBytes};

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Associated data that names where a ciphertext lives. Parts are length-prefixed, so
/// `("ab","c")` and `("a","bc")` differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// The usual binding: which table, which row, which version of the row, which field.
    pub fn for_field(table: &str, row: &str, version: u32, field: &str) -> Self {
        Self::from_parts(&[
            b"portcullis/v1",
            table.as_bytes(),
            row.as_bytes(),
            &version.to_be_bytes(),
            field.as_bytes(),
        ])
    }

    pub fn from_parts(parts: &[&[u8]]) -> Self {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        Self(out)
    }

    /// A derived binding, e.g. the data key of an entry is bound to the entry plus `"dek"`.
    pub fn with(&self, extra: &str) -> Self {
        Self::from_parts(&[&self.0, extra.as_bytes()])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A random 256-bit AES-GCM key. Output layout of [`SymmetricKey::seal`]: `nonce || ciphertext || tag`.
pub struct SymmetricKey(Secret<[u8; KEY_LEN]>);

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(<secret>)")
    }
}

impl SymmetricKey {
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        let key = Self(Secret::new(bytes));
        bytes.zeroize();
        key
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self(Secret::new(arr)))
    }

    /// Raw key bytes, for wrapping or for handing to an OS keyring.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }

    /// A key for one purpose derived from this one (HKDF-SHA256, `label` as info): records of
    /// one epoch, row authentication. Different labels give independent keys.
    pub fn derive(&self, label: &str) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"portcullis/derive/v1"), self.expose_bytes());
        let mut okm = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        let _ = hk.expand(label.as_bytes(), &mut okm);
        let key = Self(Secret::new(okm));
        okm.zeroize();
        key
    }

    /// HMAC-SHA256 of `parts` (length-prefixed, like [`Aad`]) under this key.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(self.expose_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(Aad::from_parts(parts).as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Checks a MAC from [`SymmetricKey::mac`] in constant time.
    pub fn verify_mac(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        crate::constant_time_eq(&self.mac(parts), tag)
    }

    pub fn seal(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        plaintext: &[u8],
        aad: &Aad,
    ) -> Result<Vec<u8>, CryptoError> {
        let cipher = Aes256Gcm::new_from_slice(self.expose_bytes()).map_err(|_| CryptoError::BadKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &Aad) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Decrypt);
        }
        let cipher = Aes256Gcm::new_from_slice(self.expose_bytes()).map_err(|_| CryptoError::BadKey)?;
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
            .map(Secret::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn roundtrip_and_binding() {
        let key = SymmetricKey::generate(&mut OsRng);
        let here = Aad::for_field("records", "7", 1, "payload");
        let ct = key.seal(&mut OsRng, b"hello", &here).unwrap();
        assert_eq!(key.open(&ct, &here).unwrap().expose_secret(), b"hello");
        // Moved to another row, another version or another field: refused.
        for elsewhere in [
            Aad::for_field("records", "8", 1, "payload"),
            Aad::for_field("records", "7", 2, "payload"),
            Aad::for_field("records", "7", 1, "meta"),
        ] {
            assert_eq!(key.open(&ct, &elsewhere).unwrap_err(), CryptoError::Decrypt);
        }
        let other = SymmetricKey::generate(&mut OsRng);
        assert_eq!(other.open(&ct, &here).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn nonces_are_fresh_and_tampering_is_detected() {
        let key = SymmetricKey::generate(&mut OsRng);
        let aad = Aad::for_field("t", "r", 1, "f");
        let a = key.seal(&mut OsRng, b"same", &aad).unwrap();
        let b = key.seal(&mut OsRng, b"same", &aad).unwrap();
        assert_ne!(a, b);
        let mut flipped = a.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(key.open(&flipped, &aad).is_err());
        assert!(key.open(&a[..10], &aad).is_err());
    }

    #[test]
    fn derived_keys_and_macs_are_bound_to_their_label_and_parts() {
        let key = SymmetricKey::generate(&mut OsRng);
        let a = key.derive("records/1");
        assert_eq!(a.expose_bytes(), key.derive("records/1").expose_bytes());
        assert_ne!(a.expose_bytes(), key.derive("records/2").expose_bytes());
        assert_ne!(a.expose_bytes(), key.expose_bytes());
        let tag = key.mac(&[b"users", b"ada", b"admin"]);
        assert!(key.verify_mac(&[b"users", b"ada", b"admin"], &tag));
        assert!(!key.verify_mac(&[b"users", b"ada", b"admin,auditor"], &tag));
        assert!(!key.verify_mac(&[b"users", b"adaadmin", b""], &tag));
        assert!(!a.verify_mac(&[b"users", b"ada", b"admin"], &tag));
        assert!(!key.verify_mac(&[b"users", b"ada", b"admin"], &tag[..31]));
    }

    #[test]
    fn aad_parts_are_unambiguous() {
        assert_ne!(Aad::from_parts(&[b"ab", b"c"]), Aad::from_parts(&[b"a", b"bc"]));
    }
}
