//! New values for rotation: what the vault sets on a target when a checked-out password comes
//! back. Only characters every `passwd` and terminal takes as typed (no quote, backslash,
//! space or `:` — `chpasswd` splits on it), with every class present so a target's password
//! rules (`pam_pwquality`, `obscure`) accept it.

use portcullis_crypto::SecretBytes;
use portcullis_crypto::{CryptoRng, RngCore};

/// Length of a generated password: 24 characters from 68 (about 146 bits).
pub const GENERATED_PASSWORD_LEN: usize = 24;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"-_.+=%@#!";

/// A fresh random password: [`GENERATED_PASSWORD_LEN`] characters, at least one of each class.
pub fn generate_password(rng: &mut (impl CryptoRng + RngCore)) -> SecretBytes {
    let alphabet: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    loop {
        let mut out = Vec::with_capacity(GENERATED_PASSWORD_LEN);
        while out.len() < GENERATED_PASSWORD_LEN {
            // Rejection sampling: no bias towards the first characters of the alphabet.
            let byte = (rng.next_u32() & 0xff) as usize;
            if byte < 256 - 256 % alphabet.len() {
                out.push(alphabet[byte % alphabet.len()]);
            }
        }
        let has = |class: &[u8]| out.iter().any(|c| class.contains(c));
        if has(LOWER) && has(UPPER) && has(DIGITS) && has(SYMBOLS) {
            return SecretBytes::from(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crypto::OsRng;

    #[test]
    fn generated_passwords_are_long_varied_and_typeable() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = generate_password(&mut OsRng);
            let text = std::str::from_utf8(p.expose_secret()).unwrap().to_string();
            assert_eq!(text.len(), GENERATED_PASSWORD_LEN);
            assert!(text.bytes().all(|c| c.is_ascii_graphic() && !b"'\"\\:`$ ".contains(&c)), "{text:?}");
            for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
                assert!(text.bytes().any(|c| class.contains(&c)));
            }
            assert!(seen.insert(text), "a generated password repeated");
        }
    }
}
