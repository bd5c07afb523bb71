//! Cryptography for Portcullis — one scheme, used everywhere.
//!
//! * [`SymmetricKey`]: AES-256-GCM with a fresh random 96-bit nonce per encryption and
//!   associated data ([`Aad`]) that binds every ciphertext to its place (table, row, version,
//!   field). A ciphertext moved elsewhere fails to open.
//! * [`envelope`]: per-entry data keys wrapped by a root key; re-keying re-wraps data keys only.
//! * [`passphrase`]: a random key wrapped under an Argon2id-stretched passphrase; parameters are
//!   stored with the wrapped key, bound into its associated data, and refused below
//!   [`passphrase::MIN_PARAMS`].
//! * [`identity`]: Ed25519 signing keys and X25519 sealing keys (HPKE, RFC 9180, base mode,
//!   X25519-HKDF-SHA256 / HKDF-SHA256 / AES-256-GCM) for credentials released to one device.
//! * [`Secret`]: secret values print `<secret>`, never implement `Serialize`, zeroize on drop.
//!
//! Contract: depends on RustCrypto, hpke, zeroize and serde (for public, non-secret structures)
//! only. **Architecture Invariant:** this crate knows nothing about SQL, files, the network or
//! the clock; callers pass the RNG in.

pub mod envelope;
pub mod identity;
pub mod passphrase;
mod secret;
mod symmetric;

pub use rand_core::{CryptoRng, OsRng, RngCore};
pub use secret::{Secret, SecretBytes, SecretString};
pub use symmetric::{Aad, KEY_LEN, SymmetricKey};

/// Every way a cryptographic operation can fail. Messages never include key or plaintext bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("decryption failed: wrong key, or the data was altered or moved")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("key derivation parameters {0} are below the minimum m=65536 KiB, t=3, p=4")]
    WeakKdfParams(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("malformed key material")]
    BadKey,
    #[error("signature verification failed")]
    BadSignature,
    #[error("malformed encoding: {0}")]
    Encoding(String),
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Fills a fresh array from `rng`.
pub fn random_bytes<const N: usize>(rng: &mut (impl CryptoRng + RngCore)) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// Constant-time equality for secrets compared against user input (enrolment codes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}
