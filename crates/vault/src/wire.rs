//! The secrets API's requests and answers. A value travels only sealed (HPKE to the server's
//! key, [`INFO_SECRET_VALUE`], the secret's name as associated data) and as the field encoding
//! of [`encode_fields`]; no answer type has a field that could hold one.

use portcullis_crypto::identity::Sealed;
use serde::{Deserialize, Serialize};

use crate::{Facts, SecretBytes, SecretKind, VaultError, invalid};

/// HPKE info of a secret value sealed to the server.
pub const INFO_SECRET_VALUE: &[u8] = b"portcullis/v1/secret-value";
/// Versions kept when the admin does not say (HashiCorp Vault's default too).
pub const DEFAULT_VERSIONS_KEPT: i64 = 10;
/// The most versions a secret may keep.
pub const MAX_VERSIONS_KEPT: i64 = 100;
/// The most items one page of the list holds.
pub const MAX_PAGE: u32 = 500;

/// `POST /v1/secrets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddSecretRequest {
    pub name: String,
    pub kind: SecretKind,
    #[serde(default)]
    pub meta: SecretMeta,
    /// Why (kept in the version's history).
    #[serde(default)]
    pub reason: String,
    /// The fields ([`encode_fields`]) sealed to the server for this name.
    pub value: Sealed,
}

/// What an admin says about a secret besides its value.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SecretMeta {
    #[serde(default)]
    pub environment: String,
    /// A path of labels separated by `/` (`payments/prod`), empty for the top.
    #[serde(default)]
    pub folder: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// The user responsible for it (empty: nobody named).
    #[serde(default)]
    pub owner: String,
    /// When it must be replaced (Unix seconds); by default what the value says (a
    /// certificate's not-after, a token's expiry).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Whether it may be checked out and shown to a person under a grant.
    #[serde(default)]
    pub revealable: bool,
    /// Versions kept (older ones are destroyed, their history stays).
    #[serde(default)]
    pub versions_kept: Option<i64>,
    /// The SSH target whose password this is (a `password` secret only): the gateway then
    /// brokers the target with it, and rotates it on the target when a check-out ends.
    #[serde(default)]
    pub target: Option<String>,
}

/// `PUT /v1/secrets/{name}`: what changes (`None`: unchanged). A new value makes a new version.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EditSecretRequest {
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    /// `Some(None)` clears an expiry set by hand (the value's own then applies).
    #[serde(default)]
    pub expires_at: Option<Option<i64>>,
    #[serde(default)]
    pub revealable: Option<bool>,
    #[serde(default)]
    pub versions_kept: Option<i64>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub value: Option<Sealed>,
}

/// `POST /v1/secrets/{name}/restore`: make an old version current again, as a new version. The
/// one restoring never sees either value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestoreSecretRequest {
    pub version: i64,
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/secrets/{name}/remove` and `/purge`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RemoveSecretRequest {
    #[serde(default)]
    pub reason: String,
}

/// A secret as anyone who may list it sees it: metadata and public facts, never its value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SecretView {
    pub id: String,
    pub name: String,
    pub kind: SecretKind,
    pub environment: String,
    pub folder: String,
    pub tags: Vec<String>,
    pub description: String,
    pub owner: String,
    pub revealable: bool,
    /// The expiry in force: the admin's, or the value's own.
    pub expires_at: Option<i64>,
    pub version: i64,
    pub versions_kept: i64,
    pub facts: Facts,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub updated_by: String,
    pub removed_at: Option<i64>,
    /// The SSH target whose password it is.
    #[serde(default)]
    pub target: Option<String>,
}

/// One version in a secret's history: who made it, when, why — never its value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SecretVersionView {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub reason: String,
    /// The version this one restored.
    pub restored_from: Option<i64>,
    /// The value's facts at that version (a certificate's expiry then).
    pub facts: Facts,
    /// Destroyed past the versions kept: its history stays, its value is gone.
    pub destroyed_at: Option<i64>,
    pub current: bool,
}

/// `GET /v1/secrets?...`: one page, by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SecretQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SecretKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// This folder and the folders under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Words that must all appear in the name, folder, tags or description (never the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// Only those whose expiry is within this many seconds (or past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_within: Option<i64>,
    /// Removed ones too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// The page after this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretPage {
    pub items: Vec<SecretView>,
    /// Pass as `after` for the next page; `None`: this was the last.
    pub next: Option<String>,
}

/// The most secrets one import adds (all in one transaction).
pub const MAX_IMPORT: usize = 20_000;

/// `POST /v1/secret-imports`: all of them or none.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportRequest {
    pub items: Vec<AddSecretRequest>,
    /// Check everything the server would, store nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Where they came from, for the audit (`bitwarden export`).
    #[serde(default)]
    pub source: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// Added (or, in a dry run, that would be).
    pub imported: usize,
    pub dry_run: bool,
}

/// HPKE info of a secret value released to a device (check-out or use).
pub const INFO_SECRET_RELEASE: &[u8] = b"portcullis/v1/secret-release";

/// Why a checked-out value is released: each reveal and each copy is its own audit event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevealPurpose {
    Reveal,
    Copy,
}

/// `POST /v1/secrets/{name}/checkout`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckoutRequest {
    pub purpose: RevealPurpose,
    /// Where the client says it shows the value: `terminal`, `pipe` (with `--allow-pipe`) or
    /// `desktop`. Recorded as said.
    pub to: String,
}

/// `POST /v1/secrets/{name}/use`: a process is about to get the value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UseRequest {
    /// The command line, for the audit (at most 4 KiB).
    pub command: String,
}

/// A value released to the caller's device: sealed to its X25519 key, bound to `id`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Released {
    /// The check-out's or the use's id (the associated data of `value`).
    pub id: String,
    pub secret: String,
    pub kind: SecretKind,
    pub version: i64,
    /// When the grant it was released under ends.
    pub until: i64,
    /// The fields ([`encode_fields`]), sealed with [`INFO_SECRET_RELEASE`].
    pub value: Sealed,
}

/// `POST /v1/secrets/{name}/used`: how the process the value went to ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UseEnded {
    pub id: String,
    pub exit_status: Option<i32>,
    pub signal: Option<String>,
}

/// `POST /v1/secrets/{name}/checkin`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckinOutcome {
    pub secret: String,
    /// The current version at check-in.
    pub version: i64,
    /// The rotation started (a password bound to a target): the target's gateway sets a new
    /// password and the vault commits it as the next version once it logs in with it.
    #[serde(default)]
    pub rotation: Option<String>,
}

/// A rotation of a bound password: why, whose check-in, how it went.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RotationView {
    pub id: String,
    /// `checkin`, `revoked`, `grant_ended` or `admin: …`.
    pub reason: String,
    pub requested_by: String,
    /// `pending`, `rotated` or `failed`.
    pub state: String,
    /// Where it failed: `login`, `change` or `verify`.
    pub stage: Option<String>,
    /// What the target said.
    pub detail: Option<String>,
    pub from_version: i64,
    /// The version it made.
    pub version: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// The fields of a value as they travel sealed: per field, a length-prefixed name and value.
pub fn encode_fields<'n, 'v>(fields: impl IntoIterator<Item = (&'n str, &'v SecretBytes)>) -> SecretBytes {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.expose_secret().len() as u32).to_be_bytes());
        out.extend_from_slice(value.expose_secret());
    }
    SecretBytes::from(out)
}

/// The inverse of [`encode_fields`]; refuses a truncated or malformed encoding.
pub fn decode_fields(bytes: &[u8]) -> Result<Vec<(String, SecretBytes)>, VaultError> {
    let broken = || invalid("the value's fields are malformed");
    let mut fields = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>().ok_or_else(broken)?;
        let len = u16::from_be_bytes(*len) as usize;
        let name = tail.get(..len).ok_or_else(broken)?;
        let tail = &tail[len..];
        let (vlen, tail) = tail.split_first_chunk::<4>().ok_or_else(broken)?;
        let vlen = u32::from_be_bytes(*vlen) as usize;
        let value = tail.get(..vlen).ok_or_else(broken)?;
        rest = &tail[vlen..];
        let name = std::str::from_utf8(name).map_err(|_| broken())?;
        fields.push((name.to_string(), SecretBytes::from(value.to_vec())));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncations_are_refused() {
        let a = SecretBytes::from(b"pw".to_vec());
        let b = SecretBytes::from(vec![0u8, 1, 2]);
        let encoded = encode_fields([("password", &a), ("username", &b)]);
        let back = decode_fields(encoded.expose_secret()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, "password");
        assert_eq!(back[1].1.expose_secret(), &vec![0u8, 1, 2]);
        for cut in 1..encoded.expose_secret().len() {
            let truncated = &encoded.expose_secret()[..cut];
            if cut != 2 + 8 + 4 + 2 {
                assert!(decode_fields(truncated).is_err(), "cut at {cut}");
            }
        }
    }
}
