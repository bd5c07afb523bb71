//! Security keys from the client core: WebAuthn ceremonies run natively over CTAP2 (USB), since
//! the desktop's WebKitGTK has no `navigator.credentials`. The ceremony blocks (the CTAP2 stack
//! waits on the device), so it runs on a blocking thread, never on the async runtime's workers.
//!
//! With the `soft-authenticator` feature (tests only), `soft:FILE` selects webauthn-rs's
//! software token kept in FILE; without it that choice is refused with a clear message.

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_proto::{Decision, KeyChallenge, ReviewRequest, StepUpAssertion};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;

use crate::ClientError;

/// Which authenticator answers a ceremony.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticator {
    /// The first FIDO2 security key plugged in over USB.
    Usb,
    /// A software token kept in a file (tests; needs the `soft-authenticator` feature). With
    /// `ask_pin` (`soft+pin:FILE`) it first asks for a PIN through the same prompts a USB key
    /// uses (any non-empty answer: the token has no PIN of its own), so the window's dialog is
    /// exercised end to end.
    SoftFile { file: PathBuf, ask_pin: bool },
}

impl Authenticator {
    /// `usb`, `soft:FILE` or `soft+pin:FILE`.
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        Self::parse_with(spec, cfg!(feature = "soft-authenticator"))
    }

    fn parse_with(spec: &str, soft_built_in: bool) -> Result<Self, ClientError> {
        match spec.trim() {
            "" | "usb" => Ok(Authenticator::Usb),
            soft if soft.starts_with("soft:") || soft.starts_with("soft+pin:") => {
                if !soft_built_in {
                    return Err(ClientError::Input(
                        "the software authenticator (soft:FILE) is for tests and is not part of this build; \
                         use a USB security key (--authenticator usb)"
                            .into(),
                    ));
                }
                let (ask_pin, file) = match soft.split_once(':') {
                    Some(("soft+pin", file)) => (true, file),
                    Some((_, file)) => (false, file),
                    None => (false, ""),
                };
                if file.is_empty() {
                    return Err(ClientError::Input("soft: needs a file name (soft:FILE)".into()));
                }
                Ok(Authenticator::SoftFile { file: PathBuf::from(file), ask_pin })
            }
            other => Err(ClientError::Input(format!("unknown authenticator {other:?}; use usb"))),
        }
    }
}

/// What the person at the key is asked to do; the desktop shows a dialog, the CLI a prompt.
pub trait KeyPrompts: Send + Sync + std::fmt::Debug + 'static {
    /// The key's PIN, or `None` to cancel. May block (it waits for the person).
    fn pin(&self) -> Option<String>;
    /// "Touch your security key" (must not block).
    fn touch(&self);
    /// The key is working.
    fn processing(&self) {}
}

/// Bridges our prompts to webauthn-authenticator-rs's callback.
#[derive(Debug)]
struct Prompts(Arc<dyn KeyPrompts>);

impl UiCallback for Prompts {
    fn request_pin(&self) -> Option<String> {
        self.0.pin()
    }
    fn request_touch(&self) {
        self.0.touch()
    }
    fn processing(&self) {
        self.0.processing()
    }
    fn fingerprint_enrollment_feedback(&self, _remaining: u32, _feedback: Option<EnrollSampleStatus>) {}
    fn cable_qr_code(&self, _request_type: CableRequestType, _url: String) {}
    fn dismiss_qr_code(&self) {}
    fn cable_status_update(&self, _state: CableState) {}
}

fn failed(what: &str, e: impl std::fmt::Debug) -> ClientError {
    ClientError::Input(format!("the security key could not {what}: {e:?}"))
}

enum Ceremony {
    Register(CreationChallengeResponse),
    Assert(RequestChallengeResponse),
}

enum Answer {
    Registered(RegisterPublicKeyCredential),
    Asserted(PublicKeyCredential),
}

fn run_on<B: webauthn_authenticator_rs::AuthenticatorBackend>(
    backend: &mut B,
    origin: Url,
    ceremony: Ceremony,
) -> Result<Answer, ClientError> {
    match ceremony {
        Ceremony::Register(options) => {
            backend.do_registration(origin, options).map(Answer::Registered).map_err(|e| failed("register", e))
        }
        Ceremony::Assert(options) => {
            backend.do_authentication(origin, options).map(Answer::Asserted).map_err(|e| failed("confirm", e))
        }
    }
}

/// Runs a ceremony to the end on a blocking thread.
async fn ceremony(
    authenticator: Authenticator,
    prompts: Arc<dyn KeyPrompts>,
    origin: Url,
    ceremony: Ceremony,
) -> Result<Answer, ClientError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || match authenticator {
        Authenticator::Usb => {
            let ui = Prompts(prompts);
            let _entered = handle.enter();
            let mut backend = handle.block_on(usb_authenticator(&ui))?;
            run_on(&mut backend, origin, ceremony)
        }
        Authenticator::SoftFile { file, ask_pin } => {
            if ask_pin && prompts.pin().is_none_or(|pin| pin.is_empty()) {
                return Err(ClientError::Input("the security key was cancelled (no PIN)".into()));
            }
            prompts.touch();
            soft(&file, origin, ceremony)
        }
    })
    .await
    .map_err(|e| ClientError::Input(format!("the security-key ceremony stopped: {e}")))?
}

/// The first USB FIDO2 authenticator, waiting (up to 30 s) for one to be plugged in.
async fn usb_authenticator(
    ui: &Prompts,
) -> Result<
    webauthn_authenticator_rs::ctap2::CtapAuthenticator<'_, webauthn_authenticator_rs::transport::AnyToken, Prompts>,
    ClientError,
> {
    use futures_util::StreamExt;
    use webauthn_authenticator_rs::ctap2::CtapAuthenticator;
    use webauthn_authenticator_rs::transport::{AnyTransport, TokenEvent, Transport};

    let transport = AnyTransport::new().await.map_err(|e| failed("be found (USB)", e))?;
    let mut tokens = transport.watch().await.map_err(|e| failed("be found (USB)", e))?;
    let wait = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(wait);
    loop {
        tokio::select! {
            _ = &mut wait => {
                return Err(ClientError::Input("no security key was found on USB within 30 seconds; plug one in".into()));
            }
            event = tokens.next() => match event {
                Some(TokenEvent::Added(token)) => {
                    if let Some(authenticator) = CtapAuthenticator::new(token, ui).await {
                        return Ok(authenticator);
                    }
                }
                Some(_) => {}
                None => return Err(ClientError::Input("no security key was found on USB; plug one in".into())),
            },
        }
    }
}

#[cfg(feature = "soft-authenticator")]
fn soft(file: &std::path::Path, origin: Url, ceremony: Ceremony) -> Result<Answer, ClientError> {
    use webauthn_authenticator_rs::softtoken::{SoftToken, SoftTokenFile};
    let existing = std::fs::OpenOptions::new().read(true).write(true).open(file);
    let mut token = match existing {
        Ok(f) => SoftTokenFile::open(f).map_err(|e| failed("be read from its file", e))?,
        Err(_) => {
            // A token that claims user verification (its "PIN" is always right): a test stand-in.
            let (token, _) = SoftToken::new(true).map_err(|e| failed("be created", e))?;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(file)
                .map_err(|e| ClientError::Input(format!("cannot create {}: {e}", file.display())))?;
            SoftTokenFile::new(token, f)
        }
    };
    run_on(&mut token, origin, ceremony)
}

#[cfg(not(feature = "soft-authenticator"))]
fn soft(_file: &std::path::Path, _origin: Url, _ceremony: Ceremony) -> Result<Answer, ClientError> {
    Err(ClientError::Input("the software authenticator is not part of this build".into()))
}

fn origin_of(challenge: &KeyChallenge) -> Result<Url, ClientError> {
    Url::parse(&challenge.origin)
        .map_err(|_| ClientError::Input(format!("bad relying-party origin {:?}", challenge.origin)))
}

/// Registers a new credential on the authenticator for the server's challenge.
pub async fn register(
    authenticator: &Authenticator,
    prompts: Arc<dyn KeyPrompts>,
    challenge: &KeyChallenge,
) -> Result<serde_json::Value, ClientError> {
    let options: CreationChallengeResponse = serde_json::from_value(challenge.options.clone())
        .map_err(|e| ClientError::Input(format!("the server's key registration is malformed: {e}")))?;
    match ceremony(authenticator.clone(), prompts, origin_of(challenge)?, Ceremony::Register(options)).await? {
        Answer::Registered(credential) => serde_json::to_value(credential).map_err(|e| failed("answer", e)),
        Answer::Asserted(_) => Err(failed("register", "unexpected answer")),
    }
}

/// Signs the server's step-up challenge with the authenticator.
pub async fn assert(
    authenticator: &Authenticator,
    prompts: Arc<dyn KeyPrompts>,
    challenge: &KeyChallenge,
) -> Result<serde_json::Value, ClientError> {
    let options: RequestChallengeResponse = serde_json::from_value(challenge.options.clone())
        .map_err(|e| ClientError::Input(format!("the server's step-up challenge is malformed: {e}")))?;
    match ceremony(authenticator.clone(), prompts, origin_of(challenge)?, Ceremony::Assert(options)).await? {
        Answer::Asserted(credential) => serde_json::to_value(credential).map_err(|e| failed("answer", e)),
        Answer::Registered(_) => Err(failed("confirm", "unexpected answer")),
    }
}

/// An assertion from one of the user's keys confirming a change to their keys.
async fn confirm_change(
    api: &crate::api::ApiClient,
    authenticator: &Authenticator,
    prompts: Arc<dyn KeyPrompts>,
) -> Result<StepUpAssertion, ClientError> {
    let challenge = api.start_key_change().await?;
    let credential = assert(authenticator, prompts, &challenge).await?;
    Ok(StepUpAssertion { challenge_id: challenge.challenge_id, credential })
}

/// Registers a security key under `name` for this device's user. When they already have one,
/// the server asks for it first (touch the key you have, then the new one).
pub async fn add_key(
    api: &crate::api::ApiClient,
    name: &str,
    authenticator: &Authenticator,
    prompts: Arc<dyn KeyPrompts>,
) -> Result<portcullis_proto::SecurityKeyView, ClientError> {
    let challenge = match api.start_key_registration(name, None).await {
        Err(ClientError::Api { code, .. }) if code == "step_up_required" => {
            let confirmed = confirm_change(api, authenticator, prompts.clone()).await?;
            api.start_key_registration(name, Some(confirmed)).await?
        }
        other => other?,
    };
    let credential = register(authenticator, prompts, &challenge).await?;
    api.finish_key_registration(&portcullis_proto::KeyRegistrationFinish {
        challenge_id: challenge.challenge_id,
        credential,
    })
    .await
}

/// Removes one of the user's keys, confirmed with one of their keys when the server asks.
pub async fn remove_key(
    api: &crate::api::ApiClient,
    key: &str,
    authenticator: &Authenticator,
    prompts: Arc<dyn KeyPrompts>,
) -> Result<portcullis_proto::SecurityKeyView, ClientError> {
    match api.remove_security_key(key, None).await {
        Err(ClientError::Api { code, .. }) if code == "step_up_required" => {
            let confirmed = confirm_change(api, authenticator, prompts).await?;
            api.remove_security_key(key, Some(confirmed)).await
        }
        other => other,
    }
}

/// Reviews a request; when the server answers that the policy wants it confirmed with a
/// security key, runs the ceremony on `authenticator` (USB when `None`) and sends it again with
/// the assertion.
pub async fn review(
    api: &crate::api::ApiClient,
    id: &str,
    decision: Decision,
    reason: Option<String>,
    authenticator: Option<&Authenticator>,
    prompts: Arc<dyn KeyPrompts>,
) -> Result<portcullis_proto::AccessRequestView, ClientError> {
    let plain = ReviewRequest { decision, reason: reason.clone(), step_up: None };
    match api.review(id, &plain).await {
        Err(ClientError::Api { code, .. }) if code == "step_up_required" => {}
        other => return other,
    }
    let authenticator = authenticator.cloned().unwrap_or(Authenticator::Usb);
    let challenge = api.start_step_up(id, decision).await?;
    let credential = assert(&authenticator, prompts, &challenge).await?;
    let step_up = Some(StepUpAssertion { challenge_id: challenge.challenge_id, credential });
    api.review(id, &ReviewRequest { decision, reason, step_up }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_authenticator_exists_only_where_it_is_built_in() {
        assert_eq!(Authenticator::parse_with("usb", false).unwrap(), Authenticator::Usb);
        assert_eq!(Authenticator::parse_with("", false).unwrap(), Authenticator::Usb);
        let refused = Authenticator::parse_with("soft:/tmp/k", false).unwrap_err().to_string();
        assert!(refused.contains("not part of this build") && refused.contains("usb"), "{refused}");
        assert_eq!(
            Authenticator::parse_with("soft:/tmp/k", true).unwrap(),
            Authenticator::SoftFile { file: "/tmp/k".into(), ask_pin: false }
        );
        assert_eq!(
            Authenticator::parse_with("soft+pin:/tmp/k", true).unwrap(),
            Authenticator::SoftFile { file: "/tmp/k".into(), ask_pin: true }
        );
        assert!(Authenticator::parse_with("soft+pin:/tmp/k", false).is_err());
        assert!(Authenticator::parse_with("soft:", true).is_err());
        assert!(Authenticator::parse_with("nfc", true).is_err());
    }
}
