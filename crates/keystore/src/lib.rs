//! Where a root key (server) or local key (device) lives between runs.
//!
//! The key is random (never derived from a password). It is stored either in the OS keyring
//! (Secret Service on Linux, Keychain, Credential Manager) or, when no keyring is reachable or
//! the user asks for it, wrapped under a passphrase stretched with Argon2id
//! ([`portcullis_crypto::passphrase`]). A small JSON file next to the data says which, so
//! unlocking never guesses; the caller is told which store is in use.
//!
//! Contract: depends on `portcullis-crypto`, `keyring` and serde. It reads and writes only the
//! one key file it is given. Passphrases come from a [`PassphraseSource`] the shell supplies
//! (terminal, environment, GUI dialog); they are never taken from command-line arguments.

#[cfg(feature = "terminal")]
pub mod terminal;

use std::path::Path;

use portcullis_crypto::passphrase::{self, KdfParams, PassphraseWrappedKey};
use portcullis_crypto::{CryptoError, CryptoRng, RngCore, SecretString, SymmetricKey};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Keyring,
    Passphrase,
    /// Not on this machine at all: the whole identity came in `PORTCULLIS_IDENTITY` (a CI
    /// runner's secret store keeps it).
    Environment,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Keyring => "OS keyring",
            StoreKind::Passphrase => "passphrase (Argon2id)",
            StoreKind::Environment => "PORTCULLIS_IDENTITY (the environment)",
        })
    }
}

/// Which store a new key should go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// The OS keyring when one answers, else a passphrase.
    Auto,
    Keyring,
    Passphrase,
}

impl std::str::FromStr for Preference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "keyring" => Ok(Self::Keyring),
            "passphrase" => Ok(Self::Passphrase),
            other => Err(format!("unknown key store {other:?}; expected auto, keyring or passphrase")),
        }
    }
}

/// Why a passphrase is being asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassphrasePurpose {
    /// Choose a new passphrase (the source should ask twice).
    New,
    /// Unlock an existing key.
    Unlock,
}

/// `Send + Sync` so unlocking can happen inside any async task (the desktop shell's commands).
pub trait PassphraseSource: Send + Sync {
    fn passphrase(&self, purpose: PassphrasePurpose, what: &str) -> Result<SecretString, KeystoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no OS keyring is reachable: {0}")]
    KeyringUnavailable(String),
    #[error("the key in the OS keyring is missing or unreadable: {0}")]
    KeyringEntry(String),
    #[error("wrong passphrase, or the key file was altered")]
    WrongPassphrase,
    #[error("no passphrase available: {0}")]
    NoPassphrase(String),
    #[error("key file {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Crypto(CryptoError),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "store", rename_all = "snake_case")]
enum KeyFile {
    Keyring { service: String, account: String },
    Passphrase { wrapped: PassphraseWrappedKey },
}

const KEYRING_SERVICE: &str = "portcullis";

/// Stores `key` for later [`unlock`]; `purpose` (e.g. `"server-root"`) is bound into the wrapping.
pub fn create(
    path: &Path,
    purpose: &str,
    preference: Preference,
    key: &SymmetricKey,
    passphrases: &dyn PassphraseSource,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<StoreKind, KeystoreError> {
    let (file, kind) = match preference {
        Preference::Keyring => (store_in_keyring(purpose, key)?, StoreKind::Keyring),
        Preference::Passphrase => (wrap_with_passphrase(purpose, key, passphrases, rng)?, StoreKind::Passphrase),
        Preference::Auto => match store_in_keyring(purpose, key) {
            Ok(file) => (file, StoreKind::Keyring),
            Err(e) => {
                tracing::info!(error = %e, "OS keyring not usable; falling back to a passphrase");
                (wrap_with_passphrase(purpose, key, passphrases, rng)?, StoreKind::Passphrase)
            }
        },
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| file_error(path, e))?;
    write_private(path, &json).map_err(|e| file_error(path, e))?;
    Ok(kind)
}

/// Which store holds the key at `path`, without unlocking it.
pub fn kind(path: &Path) -> Result<StoreKind, KeystoreError> {
    Ok(match read_file(path)? {
        KeyFile::Keyring { .. } => StoreKind::Keyring,
        KeyFile::Passphrase { .. } => StoreKind::Passphrase,
    })
}

pub fn unlock(
    path: &Path,
    purpose: &str,
    passphrases: &dyn PassphraseSource,
) -> Result<(SymmetricKey, StoreKind), KeystoreError> {
    match read_file(path)? {
        KeyFile::Keyring { service, account } => {
            let bytes = on_own_thread(move || {
                keyring::Entry::new(&service, &account)
                    .and_then(|entry| entry.get_secret())
                    .map_err(|e| KeystoreError::KeyringEntry(e.to_string()))
            })?;
            let key = SymmetricKey::from_slice(&bytes).map_err(KeystoreError::Crypto);
            drop(portcullis_crypto::SecretBytes::from(bytes));
            Ok((key?, StoreKind::Keyring))
        }
        KeyFile::Passphrase { wrapped } => {
            let pass = passphrases.passphrase(PassphrasePurpose::Unlock, purpose)?;
            let key = passphrase::unwrap(&wrapped, &pass, purpose).map_err(|e| match e {
                CryptoError::Decrypt => KeystoreError::WrongPassphrase,
                other => KeystoreError::Crypto(other),
            })?;
            Ok((key, StoreKind::Passphrase))
        }
    }
}

fn read_file(path: &Path) -> Result<KeyFile, KeystoreError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| file_error(path, e))
}

fn store_in_keyring(purpose: &str, key: &SymmetricKey) -> Result<KeyFile, KeystoreError> {
    // Built with a backend for these (Secret Service; Keychain; Credential Manager); elsewhere
    // the keyring crate would fall back to an in-memory mock and the key would die with us.
    if !cfg!(any(target_os = "linux", target_os = "macos", target_os = "windows")) {
        return Err(KeystoreError::KeyringUnavailable("no OS keyring backend is built for this platform".into()));
    }
    let account = format!("{purpose}:{}", uuid::Uuid::new_v4());
    let secret = portcullis_crypto::SecretBytes::from(key.expose_bytes().to_vec());
    let account_for_thread = account.clone();
    on_own_thread(move || {
        let entry = keyring::Entry::new(KEYRING_SERVICE, &account_for_thread)
            .map_err(|e| KeystoreError::KeyringUnavailable(e.to_string()))?;
        entry.set_secret(secret.expose_secret()).map_err(|e| KeystoreError::KeyringUnavailable(e.to_string()))?;
        // Read it back through a fresh entry: a store that only remembers in this process (the
        // keyring crate's mock, on a platform without a backend) or accepts a write it cannot
        // serve later is refused now, not discovered when the key is gone.
        let fresh = keyring::Entry::new(KEYRING_SERVICE, &account_for_thread)
            .map_err(|e| KeystoreError::KeyringUnavailable(e.to_string()))?;
        let back = fresh.get_secret().map_err(|e| KeystoreError::KeyringUnavailable(e.to_string()))?;
        let same = portcullis_crypto::constant_time_eq(&back, secret.expose_secret());
        drop(portcullis_crypto::SecretBytes::from(back));
        if same {
            Ok(())
        } else {
            Err(KeystoreError::KeyringUnavailable("the keyring returned a different value".into()))
        }
    })?;
    Ok(KeyFile::Keyring { service: KEYRING_SERVICE.into(), account })
}

fn wrap_with_passphrase(
    purpose: &str,
    key: &SymmetricKey,
    passphrases: &dyn PassphraseSource,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<KeyFile, KeystoreError> {
    let pass = passphrases.passphrase(PassphrasePurpose::New, purpose)?;
    let wrapped = passphrase::wrap(key, &pass, passphrase::MIN_PARAMS, purpose, rng).map_err(KeystoreError::Crypto)?;
    Ok(KeyFile::Passphrase { wrapped })
}

/// The chosen Argon2id parameters (for benchmarks and `--help`).
pub fn kdf_params() -> KdfParams {
    passphrase::MIN_PARAMS
}

/// The keyring's Secret Service client drives its own async runtime; keep it off the caller's.
fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeystoreError> + Send + 'static,
) -> Result<T, KeystoreError> {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|_| Err(KeystoreError::KeyringUnavailable("the keyring client panicked".into())))
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> KeystoreError {
    KeystoreError::File { path: path.display().to_string(), message: e.to_string() }
}

/// Creates `dir` (and parents) and restricts it to its owner: key files and databases live there.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A passphrase source for tests and scripts: always the same value.
pub struct FixedPassphrase(pub String);

impl PassphraseSource for FixedPassphrase {
    fn passphrase(&self, _: PassphrasePurpose, _: &str) -> Result<SecretString, KeystoreError> {
        Ok(SecretString::from(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crypto::OsRng;

    #[test]
    fn passphrase_store_roundtrip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key.json");
        let key = SymmetricKey::generate(&mut OsRng);
        let kind =
            create(&path, "server-root", Preference::Passphrase, &key, &FixedPassphrase("pw".into()), &mut OsRng)
                .unwrap();
        assert_eq!(kind, StoreKind::Passphrase);
        assert_eq!(super::kind(&path).unwrap(), StoreKind::Passphrase);
        let (back, _) = unlock(&path, "server-root", &FixedPassphrase("pw".into())).unwrap();
        assert_eq!(back.expose_bytes(), key.expose_bytes());
        assert!(matches!(
            unlock(&path, "server-root", &FixedPassphrase("nope".into())),
            Err(KeystoreError::WrongPassphrase)
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"m_kib\": 65536"), "parameters are stored with the key: {text}");
    }
}

/// The real OS keyring. Inside a session bus with an unlocked Secret Service (the README's
/// test command runs one: gnome-keyring under dbus-run-session) the key must go to the keyring;
/// without one, `Auto` must fall back to a passphrase and `Keyring` must fail clearly.
#[cfg(test)]
mod keyring_tests {
    use super::*;
    use portcullis_crypto::OsRng;

    #[test]
    fn keyring_when_reachable_passphrase_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = SymmetricKey::generate(&mut OsRng);
        let pass = FixedPassphrase("pw".into());
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            let kind = create(&path, "test-key", Preference::Auto, &key, &pass, &mut OsRng).unwrap();
            assert_eq!(kind, StoreKind::Keyring, "a session bus is present, so the keyring must be used");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("wrapped"), "nothing secret is stored beside a keyring entry: {text}");
            let (back, kind) = unlock(&path, "test-key", &FixedPassphrase("unused".into())).unwrap();
            assert_eq!(kind, StoreKind::Keyring);
            assert_eq!(back.expose_bytes(), key.expose_bytes());
        } else {
            assert!(matches!(
                create(&path, "test-key", Preference::Keyring, &key, &pass, &mut OsRng),
                Err(KeystoreError::KeyringUnavailable(_))
            ));
            let kind = create(&path, "test-key", Preference::Auto, &key, &pass, &mut OsRng).unwrap();
            assert_eq!(kind, StoreKind::Passphrase);
            let (back, _) = unlock(&path, "test-key", &pass).unwrap();
            assert_eq!(back.expose_bytes(), key.expose_bytes());
        }
    }
}
