//! The kinds of secret and their fields.

use serde::{Deserialize, Serialize};

/// What a secret is. Its name on the wire and on the command line is the kebab-case one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    Password,
    SshKey,
    ApiToken,
    Database,
    Tls,
    CloudKey,
    OauthToken,
    Note,
}

/// One field of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    /// Secret fields are sealed and never shown; public ones are facts anyone who may list the
    /// secret sees (a host, a user name, a certificate).
    pub secret: bool,
    pub required: bool,
    /// May span lines (a key, a certificate chain, a note); otherwise one line of text.
    pub multiline: bool,
    /// Must be UTF-8 text (everything but an opaque cloud secret).
    pub text: bool,
}

const fn field(name: &'static str, secret: bool, required: bool, multiline: bool) -> FieldSpec {
    FieldSpec { name, secret, required, multiline, text: true }
}

const PASSWORD: &[FieldSpec] =
    &[field("password", true, true, false), field("username", false, false, false), field("url", false, false, false)];
const SSH_KEY: &[FieldSpec] = &[field("private_key", true, true, true), field("passphrase", true, false, false)];
const API_TOKEN: &[FieldSpec] =
    &[field("token", true, true, false), field("url", false, false, false), field("username", false, false, false)];
const DATABASE: &[FieldSpec] = &[
    field("password", true, true, false),
    field("engine", false, true, false),
    field("host", false, true, false),
    field("port", false, true, false),
    field("user", false, true, false),
    field("database", false, false, false),
];
const TLS: &[FieldSpec] = &[field("private_key", true, true, true), field("certificate", false, true, true)];
const CLOUD_KEY: &[FieldSpec] = &[
    FieldSpec { name: "secret", secret: true, required: true, multiline: true, text: false },
    field("provider", false, true, false),
    field("key_id", false, true, false),
    field("region", false, false, false),
];
const OAUTH_TOKEN: &[FieldSpec] = &[
    field("access_token", true, true, false),
    field("refresh_token", true, false, false),
    field("expires_at", false, false, false),
    field("token_url", false, false, false),
    field("client_id", false, false, false),
];
const NOTE: &[FieldSpec] = &[field("text", true, true, true)];

/// Database engines a `database` secret may name.
pub(crate) const ENGINES: &[&str] =
    &["postgres", "mysql", "mariadb", "sqlserver", "oracle", "mongodb", "redis", "cassandra", "other"];
/// Cloud providers a `cloud-key` may name.
pub(crate) const PROVIDERS: &[&str] = &["aws", "gcp", "azure", "oci", "digitalocean", "cloudflare", "other"];

impl SecretKind {
    pub const ALL: [SecretKind; 8] = [
        SecretKind::Password,
        SecretKind::SshKey,
        SecretKind::ApiToken,
        SecretKind::Database,
        SecretKind::Tls,
        SecretKind::CloudKey,
        SecretKind::OauthToken,
        SecretKind::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Password => "password",
            SecretKind::SshKey => "ssh-key",
            SecretKind::ApiToken => "api-token",
            SecretKind::Database => "database",
            SecretKind::Tls => "tls",
            SecretKind::CloudKey => "cloud-key",
            SecretKind::OauthToken => "oauth-token",
            SecretKind::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown secret type {s:?}; one of: {}", Self::ALL.map(SecretKind::as_str).join(", "))
        })
    }

    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            SecretKind::Password => PASSWORD,
            SecretKind::SshKey => SSH_KEY,
            SecretKind::ApiToken => API_TOKEN,
            SecretKind::Database => DATABASE,
            SecretKind::Tls => TLS,
            SecretKind::CloudKey => CLOUD_KEY,
            SecretKind::OauthToken => OAUTH_TOKEN,
            SecretKind::Note => NOTE,
        }
    }

    /// The field `--value-stdin` / `--value-file` fill: the kind's main secret.
    pub fn primary_field(self) -> &'static str {
        self.fields()[0].name
    }

    pub fn field(self, name: &str) -> Option<&'static FieldSpec> {
        self.fields().iter().find(|f| f.name == name)
    }
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name_and_leads_with_a_required_secret() {
        for kind in SecretKind::ALL {
            assert_eq!(SecretKind::parse(kind.as_str()), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            let primary = kind.fields()[0];
            assert!(primary.secret && primary.required, "{kind}");
        }
        assert!(SecretKind::parse("passwd").unwrap_err().contains("one of: password, ssh-key"));
    }
}
