//! A secret's value: its fields, validated for its kind, and sealed at rest.

use std::collections::BTreeMap;

use portcullis_crypto::{Aad, CryptoRng, RngCore, SymmetricKey, envelope};
use serde::{Deserialize, Serialize};

use crate::kind::{ENGINES, PROVIDERS};
use crate::tls::{self, CertificateFacts};
use crate::{MAX_PUBLIC_FIELD_BYTES, MAX_VALUE_BYTES, SecretBytes, SecretKind, VaultError, invalid};

/// A validated value: every field of its kind that was given, in the kind's order. Secret
/// and public fields alike are sealed together; the public ones are also in [`Facts`].
pub struct SecretValue {
    kind: SecretKind,
    fields: Vec<(&'static str, SecretBytes)>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.fields.iter().map(|(n, _)| *n).collect();
        write!(f, "SecretValue({}, fields {names:?}: <secret>)", self.kind)
    }
}

/// What a value says about itself that is not secret: its public fields (a host, a user, a
/// provider, a key id), and what was read from it (a certificate's subject and expiry, an SSH
/// key's fingerprint). Stored in plaintext next to the sealed value, shown to whoever may list it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Public fields by name (never a certificate chain: see `certificate`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateFacts>,
    /// An SSH key's algorithm and SHA-256 fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<String>,
    /// When the value stops working, as the value says (a certificate's not-after, a token's
    /// expiry); the secret's expiry unless the admin set another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl SecretValue {
    pub fn kind(&self) -> SecretKind {
        self.kind
    }

    /// A field's bytes (`None`: not given).
    pub fn field(&self, name: &str) -> Option<&SecretBytes> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The fields, in the kind's order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &SecretBytes)> {
        self.fields.iter().map(|(n, v)| (*n, v))
    }

    /// Validates `given` (field name → bytes) for `kind` and returns the value and its facts.
    /// A TLS value may come as one combined PEM in `private_key` (chain and key together).
    pub fn parse(kind: SecretKind, given: Vec<(String, SecretBytes)>) -> Result<(SecretValue, Facts), VaultError> {
        let mut given = given;
        if kind == SecretKind::Tls
            && !given.iter().any(|(n, _)| n == "certificate")
            && let Some(i) = given.iter().position(|(n, _)| n == "private_key")
            && let Some((chain, key)) = tls::split_combined(given[i].1.expose_secret())
        {
            given[i].1 = key;
            given.push(("certificate".into(), SecretBytes::from(chain)));
        }
        let total: usize = given.iter().map(|(n, v)| n.len() + v.expose_secret().len()).sum();
        if total > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "the value is {total} bytes; a secret holds at most {MAX_VALUE_BYTES} bytes (64 KiB)"
            )));
        }
        let mut fields: Vec<(&'static str, SecretBytes)> = Vec::new();
        for (name, value) in given {
            let spec = kind.field(&name).ok_or_else(|| {
                let known: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
                invalid(format!("a {kind} secret has no field {name:?}; its fields: {}", known.join(", ")))
            })?;
            if fields.iter().any(|(n, _)| *n == spec.name) {
                return Err(invalid(format!("field {name} given twice")));
            }
            check_field(kind, spec, &value)?;
            fields.push((spec.name, value));
        }
        for spec in kind.fields() {
            if spec.required && !fields.iter().any(|(n, _)| *n == spec.name) {
                return Err(invalid(format!("a {kind} secret needs its {} field", spec.name)));
            }
        }
        fields.sort_by_key(|(n, _)| kind.fields().iter().position(|f| f.name == *n));
        let value = SecretValue { kind, fields };
        let facts = value.facts()?;
        Ok((value, facts))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(|v| std::str::from_utf8(v.expose_secret()).ok())
    }

    fn facts(&self) -> Result<Facts, VaultError> {
        let mut facts = Facts::default();
        for (name, value) in &self.fields {
            let spec = self.kind.field(name);
            if spec.is_some_and(|s| !s.secret) && *name != "certificate" {
                facts.fields.insert((*name).to_string(), String::from_utf8_lossy(value.expose_secret()).into_owned());
            }
        }
        match self.kind {
            SecretKind::Tls => {
                let chain = self.field("certificate").map(|c| c.expose_secret().as_slice()).unwrap_or_default();
                let key = self.field("private_key").ok_or_else(|| invalid("a tls secret needs its private_key"))?;
                let cert = tls::check(chain, key)?;
                facts.expires_at = Some(cert.not_after);
                facts.certificate = Some(cert);
            }
            SecretKind::SshKey => {
                let text = self.text("private_key").unwrap_or_default();
                let key = russh::keys::PrivateKey::from_openssh(text).map_err(|_| {
                    invalid("the private key is not an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)")
                })?;
                let public = key.public_key();
                facts.ssh_key = Some(format!(
                    "{} {}",
                    public.algorithm().as_str(),
                    public.fingerprint(russh::keys::HashAlg::Sha256)
                ));
            }
            SecretKind::Database => {
                let engine = self.text("engine").unwrap_or_default();
                if !ENGINES.contains(&engine) {
                    return Err(invalid(format!("unknown database engine {engine:?}; one of: {}", ENGINES.join(", "))));
                }
                let port = self.text("port").unwrap_or_default();
                if !port.parse::<u16>().is_ok_and(|p| p > 0) {
                    return Err(invalid(format!("the port {port:?} is not a number from 1 to 65535")));
                }
            }
            SecretKind::CloudKey => {
                let provider = self.text("provider").unwrap_or_default();
                if !PROVIDERS.contains(&provider) {
                    return Err(invalid(format!("unknown provider {provider:?}; one of: {}", PROVIDERS.join(", "))));
                }
            }
            SecretKind::OauthToken => {
                if let Some(expiry) = self.text("expires_at") {
                    let at = parse_time(expiry)?;
                    facts.fields.insert("expires_at".into(), at.to_string());
                    facts.expires_at = Some(at);
                }
            }
            SecretKind::Password | SecretKind::ApiToken | SecretKind::Note => {}
        }
        Ok(facts)
    }

    /// The value as stored inside its envelope: the same field encoding it travelled in.
    fn encode(&self) -> SecretBytes {
        crate::wire::encode_fields(self.fields.iter().map(|(n, v)| (*n, v)))
    }

    fn decode(kind: SecretKind, bytes: &[u8]) -> Result<SecretValue, VaultError> {
        let mut fields = Vec::new();
        for (name, value) in crate::wire::decode_fields(bytes)? {
            let spec = kind.field(&name).ok_or_else(|| invalid("a stored value is malformed"))?;
            fields.push((spec.name, value));
        }
        Ok(SecretValue { kind, fields })
    }
}

/// An expiry as RFC 3339 (`2027-01-31T12:00:00Z`) or Unix seconds.
pub(crate) fn parse_time(text: &str) -> Result<i64, VaultError> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| invalid(format!("{text:?} is not a time: give RFC 3339 (2027-01-31T12:00:00Z) or Unix seconds")))
}

fn check_field(kind: SecretKind, spec: &crate::FieldSpec, value: &SecretBytes) -> Result<(), VaultError> {
    let bytes = value.expose_secret();
    let name = spec.name;
    if bytes.is_empty() {
        return Err(invalid(format!("the {name} is empty")));
    }
    if !spec.secret && bytes.len() > MAX_PUBLIC_FIELD_BYTES && name != "certificate" {
        return Err(invalid(format!("the {name} is longer than {MAX_PUBLIC_FIELD_BYTES} bytes")));
    }
    if !spec.text {
        return Ok(());
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        let what = if kind == SecretKind::Password || name == "password" { "password" } else { name };
        return Err(invalid(format!("the {what} is not UTF-8 text; it must be, to be typed or sent as a {what}")));
    };
    let control = text.chars().any(|c| c.is_control() && !(spec.multiline && matches!(c, '\n' | '\r' | '\t')));
    if control {
        let what = if spec.multiline {
            "a control character other than a line break or tab"
        } else {
            "a line break or control character"
        };
        return Err(invalid(format!("the {name} contains {what}")));
    }
    Ok(())
}

/// Associated data of a value at rest: the secret, its version and its kind.
pub fn value_aad(secret_id: &str, version: i64, kind: SecretKind) -> Aad {
    Aad::for_field("secret_versions", secret_id, version as u32, &format!("value/{}", kind.as_str()))
}

/// Seals `value` as version `version` of secret `secret_id`.
pub fn seal(
    root: &SymmetricKey,
    rng: &mut (impl CryptoRng + RngCore),
    secret_id: &str,
    version: i64,
    value: &SecretValue,
) -> Result<envelope::Envelope, VaultError> {
    let plain = value.encode();
    Ok(envelope::seal(root, rng, plain.expose_secret(), &value_aad(secret_id, version, value.kind))?)
}

/// Opens version `version` of secret `secret_id`, of `kind`.
pub fn open(
    root: &SymmetricKey,
    sealed: &envelope::Envelope,
    secret_id: &str,
    version: i64,
    kind: SecretKind,
) -> Result<SecretValue, VaultError> {
    let plain = envelope::open(root, sealed, &value_aad(secret_id, version, kind))?;
    SecretValue::decode(kind, plain.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crypto::OsRng;

    fn given(fields: &[(&str, &[u8])]) -> Vec<(String, SecretBytes)> {
        fields.iter().map(|(n, v)| (n.to_string(), SecretBytes::from(v.to_vec()))).collect()
    }

    #[test]
    fn values_are_validated_for_their_kind() {
        let big = vec![b'a'; MAX_VALUE_BYTES + 1];
        type Case<'a> = (SecretKind, &'a [(&'a str, &'a [u8])], Option<&'a str>);
        let cases: &[Case] = &[
            (SecretKind::Password, &[("password", b"correct horse")], None),
            (SecretKind::Password, &[("password", b"\xff\xfe")], Some("password is not UTF-8")),
            (SecretKind::Password, &[("password", b"two\nlines")], Some("line break")),
            (SecretKind::Password, &[("password", b"")], Some("is empty")),
            (SecretKind::Password, &[("username", b"root")], Some("needs its password")),
            (SecretKind::Password, &[("password", b"x"), ("pin", b"1")], Some("has no field \"pin\"")),
            (SecretKind::Password, &[("password", b"x"), ("password", b"y")], Some("given twice")),
            (SecretKind::Password, &[("password", &big)], Some("at most 65536 bytes")),
            (SecretKind::ApiToken, &[("token", b"ghp_abc"), ("url", b"https://api.github.com")], None),
            (
                SecretKind::Database,
                &[("engine", b"postgres"), ("host", b"db1"), ("port", b"5432"), ("user", b"app"), ("password", b"pw")],
                None,
            ),
            (
                SecretKind::Database,
                &[("engine", b"postgres"), ("host", b"db1"), ("port", b"99999"), ("user", b"app"), ("password", b"pw")],
                Some("not a number from 1 to 65535"),
            ),
            (
                SecretKind::Database,
                &[("engine", b"db2"), ("host", b"db1"), ("port", b"1"), ("user", b"app"), ("password", b"pw")],
                Some("unknown database engine"),
            ),
            (SecretKind::CloudKey, &[("provider", b"aws"), ("key_id", b"AKIAEXAMPLE"), ("secret", b"\x00\x01")], None),
            (
                SecretKind::CloudKey,
                &[("provider", b"moon"), ("key_id", b"k"), ("secret", b"s")],
                Some("unknown provider"),
            ),
            (SecretKind::OauthToken, &[("access_token", b"at"), ("expires_at", b"2027-01-31T12:00:00Z")], None),
            (SecretKind::OauthToken, &[("access_token", b"at"), ("expires_at", b"soon")], Some("is not a time")),
            (SecretKind::Note, &[("text", b"line one\nline two\ttab")], None),
            (SecretKind::Note, &[("text", b"bell\x07")], Some("control character other than")),
            (SecretKind::SshKey, &[("private_key", b"-----BEGIN NOTHING-----")], Some("not an OpenSSH private key")),
            (SecretKind::Tls, &[("private_key", b"nothing")], Some("needs its certificate")),
        ];
        for (kind, fields, want) in cases {
            let got = SecretValue::parse(*kind, given(fields));
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(why)) => assert!(e.to_string().contains(why), "{kind} {fields:?}: {e} (wanted {why})"),
                (Ok(_), Some(why)) => panic!("{kind}: accepted, wanted {why}"),
                (Err(e), None) => panic!("{kind}: {e}"),
            }
        }
    }

    #[test]
    fn public_fields_become_facts_and_secret_ones_never_do() {
        let (_, facts) = SecretValue::parse(
            SecretKind::Database,
            given(&[
                ("engine", b"postgres"),
                ("host", b"db1"),
                ("port", b"5432"),
                ("user", b"app"),
                ("password", b"canary-db-pw"),
            ]),
        )
        .unwrap();
        assert_eq!(facts.fields.get("host").map(String::as_str), Some("db1"));
        assert!(!serde_json::to_string(&facts).unwrap().contains("canary-db-pw"));
        let (_, facts) = SecretValue::parse(
            SecretKind::OauthToken,
            given(&[("access_token", b"canary-at"), ("refresh_token", b"canary-rt"), ("expires_at", b"1900000000")]),
        )
        .unwrap();
        assert_eq!(facts.expires_at, Some(1_900_000_000));
        let json = serde_json::to_string(&facts).unwrap();
        assert!(!json.contains("canary"), "{json}");
    }

    #[test]
    fn a_sealed_value_opens_only_as_itself() {
        let root = SymmetricKey::generate(&mut OsRng);
        let (value, _) =
            SecretValue::parse(SecretKind::Password, given(&[("password", b"pw-1"), ("username", b"root")])).unwrap();
        let sealed = seal(&root, &mut OsRng, "s1", 3, &value).unwrap();
        let back = open(&root, &sealed, "s1", 3, SecretKind::Password).unwrap();
        assert_eq!(back.field("password").unwrap().expose_secret(), b"pw-1");
        assert_eq!(back.field("username").unwrap().expose_secret(), b"root");
        // Another version, another secret, another kind, another key: none opens it.
        assert_eq!(open(&root, &sealed, "s1", 2, SecretKind::Password).unwrap_err(), VaultError::NotAuthentic);
        assert_eq!(open(&root, &sealed, "s2", 3, SecretKind::Password).unwrap_err(), VaultError::NotAuthentic);
        assert_eq!(open(&root, &sealed, "s1", 3, SecretKind::ApiToken).unwrap_err(), VaultError::NotAuthentic);
        let other = SymmetricKey::generate(&mut OsRng);
        assert_eq!(open(&other, &sealed, "s1", 3, SecretKind::Password).unwrap_err(), VaultError::NotAuthentic);
        assert!(!format!("{back:?}").contains("pw-1"));
    }
}
