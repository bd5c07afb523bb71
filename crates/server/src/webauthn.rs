//! The server as WebAuthn relying party (webauthn-rs): security keys registered per user and
//! the step-up assertions approvals may need.
//!
//! The relying-party id is fixed at `server init` (a DNS name the server is reached by, or a
//! synthetic `portcullis-….internal` for IP-only and standalone servers) and never derived from
//! the address in use: a credential registered once keeps working however the server is
//! reached. Clients assert for the origin `https://<rp id>`.

use std::time::Duration;

use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

use crate::ServerError;

/// How long a ceremony (registration or step-up) may take.
pub const CHALLENGE_TTL_SECS: i64 = 120;

pub struct RelyingParty {
    pub webauthn: Webauthn,
    pub rp_id: String,
    pub origin: String,
}

impl RelyingParty {
    pub fn new(rp_id: &str) -> Result<Self, ServerError> {
        let origin = format!("https://{rp_id}");
        let url =
            Url::parse(&origin).map_err(|e| ServerError::Internal(format!("relying-party origin {origin}: {e}")))?;
        let webauthn = WebauthnBuilder::new(rp_id, &url)
            .and_then(|b| b.rp_name("Portcullis").timeout(Duration::from_secs(CHALLENGE_TTL_SECS as u64)).build())
            .map_err(|e| ServerError::Internal(format!("relying party {rp_id}: {e}")))?;
        Ok(Self { webauthn, rp_id: rp_id.to_string(), origin })
    }
}

/// The relying-party id for a new server: the first DNS name it is reached by, else a
/// synthetic name that is stable for this server.
pub fn choose_rp_id(tls_names: &[String], seed: &str) -> String {
    let dns = tls_names.iter().find(|n| {
        n.parse::<std::net::IpAddr>().is_err()
            && *n != "localhost"
            && n.contains('.')
            && n.split('.')
                .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    });
    match dns {
        Some(name) => name.to_ascii_lowercase(),
        None => format!("portcullis-{}.internal", &seed[..seed.len().min(12)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rp_id_is_a_dns_name_never_an_address() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "portcullis-0123456789ab.internal"),
            (&["10.0.0.5", "::1"], "portcullis-0123456789ab.internal"),
            (&["localhost", "pam.example.com"], "pam.example.com"),
            (&["PAM.Example.com"], "pam.example.com"),
            (&["bad_name.example"], "portcullis-0123456789ab.internal"),
        ];
        for (names, want) in cases {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            assert_eq!(choose_rp_id(&names, "0123456789abcdef"), *want, "{names:?}");
            assert!(RelyingParty::new(want).is_ok(), "{want}");
        }
    }
}
