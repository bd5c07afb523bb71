//! Reviews (with the security key when the policy asks), revocation, a request's story,
//! policies, groups and users, and this user's security keys — for the window.
//!
//! A security-key ceremony runs in the client core on a blocking thread; what it needs from
//! the person (touch, PIN) goes to the window as [`KeyPromptView`] events, and the PIN comes
//! back through [`AppCore::key_pin`]. The PIN is handed to the key and to nothing else.

use std::sync::{Arc, Mutex as StdMutex, mpsc};
use std::time::Duration;

use portcullis_client::security_key::{self, Authenticator, KeyPrompts};
use portcullis_proto::{Decision, PolicyTestRequest, RevokeRequest};

use crate::{
    AppCore, AppError, GroupSummaryView, KeyPromptView, KeyView, MemberView, PolicyCheckView, PolicySetView,
    PolicyTestForm, PolicyTestView, RequestDetailView, RequestView, RevokeView,
};

/// Where a waiting ceremony's PIN goes.
pub type PinSlot = Arc<StdMutex<Option<mpsc::Sender<Option<String>>>>>;

/// How long the window has to answer a PIN prompt.
const PIN_WAIT: Duration = Duration::from_secs(120);

/// The authenticator the window uses: USB, or (test builds only) the software key named by
/// `PORTCULLIS_AUTHENTICATOR=soft:FILE`.
fn authenticator() -> Result<Authenticator, AppError> {
    match std::env::var("PORTCULLIS_AUTHENTICATOR") {
        Ok(spec) => Authenticator::parse(&spec).map_err(AppError::from),
        Err(_) => Ok(Authenticator::Usb),
    }
}

/// Prompts that travel to the window.
struct WindowPrompts {
    sink: Arc<dyn Fn(KeyPromptView) + Send + Sync>,
    slot: PinSlot,
}

impl std::fmt::Debug for WindowPrompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowPrompts")
    }
}

impl WindowPrompts {
    fn say(&self, kind: &str) {
        (self.sink)(KeyPromptView { kind: kind.into() });
    }
}

impl KeyPrompts for WindowPrompts {
    fn pin(&self) -> Option<String> {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(tx);
        }
        self.say("pin");
        rx.recv_timeout(PIN_WAIT).ok().flatten()
    }

    fn touch(&self) {
        self.say("touch");
    }

    fn processing(&self) {
        self.say("processing");
    }
}

impl AppCore {
    fn prompts(&self, sink: impl Fn(KeyPromptView) + Send + Sync + 'static) -> Arc<WindowPrompts> {
        Arc::new(WindowPrompts { sink: Arc::new(sink), slot: self.key_pin.clone() })
    }

    /// Approves or denies; when the policy wants a security key, runs the ceremony (prompts
    /// go to `prompts`) and sends the review with its assertion.
    pub async fn review(
        &self,
        id: &str,
        approve: bool,
        reason: Option<String>,
        prompts: impl Fn(KeyPromptView) + Send + Sync + 'static,
    ) -> Result<RequestView, AppError> {
        let decision = if approve { Decision::Approve } else { Decision::Deny };
        let device = self.device().await?;
        let window = self.prompts(prompts);
        let reviewed =
            security_key::review(device.api(), id, decision, reason, Some(&authenticator()?), window.clone()).await;
        window.say("done");
        Ok(reviewed?.into())
    }

    /// The PIN the window collected for a waiting ceremony (`None`: the person cancelled).
    pub fn key_pin(&self, pin: Option<String>) -> Result<(), AppError> {
        let sender = self.key_pin.lock().ok().and_then(|mut slot| slot.take());
        match sender {
            Some(tx) => tx.send(pin).map_err(|_| AppError::new("no_ceremony", "the security key stopped waiting")),
            None => Err(AppError::new("no_ceremony", "no security key is waiting for a PIN")),
        }
    }

    /// Ends a grant or withdraws a request.
    pub async fn revoke(&self, id: &str, reason: Option<String>) -> Result<RevokeView, AppError> {
        let outcome = self.device().await?.api().revoke(&RevokeRequest { id: id.into(), reason }).await?;
        Ok(RevokeView { request: outcome.request.into(), sessions_ended: outcome.sessions_ended })
    }

    pub async fn request_detail(&self, id: &str) -> Result<RequestDetailView, AppError> {
        Ok(self.device().await?.api().request_detail(id).await?.into())
    }

    pub async fn policy(&self) -> Result<PolicySetView, AppError> {
        Ok(self.device().await?.api().policy().await?.into())
    }

    pub async fn check_policy(&self, text: &str) -> Result<PolicyCheckView, AppError> {
        Ok(self.device().await?.api().check_policy(text).await?.into())
    }

    /// Stores a policy set; a refused one changes nothing (the window keeps the text).
    pub async fn save_policy(&self, text: &str) -> Result<PolicySetView, AppError> {
        Ok(self.device().await?.api().set_policy(text).await?.into())
    }

    pub async fn test_policy(&self, form: PolicyTestForm) -> Result<PolicyTestView, AppError> {
        let blank = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let req = PolicyTestRequest {
            user: form.user,
            target: form.target,
            duration_secs: form.duration_secs,
            at: blank(form.at),
            source_ip: blank(form.source_ip),
            text: form.text,
        };
        Ok(self.device().await?.api().test_policy(&req).await?.into())
    }

    pub async fn members(&self) -> Result<Vec<MemberView>, AppError> {
        Ok(self.device().await?.api().users().await?.into_iter().map(MemberView::from).collect())
    }

    pub async fn groups(&self) -> Result<Vec<GroupSummaryView>, AppError> {
        let groups = self.device().await?.api().groups().await?;
        Ok(groups.into_iter().map(|g| GroupSummaryView { name: g.name, members: g.members }).collect())
    }

    pub async fn add_group(&self, name: &str) -> Result<GroupSummaryView, AppError> {
        let g = self.device().await?.api().add_group(name).await?;
        Ok(GroupSummaryView { name: g.name, members: g.members })
    }

    pub async fn set_user_groups(&self, user: &str, groups: Vec<String>) -> Result<MemberView, AppError> {
        Ok(self.device().await?.api().set_groups(user, &groups).await?.into())
    }

    pub async fn keys(&self) -> Result<Vec<KeyView>, AppError> {
        Ok(self.device().await?.api().security_keys().await?.into_iter().map(KeyView::from).collect())
    }

    /// Registers a security key; prompts (touch, PIN) go to `prompts`.
    pub async fn add_key(
        &self,
        name: &str,
        prompts: impl Fn(KeyPromptView) + Send + Sync + 'static,
    ) -> Result<KeyView, AppError> {
        let device = self.device().await?;
        let window = self.prompts(prompts);
        let added = security_key::add_key(device.api(), name, &authenticator()?, window.clone()).await;
        window.say("done");
        Ok(added?.into())
    }

    /// Removes a security key, confirmed with one of the user's keys (prompts go to `prompts`).
    pub async fn remove_key(
        &self,
        key: &str,
        prompts: impl Fn(KeyPromptView) + Send + Sync + 'static,
    ) -> Result<KeyView, AppError> {
        let device = self.device().await?;
        let window = self.prompts(prompts);
        let removed = security_key::remove_key(device.api(), key, &authenticator()?, window.clone()).await;
        window.say("done");
        Ok(removed?.into())
    }
}
