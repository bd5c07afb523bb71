//! Passphrases for a root or local key from `PORTCULLIS_PASSPHRASE`, else asked on the
//! terminal without echo (a new one twice). For the command-line tools (feature `terminal`).

use portcullis_crypto::SecretString;

use crate::{KeystoreError, PassphrasePurpose, PassphraseSource};

pub const ENV: &str = "PORTCULLIS_PASSPHRASE";

pub struct Prompt;

impl PassphraseSource for Prompt {
    fn passphrase(&self, purpose: PassphrasePurpose, what: &str) -> Result<SecretString, KeystoreError> {
        if let Ok(value) = std::env::var(ENV) {
            return Ok(SecretString::from(value));
        }
        let label = match what {
            "server-root" => "the server's root key",
            "device-local" => "this device's local key",
            "gateway-local" => "this gateway's local key",
            other => other,
        };
        let read = |prompt: &str| {
            rpassword::prompt_password(prompt).map(SecretString::from).map_err(|e| {
                KeystoreError::NoPassphrase(format!(
                    "no OS keyring and no terminal to ask for a passphrase ({e}); set {ENV}"
                ))
            })
        };
        match purpose {
            PassphrasePurpose::Unlock => read(&format!("Passphrase for {label}: ")),
            PassphrasePurpose::New => {
                eprintln!("No OS keyring is in use; {label} will be protected by a passphrase (Argon2id).");
                let first = read("New passphrase: ")?;
                let second = read("Repeat passphrase: ")?;
                if first.expose_secret() != second.expose_secret() {
                    return Err(KeystoreError::NoPassphrase("the passphrases differ".into()));
                }
                if first.expose_secret().chars().count() < 8 {
                    return Err(KeystoreError::NoPassphrase("use at least 8 characters".into()));
                }
                Ok(first)
            }
        }
    }
}
