//! Envelope encryption: each entry gets its own random data key; the data key is stored wrapped
//! by the root key. Re-keying the root re-wraps data keys and never touches entry ciphertexts.

use rand_core::{CryptoRng, RngCore};

use crate::{Aad, CryptoError, SecretBytes, SymmetricKey};

/// What is stored for one encrypted entry. Both parts are ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub wrapped_data_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

pub fn seal(
    root: &SymmetricKey,
    rng: &mut (impl CryptoRng + RngCore),
    plaintext: &[u8],
    aad: &Aad,
) -> Result<Envelope, CryptoError> {
    let data_key = SymmetricKey::generate(rng);
    let ciphertext = data_key.seal(rng, plaintext, aad)?;
    let wrapped_data_key = root.seal(rng, data_key.expose_bytes(), &aad.with("data-key"))?;
    Ok(Envelope { wrapped_data_key, ciphertext })
}

pub fn open(root: &SymmetricKey, envelope: &Envelope, aad: &Aad) -> Result<SecretBytes, CryptoError> {
    let data_key = unwrap_data_key(root, envelope, aad)?;
    data_key.open(&envelope.ciphertext, aad)
}

/// Re-wraps the data key under `new_root`; the entry ciphertext is unchanged.
pub fn rewrap(
    old_root: &SymmetricKey,
    new_root: &SymmetricKey,
    rng: &mut (impl CryptoRng + RngCore),
    envelope: &Envelope,
    aad: &Aad,
) -> Result<Envelope, CryptoError> {
    let data_key = unwrap_data_key(old_root, envelope, aad)?;
    Ok(Envelope {
        wrapped_data_key: new_root.seal(rng, data_key.expose_bytes(), &aad.with("data-key"))?,
        ciphertext: envelope.ciphertext.clone(),
    })
}

fn unwrap_data_key(root: &SymmetricKey, envelope: &Envelope, aad: &Aad) -> Result<SymmetricKey, CryptoError> {
    let raw = root.open(&envelope.wrapped_data_key, &aad.with("data-key"))?;
    SymmetricKey::from_slice(raw.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn seal_open_rewrap() {
        let root = SymmetricKey::generate(&mut OsRng);
        let aad = Aad::for_field("targets", "t1", 1, "credential");
        let env = seal(&root, &mut OsRng, b"s3cret", &aad).unwrap();
        assert!(!env.ciphertext.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(open(&root, &env, &aad).unwrap().expose_secret(), b"s3cret");

        let new_root = SymmetricKey::generate(&mut OsRng);
        let re = rewrap(&root, &new_root, &mut OsRng, &env, &aad).unwrap();
        assert_eq!(re.ciphertext, env.ciphertext, "re-keying must not re-encrypt the entry");
        assert_eq!(open(&new_root, &re, &aad).unwrap().expose_secret(), b"s3cret");
        assert!(open(&root, &re, &aad).is_err());
        assert!(open(&new_root, &re, &Aad::for_field("targets", "t2", 1, "credential")).is_err());
    }

    #[test]
    fn swapped_data_keys_fail() {
        let root = SymmetricKey::generate(&mut OsRng);
        let a_aad = Aad::for_field("targets", "a", 1, "credential");
        let b_aad = Aad::for_field("targets", "b", 1, "credential");
        let a = seal(&root, &mut OsRng, b"A", &a_aad).unwrap();
        let b = seal(&root, &mut OsRng, b"B", &b_aad).unwrap();
        let franken = Envelope { wrapped_data_key: b.wrapped_data_key, ciphertext: a.ciphertext };
        assert!(open(&root, &franken, &a_aad).is_err());
        assert!(open(&root, &franken, &b_aad).is_err());
    }
}
