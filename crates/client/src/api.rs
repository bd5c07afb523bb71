//! The API client: device-signed requests over HTTP (loopback only) or TLS with a pinned
//! certificate fingerprint.

use std::sync::Arc;

use base64::Engine;
use portcullis_crypto::identity::SigningIdentity;
use portcullis_proto::{
    AccessChangeOutcome, AddGroupRequest, Decision, DeviceView, GroupView, KeyChallenge, KeyRegistrationFinish,
    KeyRegistrationStart, PolicyCheck, PolicyTestRequest, PolicyTestResult, PolicyText, PolicyView, RequestDetail,
    RevokeOutcome, RevokeRequest, Role, SecurityKeyView, SetGroupsRequest, SetRolesRequest, StepUpStart, UserView,
};
use portcullis_proto::{
    AccessRequestView, AddGatewayRequest, AddGatewayResponse, AddTargetRequest, AddUserRequest, AddUserResponse,
    ApiError, CertificateRequest, CertificateResponse, CreateAccessRequest, EnrollRequest, EnrollResponse,
    GatewayEnrollRequest, GatewayEnrollResponse, GatewaySummary, HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIME, LiveEvent, ReviewRequest, ServerEvent, SessionDetail, SessionSummary, TargetSummary,
    UpdateTargetRequest, WhoAmI, request_signing_input,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// What the client trusts as the server's TLS certificate.
#[derive(Clone, Debug)]
pub enum Pin {
    /// The full SHA-256 fingerprint (hex), pinned at enrolment.
    Full(String),
    /// The prefix carried by an enrolment code.
    Prefix(String),
}

/// Cheap to clone: clones share the HTTP connection pool, the device key and which of the
/// server's replicas answers now.
///
/// A server URL may be a comma-separated list of one server's replicas (they share one TLS
/// certificate, so one pin holds for all). A call goes to the replica that answered last; when
/// it cannot be reached the next is tried — for any call when the connection could not be made
/// (nothing reached the server), for reads also when it timed out. A write whose answer was lost
/// is not sent again: it may have happened, and the caller is told.
#[derive(Clone)]
pub struct ApiClient {
    bases: Arc<[reqwest::Url]>,
    current: Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::Client,
    signer: Option<Arc<(String, SigningIdentity)>>,
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

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl ApiClient {
    pub fn new(server_url: &str, pin: Pin) -> Result<Self, ClientError> {
        let mut bases = Vec::new();
        for url in server_urls(server_url) {
            let base =
                reqwest::Url::parse(url).map_err(|e| ClientError::Input(format!("invalid server URL {url:?}: {e}")))?;
            match base.scheme() {
                "https" => {}
                "http" if is_loopback_host(&base) => {}
                "http" => {
                    return Err(ClientError::Input(format!(
                        "refusing plain http to {url}: only loopback servers may use http; use https"
                    )));
                }
                other => return Err(ClientError::Input(format!("unsupported URL scheme {other:?}"))),
            }
            bases.push(base);
        }
        if bases.is_empty() {
            return Err(ClientError::Input("no server URL given".into()));
        }
        // reqwest builds a TLS stack even for http URLs; give it ring (already in the tree)
        // as the process default. Failing means another provider is installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(120))
            .no_proxy()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        let builder = if bases.iter().any(|b| b.scheme() == "https") {
            builder.use_preconfigured_tls(pinned_tls_config(pin)?)
        } else {
            builder
        };
        let http = builder.build().map_err(|e| ClientError::Local(format!("HTTP client: {e}")))?;
        Ok(Self { bases: bases.into(), current: Arc::default(), http, signer: None })
    }

    /// The replica calls go to now.
    pub fn server(&self) -> &reqwest::Url {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    pub fn signed_by(mut self, device_id: String, key: SigningIdentity) -> Self {
        self.signer = Some(Arc::new((device_id, key)));
        self
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path_and_query, body).await?.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Local(format!("unexpected server response: {e}")))
    }

    async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_with(method, path_and_query, body, None).await
    }

    /// [`ApiClient::send`] with one more header (not signed: only `Last-Event-ID` uses it).
    async fn send_with<B: Serialize>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
        extra: Option<(&'static str, &str)>,
    ) -> Result<reqwest::Response, ClientError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Local(e.to_string()))?,
            None => Vec::new(),
        };
        // Signed once: the signature covers the path, not the host, so every replica checks it
        // (and its nonce is spent once, whichever replica first receives it).
        let first = self.bases[0]
            .join(path_and_query)
            .map_err(|e| ClientError::Input(format!("bad path {path_and_query}: {e}")))?;
        let signed = self.signer.as_ref().map(|signer| {
            let (device_id, key) = signer.as_ref();
            let time = crate::now_secs();
            let nonce = hex::encode(portcullis_crypto::random_bytes::<16>(&mut portcullis_crypto::OsRng));
            let signed_path = match first.query() {
                Some(q) => format!("{}?{}", first.path(), q),
                None => first.path().to_string(),
            };
            let input = request_signing_input(method.as_str(), &signed_path, time, &nonce, &body);
            let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&input));
            (device_id.clone(), time, nonce, signature)
        });
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.bases.len() {
            let at = (start + step) % self.bases.len();
            let url = self.bases[at]
                .join(path_and_query)
                .map_err(|e| ClientError::Input(format!("bad path {path_and_query}: {e}")))?;
            let mut request = self.http.request(method.clone(), url);
            if !body.is_empty() {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            if let Some((name, value)) = extra {
                request = request.header(name, value);
            }
            if let Some((device_id, time, nonce, signature)) = &signed {
                request = request
                    .header(HEADER_DEVICE, device_id)
                    .header(HEADER_TIME, time.to_string())
                    .header(HEADER_NONCE, nonce)
                    .header(HEADER_SIGNATURE, signature);
            }
            // Live subscriptions stay open; everything else has the client's 120 s limit.
            if path_and_query == LIVE_PATH {
                request = request.timeout(std::time::Duration::from_secs(7 * 24 * 3600));
            }
            match request.body(body.clone()).send().await {
                Ok(response) => {
                    self.current.store(at, std::sync::atomic::Ordering::Relaxed);
                    return self.answer(response).await;
                }
                // Nothing reached this replica, or a read that may be asked again: the next one.
                Err(e) if e.is_connect() || (method == reqwest::Method::GET && e.is_timeout()) => {
                    tracing::debug!(replica = %self.bases[at], error = %e, "server replica unreachable; trying the next");
                    last_error = Some(self.unreachable_at(at, e));
                }
                Err(e) => return Err(self.unreachable_at(at, e)),
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Input("no server URL given".into())))
    }

    async fn answer(&self, response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => ClientError::Api { status: status.as_u16(), code: e.code, message: e.message },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!("server answered {status}"),
            },
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        self.unreachable_at(self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len(), e)
    }

    fn unreachable_at(&self, at: usize, e: reqwest::Error) -> ClientError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        ClientError::Unreachable { url: self.bases[at].to_string(), detail }
    }

    /// A signed POST to `path` (the gateway's calls use it too).
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
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

    pub async fn gateway_enroll(&self, req: &GatewayEnrollRequest) -> Result<GatewayEnrollResponse, ClientError> {
        self.call(reqwest::Method::POST, "/v1/gateway/enroll", Some(req)).await
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
        check_session_id(session_id)?;
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
        let response = self.send_with::<()>(reqwest::Method::GET, LIVE_PATH, None, extra).await?;
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
        check_session_id(session_id)?;
        self.call::<(), _>(reqwest::Method::GET, &format!("/v1/audit/sessions/{session_id}/bundle"), None).await
    }

    /// The session as asciicast v2 text.
    pub async fn export_cast(&self, session_id: &str) -> Result<String, ClientError> {
        check_session_id(session_id)?;
        let response =
            self.send::<()>(reqwest::Method::GET, &format!("/v1/audit/sessions/{session_id}/cast"), None).await?;
        response.text().await.map_err(|e| self.unreachable(e))
    }
}

fn check_session_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ClientError::Input(format!("{id:?} is not a session id")));
    }
    Ok(())
}

/// rustls configuration that trusts exactly the pinned certificate.
/// The URLs of a server value: one URL, or a comma-separated list of its replicas.
pub fn server_urls(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|u| u.trim().trim_end_matches('/')).filter(|u| !u.is_empty())
}

fn pinned_tls_config(pin: Pin) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertVerifier { pin, provider: provider.clone() });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Local(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct PinnedCertVerifier {
    pin: Pin,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fingerprint = portcullis_crypto::sha256_hex(end_entity.as_ref());
        let ok = match &self.pin {
            Pin::Full(expected) => portcullis_crypto::constant_time_eq(fingerprint.as_bytes(), expected.as_bytes()),
            Pin::Prefix(prefix) => fingerprint.starts_with(prefix.as_str()),
        };
        if ok {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate {fingerprint} does not match the pinned fingerprint"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Ids are UUIDs: anything else is refused before it becomes part of a path.
fn check_id(id: &str, what: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ClientError::Input(format!("{id:?} is not a {what} id")));
    }
    Ok(())
}
