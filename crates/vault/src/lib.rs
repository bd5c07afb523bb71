//! The vault's model: what a secret is, and the rules every copy of one follows.
//!
//! - [`SecretKind`]: the eight kinds (password, SSH key, API token, database, TLS certificate
//!   with its key, cloud key, OAuth token, note), each with its fields ([`FieldSpec`]): which are
//!   secret, which are required, which must be text.
//! - [`SecretValue::parse`] validates a value for its kind (sizes, UTF-8 where text is needed, an
//!   OpenSSH key that parses, a certificate chain whose first certificate matches the private
//!   key) and derives its public [`Facts`] (a certificate's subject, issuer, names and expiry, a
//!   key's fingerprint, a database's address): what may be shown without revealing anything.
//! - [`seal`] / [`open`]: a value at rest is an envelope (its own data key, wrapped by the root
//!   key) whose associated data names the secret, **its version** and its kind, so a ciphertext
//!   moved to another secret, version or kind fails to open.
//! - [`mask`]: the patterns a value can appear as in a process's output (raw, base64 in every
//!   alignment, percent-encoded, JSON-escaped, hex, line by line) and a streaming masker that
//!   never lets a whole occurrence through, even split across writes.
//! - [`import`]: other vaults' exports (Portcullis CSV, Bitwarden JSON, KeePassXC CSV) read
//!   into secrets, with what was skipped and what is wrong.
//! - [`generate_password`]: the new value a rotation sets on a target.
//! - [`wire`]: the secrets API's request and answer types.
//!
//! No IO, no SQL, no network: the server and the CLI call this crate; the gateway does not.
//! **Invariant:** a secret value is only ever held in [`SecretBytes`]; nothing here implements
//! `Serialize`, `Display` or a revealing `Debug` for one.

mod generate;
pub mod import;
mod kind;
pub mod mask;
mod tls;
mod value;
pub mod wire;

pub use generate::{GENERATED_PASSWORD_LEN, generate_password};
pub use kind::{FieldSpec, SecretKind};
pub use portcullis_crypto::SecretBytes;
pub use tls::CertificateFacts;
pub use value::{Facts, SecretValue, open, seal, value_aad};

/// The largest value a secret may hold, all its fields together (a TLS chain with its key, a
/// cloud service account's JSON fit well below it).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The largest public field (a host, a user name, a URL).
pub const MAX_PUBLIC_FIELD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    /// The value or its metadata is not acceptable; the message says why (never the value).
    #[error("{0}")]
    Invalid(String),
    /// A stored value did not open under its associated data (moved, edited, or another key).
    #[error("the stored value did not open: it was changed or moved behind the server's back")]
    NotAuthentic,
}

impl From<portcullis_crypto::CryptoError> for VaultError {
    fn from(_: portcullis_crypto::CryptoError) -> Self {
        VaultError::NotAuthentic
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> VaultError {
    VaultError::Invalid(message.into())
}
