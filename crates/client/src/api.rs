//! The device's API client: the server's routes, called over the signed, pinned link
//! (`portcullis-link`), and its live subscription.

use portcullis_crypto::identity::SigningIdentity;
use portcullis_proto::{
    AccessChangeOutcome, AddGroupRequest, Decision, DeviceView, GroupView, KeyChallenge, KeyRegistrationFinish,
    KeyRegistrationStart, PolicyCheck, PolicyTestRequest, PolicyTestResult, PolicyText, PolicyView, RequestDetail,
    RevokeOutcome, RevokeRequest, Role, SecurityKeyView, SetGroupsRequest, SetRolesRequest, StepUpStart, UserView,
};
use portcullis_proto::{
    AccessRequestView, AddGatewayRequest, AddGatewayResponse, AddTargetRequest, AddUserRequest, AddUserResponse,
    CertificateRequest, CertificateResponse, CreateAccessRequest, EnrollRequest, EnrollResponse, GatewaySummary,
    LiveEvent, ReviewRequest, ServerEvent, SessionDetail, SessionSummary, TargetSummary, UpdateTargetRequest, WhoAmI,
};
use portcullis_vault::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use portcullis_link::{Link, LinkError, Pin, server_urls};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("this device is not enrolled (no device in {0}); run `portcullis enroll --server URL --code CODE`")]
    NotEnrolled(String),
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    #[error(
        "cannot reach the server at {url}: {detail}. Is it running (`portcullis server run`), and is the URL the one \
         it listens on?"
    )]
    Unreachable { url: String, detail: String },
    #[error("server identity check failed: {0}")]
    ServerIdentity(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Local(String),
    #[error("grant refused: {0}")]
    Grant(#[from] portcullis_proto::GrantError),
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] portcullis_crypto::CryptoError),
    #[error(transparent)]
    Keystore(#[from] portcullis_keystore::KeystoreError),
    /// The gateway refused or failed (its words).
    #[error("{0}")]
    Gateway(String),
}

impl From<portcullis_localdb::LocalDbError> for ClientError {
    fn from(e: portcullis_localdb::LocalDbError) -> Self {
        ClientError::Local(e.0)
    }
}

impl From<LinkError> for ClientError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Api { status, code, message } => ClientError::Api { status, code, message },
            LinkError::Unreachable { url, detail } => ClientError::Unreachable { url, detail },
            LinkError::Input(m) => ClientError::Input(m),
            LinkError::Local(m) => ClientError::Local(m),
        }
    }
}

impl ClientError {
    /// The server's machine-readable refusal code, if this is one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

const LIVE_PATH: &str = "/v1/live";

/// The device's API: its routes over the signed [`Link`] (cheap to clone: clones share the
/// link, its HTTP connections and which replica answers now).
#[derive(Clone)]
pub struct ApiClient {
    link: Link,
}

/// What a live subscription yields.
#[derive(Clone, Debug)]
// Events are few (one per request change): boxing them buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum LiveUpdate {
    /// The subscription is (again) established: reload lists once, then follow events.
    Connected,
    Event(LiveEvent),
    /// The connection dropped; the watcher retries with backoff.
    Disconnected(String),
}

impl ApiClient {
    pub fn new(server_url: &str, pin: Pin) -> Result<Self, ClientError> {
        Ok(Self { link: Link::new(server_url, pin)? })
    }

    /// The replica calls go to now.
    pub fn server(&self) -> &reqwest::Url {
        self.link.server()
    }

    pub fn signed_by(self, device_id: String, key: SigningIdentity) -> Self {
        Self { link: self.link.signed_by(device_id, key) }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        Ok(self.link.call(method, path_and_query, body).await?)
    }

    async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        Ok(self.link.send(method, path_and_query, body).await?)
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        self.link.unreachable(e).into()
    }

    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.call(reqwest::Method::POST, "/v1/enroll", Some(req)).await
    }

    pub async fn me(&self) -> Result<WhoAmI, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/me", None).await
    }

    pub async fn add_user(&self, req: &AddUserRequest) -> Result<AddUserResponse, ClientError> {
        self.call(reqwest::Method::POST, "/v1/users", Some(req)).await
    }

    pub async fn users(&self) -> Result<Vec<UserView>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/users", None).await
    }

    pub async fn set_roles(&self, user: &str, roles: &[Role]) -> Result<AccessChangeOutcome, ClientError> {
        portcullis_proto::check_name("user", user).map_err(ClientError::Input)?;
        let body = SetRolesRequest { roles: roles.to_vec() };
        self.call(reqwest::Method::PUT, &format!("/v1/users/{user}/roles"), Some(&body)).await
    }

    pub async fn set_groups(&self, user: &str, groups: &[String]) -> Result<UserView, ClientError> {
        portcullis_proto::check_name("user", user).map_err(ClientError::Input)?;
        let body = SetGroupsRequest { groups: groups.to_vec() };
        self.call(reqwest::Method::PUT, &format!("/v1/users/{user}/groups"), Some(&body)).await
    }

    pub async fn confirm_user(&self, user: &str) -> Result<portcullis_proto::ConfirmUserResponse, ClientError> {
        portcullis_proto::check_name("user", user).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/users/{user}/confirm"), Some(&serde_json::json!({}))).await
    }

    pub async fn disable_user(&self, user: &str) -> Result<AccessChangeOutcome, ClientError> {
        portcullis_proto::check_name("user", user).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/users/{user}/disable"), Some(&serde_json::json!({}))).await
    }

    pub async fn groups(&self) -> Result<Vec<GroupView>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/groups", None).await
    }

    pub async fn add_group(&self, name: &str) -> Result<GroupView, ClientError> {
        self.call(reqwest::Method::POST, "/v1/groups", Some(&AddGroupRequest { name: name.to_string() })).await
    }

    pub async fn devices(&self) -> Result<Vec<DeviceView>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/devices", None).await
    }

    pub async fn revoke_device(&self, id: &str) -> Result<AccessChangeOutcome, ClientError> {
        check_id(id, "device")?;
        self.call(reqwest::Method::POST, &format!("/v1/devices/{id}/revoke"), Some(&serde_json::json!({}))).await
    }

    pub async fn policy(&self) -> Result<PolicyView, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/policy", None).await
    }

    pub async fn set_policy(&self, text: &str) -> Result<PolicyView, ClientError> {
        self.call(reqwest::Method::PUT, "/v1/policy", Some(&PolicyText { text: text.to_string() })).await
    }

    pub async fn check_policy(&self, text: &str) -> Result<PolicyCheck, ClientError> {
        self.call(reqwest::Method::POST, "/v1/policy/check", Some(&PolicyText { text: text.to_string() })).await
    }

    pub async fn test_policy(&self, req: &PolicyTestRequest) -> Result<PolicyTestResult, ClientError> {
        self.call(reqwest::Method::POST, "/v1/policy/test", Some(req)).await
    }

    pub async fn revoke(&self, req: &RevokeRequest) -> Result<RevokeOutcome, ClientError> {
        check_id(&req.id, "request or grant")?;
        self.call(reqwest::Method::POST, "/v1/revoke", Some(req)).await
    }

    /// `step_up`: once the user has a key, an assertion from one of them (see
    /// [`crate::security_key::add_key`]).
    pub async fn start_key_registration(
        &self,
        name: &str,
        step_up: Option<portcullis_proto::StepUpAssertion>,
    ) -> Result<KeyChallenge, ClientError> {
        let req = KeyRegistrationStart { name: name.to_string(), step_up };
        self.call(reqwest::Method::POST, "/v1/keys/register", Some(&req)).await
    }

    /// A challenge to confirm a change to this user's keys with one of them.
    pub async fn start_key_change(&self) -> Result<KeyChallenge, ClientError> {
        self.call(reqwest::Method::POST, "/v1/keys/step-up", Some(&serde_json::json!({}))).await
    }

    pub async fn finish_key_registration(&self, req: &KeyRegistrationFinish) -> Result<SecurityKeyView, ClientError> {
        self.call(reqwest::Method::POST, "/v1/keys", Some(req)).await
    }

    pub async fn security_keys(&self) -> Result<Vec<SecurityKeyView>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/keys", None).await
    }

    /// Removes one of this user's keys, by id or name (`step_up`: see
    /// [`crate::security_key::remove_key`]).
    pub async fn remove_security_key(
        &self,
        key: &str,
        step_up: Option<portcullis_proto::StepUpAssertion>,
    ) -> Result<SecurityKeyView, ClientError> {
        portcullis_proto::check_name("security key", key)
            .or_else(|_| check_id(key, "security key"))
            .map_err(|_| ClientError::Input(format!("{key:?} is not a security key name or id")))?;
        let body = portcullis_proto::KeyRemoval { step_up };
        self.call(reqwest::Method::DELETE, &format!("/v1/keys/{key}"), Some(&body)).await
    }

    pub async fn start_step_up(&self, id: &str, decision: Decision) -> Result<KeyChallenge, ClientError> {
        check_id(id, "request")?;
        self.call(reqwest::Method::POST, &format!("/v1/requests/{id}/step-up"), Some(&StepUpStart { decision })).await
    }

    pub async fn request_detail(&self, id: &str) -> Result<RequestDetail, ClientError> {
        check_id(id, "request")?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/requests/{id}"), None).await
    }

    pub async fn add_target(&self, req: &AddTargetRequest) -> Result<TargetSummary, ClientError> {
        self.call(reqwest::Method::POST, "/v1/targets", Some(req)).await
    }

    pub async fn update_target(&self, name: &str, req: &UpdateTargetRequest) -> Result<TargetSummary, ClientError> {
        portcullis_proto::check_name("target", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::PUT, &format!("/v1/targets/{name}"), Some(req)).await
    }

    pub async fn add_secret(&self, req: &wire::AddSecretRequest) -> Result<wire::SecretView, ClientError> {
        self.call(reqwest::Method::POST, "/v1/secrets", Some(req)).await
    }

    pub async fn edit_secret(
        &self,
        name: &str,
        req: &wire::EditSecretRequest,
    ) -> Result<wire::SecretView, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::PUT, &format!("/v1/secrets/{name}"), Some(req)).await
    }

    /// One page of the secrets matching `query`.
    pub async fn secrets(&self, query: &wire::SecretQuery) -> Result<wire::SecretPage, ClientError> {
        let query = serde_urlencoded::to_string(query).map_err(|e| ClientError::Input(e.to_string()))?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/secrets?{query}"), None).await
    }

    pub async fn secret(&self, name: &str) -> Result<wire::SecretView, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/secrets/{name}"), None).await
    }

    pub async fn secret_history(&self, name: &str) -> Result<Vec<wire::SecretVersionView>, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/secrets/{name}/history"), None).await
    }

    pub async fn restore_secret(
        &self,
        name: &str,
        req: &wire::RestoreSecretRequest,
    ) -> Result<wire::SecretView, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/restore"), Some(req)).await
    }

    /// `remove` (soft) or `purge` (for good) a secret.
    pub async fn drop_secret(
        &self,
        name: &str,
        purge: bool,
        req: &wire::RemoveSecretRequest,
    ) -> Result<serde_json::Value, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        let action = if purge { "purge" } else { "remove" };
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/{action}"), Some(req)).await
    }

    pub async fn import_secrets(&self, req: &wire::ImportRequest) -> Result<wire::ImportOutcome, ClientError> {
        self.call(reqwest::Method::POST, "/v1/secret-imports", Some(req)).await
    }

    pub async fn checkout_secret(
        &self,
        name: &str,
        req: &wire::CheckoutRequest,
    ) -> Result<wire::Released, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/checkout"), Some(req)).await
    }

    pub async fn checkin_secret(&self, name: &str) -> Result<wire::CheckinOutcome, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/checkin"), Some(&())).await
    }

    pub async fn rotate_secret(&self, name: &str, reason: &str) -> Result<wire::RotationView, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        let req = wire::RemoveSecretRequest { reason: reason.to_string() };
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/rotate"), Some(&req)).await
    }

    pub async fn secret_rotations(&self, name: &str) -> Result<Vec<wire::RotationView>, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/secrets/{name}/rotations"), None).await
    }

    pub async fn use_secret(&self, name: &str, req: &wire::UseRequest) -> Result<wire::Released, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/use"), Some(req)).await
    }

    pub async fn secret_used(&self, name: &str, req: &wire::UseEnded) -> Result<serde_json::Value, ClientError> {
        portcullis_proto::check_name("secret", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/secrets/{name}/used"), Some(req)).await
    }

    pub async fn targets(&self) -> Result<Vec<TargetSummary>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/targets", None).await
    }

    pub async fn create_request(&self, req: &CreateAccessRequest) -> Result<AccessRequestView, ClientError> {
        self.call(reqwest::Method::POST, "/v1/requests", Some(req)).await
    }

    pub async fn requests(&self, pending_only: bool) -> Result<Vec<AccessRequestView>, ClientError> {
        let path = if pending_only { "/v1/requests?pending=true" } else { "/v1/requests" };
        self.call::<(), _>(reqwest::Method::GET, path, None).await
    }

    pub async fn review(&self, id: &str, req: &ReviewRequest) -> Result<AccessRequestView, ClientError> {
        check_id(id, "request")?;
        self.call(reqwest::Method::POST, &format!("/v1/requests/{id}/review"), Some(req)).await
    }

    /// A short-lived user certificate for `req.public_key` under this device's live grant.
    pub async fn certificate(&self, req: &CertificateRequest) -> Result<CertificateResponse, ClientError> {
        self.call(reqwest::Method::POST, "/v1/certificates", Some(req)).await
    }

    pub async fn add_gateway(&self, req: &AddGatewayRequest) -> Result<AddGatewayResponse, ClientError> {
        self.call(reqwest::Method::POST, "/v1/gateways", Some(req)).await
    }

    pub async fn confirm_gateway(&self, name: &str) -> Result<GatewaySummary, ClientError> {
        portcullis_proto::check_name("gateway", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/gateways/{name}/confirm"), Some(&serde_json::json!({}))).await
    }

    pub async fn revoke_gateway(&self, name: &str) -> Result<portcullis_proto::GatewayRevokeOutcome, ClientError> {
        portcullis_proto::check_name("gateway", name).map_err(ClientError::Input)?;
        self.call(reqwest::Method::POST, &format!("/v1/gateways/{name}/revoke"), Some(&serde_json::json!({}))).await
    }

    pub async fn gateways(&self) -> Result<Vec<GatewaySummary>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/gateways", None).await
    }

    pub async fn session_detail(&self, session_id: &str) -> Result<SessionDetail, ClientError> {
        check_id(session_id, "session")?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/audit/sessions/{session_id}"), None).await
    }

    /// Every recorded session (auditors).
    pub async fn sessions(&self) -> Result<Vec<SessionSummary>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/audit/sessions", None).await
    }

    /// This user's own recorded sessions.
    pub async fn my_sessions(&self) -> Result<Vec<SessionSummary>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/sessions", None).await
    }

    /// One live subscription; ends when the connection does. With `after` (the id of the last
    /// event seen, from any replica), the server first sends what came since. Yields each update
    /// with its event id. See [`ApiClient::watch`].
    pub async fn live(
        &self,
        after: Option<&str>,
    ) -> Result<impl futures_util::Stream<Item = Result<(Option<String>, LiveUpdate), ClientError>> + use<>, ClientError>
    {
        use eventsource_stream::Eventsource;
        use futures_util::StreamExt;
        let extra = after.map(|id| ("last-event-id", id));
        let response = self
            .link
            .send_with::<()>(reqwest::Method::GET, LIVE_PATH, None, extra, Some(portcullis_link::LONG_LIVED))
            .await?;
        Ok(response.bytes_stream().eventsource().filter_map(|item| {
            std::future::ready(match item {
                Ok(event) if event.event == "ready" => Some(Ok((None, LiveUpdate::Connected))),
                Ok(event) => {
                    let id = (!event.id.is_empty()).then(|| event.id.clone());
                    serde_json::from_str::<LiveEvent>(&event.data).ok().map(|e| Ok((id, LiveUpdate::Event(e))))
                }
                Err(e) => Some(Err(ClientError::Unreachable { url: String::new(), detail: e.to_string() })),
            })
        }))
    }

    /// Follows live events until the receiver is dropped, reconnecting with backoff (1 s to
    /// 30 s) — to the next replica when one is gone — with the last event id it saw, so what was
    /// published meanwhile arrives after `Connected` (which still lets callers reload).
    pub fn watch(&self) -> tokio::sync::mpsc::Receiver<LiveUpdate> {
        use futures_util::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let api = self.clone();
        tokio::spawn(async move {
            let mut backoff = std::time::Duration::from_secs(1);
            let mut last_seen: Option<String> = None;
            loop {
                let reason = match api.live(last_seen.as_deref()).await {
                    Ok(stream) => {
                        let mut stream = std::pin::pin!(stream);
                        loop {
                            match stream.next().await {
                                Some(Ok((id, update))) => {
                                    if id.is_some() {
                                        last_seen = id;
                                    }
                                    if matches!(update, LiveUpdate::Connected) {
                                        backoff = std::time::Duration::from_secs(1);
                                    }
                                    if tx.send(update).await.is_err() {
                                        return;
                                    }
                                }
                                Some(Err(e)) => break e.to_string(),
                                None => break "the server closed the live connection".to_string(),
                            }
                        }
                    }
                    Err(e) => e.to_string(),
                };
                if tx.send(LiveUpdate::Disconnected(reason)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        });
        rx
    }

    /// Security events matching `query`, newest first (the server filters and pages).
    pub async fn events(&self, query: &portcullis_proto::EventQuery) -> Result<Vec<ServerEvent>, ClientError> {
        let mut qs = url::form_urlencoded::Serializer::new(String::new());
        let mut pair = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                qs.append_pair(k, &v);
            }
        };
        pair("kind", query.kind.clone());
        pair("actor", query.actor.clone());
        pair("gateway", query.gateway.clone());
        pair("since", query.since.map(|x| x.to_string()));
        pair("until", query.until.map(|x| x.to_string()));
        pair("before", query.before.map(|x| x.to_string()));
        pair("limit", query.limit.map(|x| x.to_string()));
        let qs = qs.finish();
        let path = if qs.is_empty() { "/v1/audit/events".to_string() } else { format!("/v1/audit/events?{qs}") };
        self.call::<(), _>(reqwest::Method::GET, &path, None).await
    }

    /// Every audit log checked end to end by the server.
    pub async fn verify_audit(&self) -> Result<portcullis_proto::AuditVerifyReport, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/audit/verify", None).await
    }

    pub async fn alarms(&self) -> Result<Vec<ServerEvent>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/v1/audit/alarms", None).await
    }

    /// A session's offline-verifiable bundle.
    pub async fn session_bundle(&self, session_id: &str) -> Result<portcullis_tlog::bundle::Bundle, ClientError> {
        check_id(session_id, "session")?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/audit/sessions/{session_id}/bundle"), None).await
    }

    /// The session as asciicast v2 text.
    pub async fn export_cast(&self, session_id: &str) -> Result<String, ClientError> {
        check_id(session_id, "session")?;
        let response =
            self.send::<()>(reqwest::Method::GET, &format!("/v1/audit/sessions/{session_id}/cast"), None).await?;
        response.text().await.map_err(|e| self.unreachable(e))
    }
}

/// Ids are UUIDs: anything else is refused before it becomes part of a path.
fn check_id(id: &str, what: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ClientError::Input(format!("{id:?} is not a {what} id")));
    }
    Ok(())
}
