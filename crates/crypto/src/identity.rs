//! Device and server identities: Ed25519 for signatures, X25519 (HPKE) for sealing.

use ed25519_dalek::Signer;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::{CryptoError, Secret, SecretBytes};

type SealKem = X25519HkdfSha256;

/// An Ed25519 signing key. The private half leaves only through [`SigningIdentity::to_secret_bytes`]
/// (to be stored wrapped).
pub struct SigningIdentity(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningIdentity(public={})", hex::encode(self.public_key()))
    }
}

impl SigningIdentity {
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Self {
        Self(ed25519_dalek::SigningKey::generate(rng))
    }

    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&arr)))
    }

    pub fn to_secret_bytes(&self) -> SecretBytes {
        Secret::new(self.0.to_bytes().to_vec())
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// Verifies an Ed25519 signature (strict: rejects small-order keys and malleable signatures).
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    let pk: [u8; 32] = public_key.try_into().map_err(|_| CryptoError::BadKey)?;
    let sig: [u8; 64] = signature.try_into().map_err(|_| CryptoError::BadSignature)?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| CryptoError::BadKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    vk.verify_strict(message, &sig).map_err(|_| CryptoError::BadSignature)
}

/// An X25519 key pair that receives sealed values.
pub struct SealingIdentity {
    private: <SealKem as Kem>::PrivateKey,
    public: <SealKem as Kem>::PublicKey,
}

impl std::fmt::Debug for SealingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingIdentity(public={})", hex::encode(self.public_key()))
    }
}

/// A value sealed to one public key: HPKE encapsulated key plus AEAD ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// base64
    pub enc: String,
    /// base64
    pub ciphertext: String,
}

impl SealingIdentity {
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Self {
        let (private, public) = SealKem::gen_keypair(&mut HpkeRng(rng));
        Self { private, public }
    }

    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let private = <SealKem as Kem>::PrivateKey::from_bytes(bytes).map_err(|_| CryptoError::BadKey)?;
        let public = SealKem::sk_to_pk(&private);
        Ok(Self { private, public })
    }

    pub fn to_secret_bytes(&self) -> SecretBytes {
        Secret::new(self.private.to_bytes().to_vec())
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.public.to_bytes());
        out
    }

    /// Opens a value sealed to this key with the same `info` (who/what it is for) and `aad`.
    pub fn open(&self, sealed: &Sealed, info: &[u8], aad: &[u8]) -> Result<SecretBytes, CryptoError> {
        use base64::Engine;
        let enc = crate::b64().decode(&sealed.enc).map_err(|e| CryptoError::Encoding(e.to_string()))?;
        let ct = crate::b64().decode(&sealed.ciphertext).map_err(|e| CryptoError::Encoding(e.to_string()))?;
        let enc = <SealKem as Kem>::EncappedKey::from_bytes(&enc).map_err(|_| CryptoError::Decrypt)?;
        hpke::single_shot_open::<AesGcm256, HkdfSha256, SealKem>(&OpModeR::Base, &self.private, &enc, info, &ct, aad)
            .map(Secret::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// hpke speaks rand_core 0.9; the rest of the workspace passes rand_core 0.6 generators.
struct HpkeRng<'a, R>(&'a mut R);

impl<R: RngCore> hpke::rand_core::RngCore for HpkeRng<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl<R: RngCore + CryptoRng> hpke::rand_core::CryptoRng for HpkeRng<'_, R> {}

/// Seals `plaintext` to `recipient` (an X25519 public key). Only the holder of the private key,
/// using the same `info` and `aad`, can open it.
pub fn seal_to(
    recipient: &[u8],
    plaintext: &[u8],
    info: &[u8],
    aad: &[u8],
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<Sealed, CryptoError> {
    use base64::Engine;
    let pk = <SealKem as Kem>::PublicKey::from_bytes(recipient).map_err(|_| CryptoError::BadKey)?;
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, SealKem, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut HpkeRng(rng),
    )
    .map_err(|_| CryptoError::Encrypt)?;
    Ok(Sealed { enc: crate::b64().encode(enc.to_bytes()), ciphertext: crate::b64().encode(ct) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn sign_and_verify() {
        let id = SigningIdentity::generate(&mut OsRng);
        let sig = id.sign(b"message");
        verify_signature(&id.public_key(), b"message", &sig).unwrap();
        assert!(verify_signature(&id.public_key(), b"messagE", &sig).is_err());
        let other = SigningIdentity::generate(&mut OsRng);
        assert!(verify_signature(&other.public_key(), b"message", &sig).is_err());
        let restored = SigningIdentity::from_secret_bytes(id.to_secret_bytes().expose_secret()).unwrap();
        assert_eq!(restored.public_key(), id.public_key());
    }

    #[test]
    fn seal_open_bound_to_info_and_aad() {
        let device = SealingIdentity::generate(&mut OsRng);
        let sealed = seal_to(&device.public_key(), b"pw", b"grant-1", b"target-a", &mut OsRng).unwrap();
        assert_eq!(device.open(&sealed, b"grant-1", b"target-a").unwrap().expose_secret(), b"pw");
        assert!(device.open(&sealed, b"grant-2", b"target-a").is_err());
        assert!(device.open(&sealed, b"grant-1", b"target-b").is_err());
        let other = SealingIdentity::generate(&mut OsRng);
        assert!(other.open(&sealed, b"grant-1", b"target-a").is_err());
        let restored = SealingIdentity::from_secret_bytes(device.to_secret_bytes().expose_secret()).unwrap();
        assert_eq!(restored.public_key(), device.public_key());
        assert_eq!(restored.open(&sealed, b"grant-1", b"target-a").unwrap().expose_secret(), b"pw");
    }
}
