use rand_core::{CryptoRng, RngCore};
use ring::aead::{AES_256_GCM, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::{CryptoError, Secret, SecretBytes};

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

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

    fn aead(&self) -> Result<LessSafeKey, CryptoError> {
        UnboundKey::new(&AES_256_GCM, self.expose_bytes()).map(LessSafeKey::new).map_err(|_| CryptoError::BadKey)
    }

    pub fn seal(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        plaintext: &[u8],
        aad: &Aad,
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let sealed = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(aad.as_bytes()),
            &mut out[NONCE_LEN..],
        );
        let Ok(tag) = sealed else {
            // The buffer still holds the plaintext.
            out.zeroize();
            return Err(CryptoError::Encrypt);
        };
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &Aad) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let key = self.aead()?;
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut buf = ct.to_vec();
        match key.open_in_place(nonce, ring::aead::Aad::from(aad.as_bytes()), &mut buf) {
            Ok(plain) => {
                let len = plain.len();
                buf.truncate(len);
                Ok(Secret::new(buf))
            }
            Err(_) => {
                // What is left in the buffer was never authenticated.
                buf.zeroize();
                Err(CryptoError::Decrypt)
            }
        }
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

    /// Data sealed before (RustCrypto's aes-gcm) opens now, and what is sealed now opens
    /// there: one format, `nonce || ciphertext || tag`, whichever implementation.
    #[test]
    fn the_sealed_format_is_standard_aes_256_gcm() {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let key = SymmetricKey::generate(&mut OsRng);
        let aad = Aad::for_field("records", "gw/1", 1, "payload");
        let rust_crypto = aes_gcm::Aes256Gcm::new_from_slice(key.expose_bytes()).unwrap();
        for len in [0, 1, 15, 16, 17, 4096, 100_003] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let ours = key.seal(&mut OsRng, &plain, &aad).unwrap();
            let (nonce, ct) = ours.split_at(NONCE_LEN);
            let opened = rust_crypto
                .decrypt(aes_gcm::Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
                .unwrap();
            assert_eq!(opened, plain);
            let nonce = [9u8; NONCE_LEN];
            let theirs = rust_crypto
                .encrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &plain, aad: aad.as_bytes() })
                .unwrap();
            let sealed = [&nonce[..], &theirs].concat();
            assert_eq!(key.open(&sealed, &aad).unwrap().expose_secret(), &plain);
        }
    }

    #[test]
    fn aad_parts_are_unambiguous() {
        assert_ne!(Aad::from_parts(&[b"ab", b"c"]), Aad::from_parts(&[b"a", b"bc"]));
    }
}
