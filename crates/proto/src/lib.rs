//! Wire types shared by the Portcullis server and client (API version 1).
//!
//! Contract: plain data and pure functions — no IO, no clock, no database. Times are Unix
//! seconds (UTC). Every public key and ciphertext travels as base64. No type here carries a
//! plaintext credential: credentials travel only as [`Sealed`] values.
//!
//! **Architecture Invariant:** a change to a type here is a change to the protocol; add fields
//! as `Option`/`#[serde(default)]` or bump [`API_VERSION`].

mod admin;
mod audit;
mod auth;
mod grant;

pub use admin::*;
pub use audit::*;
pub use auth::*;
pub use grant::*;
pub use portcullis_crypto::identity::Sealed;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "v1";

/// Longest access any request may ask for, whatever the policies say (they set the real limit:
/// 8 hours in the default set).
pub const MAX_REQUEST_SECS: u64 = 7 * 24 * 3600;
/// How long a pending request waits for a decision before it expires.
pub const PENDING_REQUEST_TTL_SECS: i64 = 3600;
/// How long an enrolment code stays valid.
pub const ENROLMENT_CODE_TTL_SECS: i64 = 24 * 3600;

/// HPKE `info` for a credential an admin seals to the server when adding a target.
pub const INFO_TARGET_CREDENTIAL: &[u8] = b"portcullis/v1/target-credential";
/// HPKE `info` for a credential the server hands to a gateway for one brokered session (never
/// to a user's device).
pub const INFO_GATEWAY_CREDENTIAL: &[u8] = b"portcullis/v1/gateway-credential";
/// HPKE info for a rotation's passwords sealed to a gateway.
pub const INFO_GATEWAY_ROTATION: &[u8] = b"portcullis/v1/gateway-rotation";
/// The name of the gateway that runs inside the server process (and the desktop app).
pub const EMBEDDED_GATEWAY: &str = "embedded";
/// How much of an exec session's stdin the gateway records in full — and lets through: a
/// session that sends more is ended (recorded as `input_cap`), never switched to counting —
/// and how much of its stdout and stderr it keeps (beyond it those are counted and hashed).
/// File-transfer protocols the gateway parses (exact `scp -t`/`-f`, `rsync --server`, sftp) are
/// exempt from the input cap; their files are recorded as transfers.
pub const DEFAULT_EXEC_RECORD_LIMIT: u64 = 64 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Requester,
    Approver,
    Auditor,
    /// A pipeline (a CI runner): asks for secrets to use in processes, and a policy may grant
    /// that without a human approval (`@approvals("0")`). Never a person: it holds no other role,
    /// is made as such, and its enrolment code goes to a second admin.
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Requester, Role::Approver, Role::Auditor, Role::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Service => "service",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; expected one of admin, requester, approver, auditor, service"))
    }
}

/// Roles stored as a comma-separated list.
pub fn roles_to_string(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

pub fn roles_from_string(s: &str) -> Result<Vec<Role>, String> {
    s.split(',').filter(|p| !p.is_empty()).map(str::parse).collect()
}

/// Every API error has this body. Clients branch on `code`; `message` is for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// What a client pins about its server at enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerIdentity {
    /// Ed25519, base64: verifies grants.
    pub sign_public_key: String,
    /// X25519, base64: admins seal credentials to it.
    pub seal_public_key: String,
    /// SHA-256 of the TLS certificate (DER), lowercase hex.
    pub tls_fingerprint: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub code: String,
    pub device_name: String,
    pub sign_public_key: String,
    pub seal_public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub user_id: String,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub device_id: String,
    pub server: ServerIdentity,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WhoAmI {
    pub user_id: String,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub device_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddUserRequest {
    pub name: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddUserResponse {
    pub user_id: String,
    pub name: String,
    pub roles: Vec<Role>,
    /// Withheld (`None`) when the account could approve and its creator could request: a
    /// second admin confirms the account and receives its code (`confirmation` says how).
    pub enrolment_code: Option<String>,
    pub code_expires_at: i64,
    #[serde(default)]
    pub confirmation: Option<String>,
}

/// `POST /v1/users/{name}/confirm`: a second admin vouches for an account and receives its
/// enrolment code (earlier codes are void).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfirmUserResponse {
    pub name: String,
    pub enrolment_code: String,
    pub code_expires_at: i64,
    /// `second_admin`, or `delay` (a one-admin installation, after 24 hours, with an alarm).
    pub via: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Password,
    PrivateKey,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Password => "password",
            CredentialKind::PrivateKey => "private_key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(Self::Password),
            "private_key" => Some(Self::PrivateKey),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddTargetRequest {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    /// OpenSSH public key line of the target host, e.g. `ssh-ed25519 AAAA...`.
    pub host_key: String,
    pub credential_kind: CredentialKind,
    /// e.g. `prod`, `staging`; empty for none.
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// The gateway that reaches this target; `None` for the embedded one.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Sealed to the server's X25519 key with [`INFO_TARGET_CREDENTIAL`] and the target name as
    /// associated data, so the plaintext never crosses the wire.
    pub credential: Sealed,
}

/// `PUT /v1/targets/{name}`: a target's new metadata (the name stays). With `credential`, the
/// credential is rotated too; without it, the stored one is kept (and its kind must not change).
/// Changing host, port, login or host key needs the credential in the same call and voids the
/// target's live grants.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateTargetRequest {
    pub host: String,
    pub port: u16,
    pub login: String,
    pub host_key: String,
    pub credential_kind: CredentialKind,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// `None` keeps the current gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Sealed like [`AddTargetRequest::credential`], to the target's (unchanged) name.
    pub credential: Option<Sealed>,
}

/// A target as anyone may see it: never the credential.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetSummary {
    pub id: String,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub credential_kind: CredentialKind,
    pub host_key: String,
    pub host_key_fingerprint: String,
    pub created_at: i64,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// When a credential for it was last released, and to whom.
    #[serde(default)]
    pub last_used_at: Option<i64>,
    #[serde(default)]
    pub last_used_by: Option<String>,
    /// Who holds a live grant right now.
    #[serde(default)]
    pub active_grants: Vec<GrantHolder>,
    /// The gateway that reaches it (brokers every session on it).
    #[serde(default)]
    pub gateway: String,
    /// Goes up with every credential rotation; a grant names the version it was approved for.
    #[serde(default)]
    pub credential_version: i64,
    /// What someone who is only a requester sees: name, environment, tags, description and
    /// their own live grant; the other fields are empty.
    #[serde(default)]
    pub requester_view: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantHolder {
    pub user: String,
    pub not_after: i64,
}

/// Browsing filter over targets: every given criterion must hold. `text` matches name, host,
/// login, environment, tags and description, case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFilter {
    pub text: Option<String>,
    pub environment: Option<String>,
    pub tag: Option<String>,
}

impl TargetFilter {
    pub fn matches(&self, t: &TargetSummary) -> bool {
        let env_ok = self.environment.as_ref().is_none_or(|e| t.environment.eq_ignore_ascii_case(e));
        let tag_ok = self.tag.as_ref().is_none_or(|tag| t.tags.iter().any(|x| x.eq_ignore_ascii_case(tag)));
        let text_ok = self.text.as_ref().map(|q| q.trim().to_lowercase()).is_none_or(|q| {
            q.is_empty()
                || [&t.name, &t.host, &t.login, &t.environment, &t.description]
                    .iter()
                    .any(|field| field.to_lowercase().contains(&q))
                || t.tags.iter().any(|tag| tag.to_lowercase().contains(&q))
        });
        env_ok && tag_ok && text_ok
    }
}

/// Tags and environments: short labels (1-32 of letters, digits, `.`, `_`, `-`).
pub fn check_label(kind: &str, label: &str) -> Result<(), String> {
    let ok = !label.is_empty()
        && label.len() <= 32
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(format!("invalid {kind} {label:?}: use 1-32 letters, digits, '.', '_' or '-'")) }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateAccessRequest {
    /// A target's name, or a secret's.
    pub target: String,
    pub duration_secs: u64,
    pub reason: String,
    /// What is asked for; a secret's default is `checkout` when it may be revealed, else `use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// What a request asks for and its grant allows: an SSH session on a target, or a secret
/// checked out (shown to its requester) or used (injected into a process by `portcullis run`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Ssh,
    Checkout,
    Use,
}

impl Access {
    pub const ALL: [Access; 3] = [Access::Ssh, Access::Checkout, Access::Use];

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Ssh => "ssh",
            Access::Checkout => "checkout",
            Access::Use => "use",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        Access::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether it is to a secret (check-out or use) rather than a target.
    pub fn is_secret(self) -> bool {
        self != Access::Ssh
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Withdrawn while pending, or its grant ended early.
    Revoked,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Expired => "expired",
            RequestStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Expired, Self::Revoked]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessRequestView {
    pub id: String,
    pub requester: String,
    /// The target's or the secret's name.
    pub target: String,
    #[serde(default)]
    pub access: Access,
    pub duration_secs: u64,
    pub reason: String,
    pub status: RequestStatus,
    pub created_at: i64,
    /// While pending: when the request lapses undecided.
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
    pub grant_not_after: Option<i64>,
    /// Approvals so far and needed (`k of N`).
    #[serde(default)]
    pub approvals: u32,
    #[serde(default = "one")]
    pub approvals_needed: u32,
    /// Only members of these groups count as approvers (all of them, when several).
    #[serde(default)]
    pub approver_groups: Vec<String>,
    /// The policies (`@id`) that permitted the request.
    #[serde(default)]
    pub permitted_by: Vec<String>,
    #[serde(default)]
    pub grant_id: Option<String>,
    #[serde(default)]
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub revoked_by: Option<String>,
    #[serde(default)]
    pub revoke_reason: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewRequest {
    pub decision: Decision,
    pub reason: Option<String>,
    /// When the approve policy asks for a security key: its assertion for the challenge from
    /// `POST /v1/requests/{id}/step-up`.
    #[serde(default)]
    pub step_up: Option<StepUpAssertion>,
}

/// `POST /v1/revoke`: end a grant or withdraw a request (by the request's or the grant's id).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a revocation ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeOutcome {
    pub request: AccessRequestView,
    /// Running sessions the gateways were told to end.
    pub sessions_ended: u32,
}

/// Pushed to connected devices over `GET /v1/live` (server-sent events), so approval inboxes
/// and request lists update without polling.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A new request: sent to approvers (except the requester) and to the requester's devices.
    RequestCreated { request: AccessRequestView },
    /// A request was approved or denied: sent to the requester's devices and to approvers.
    RequestDecided { request: AccessRequestView },
    /// An approval that did not reach the threshold yet (`k of N`), or a revocation.
    RequestUpdated { request: AccessRequestView },
    /// Events were missed (a slow reader); reload lists.
    Resync,
    /// One of the user's security keys was added or removed (sent to that user's devices only,
    /// so a key registered by someone holding one device is seen on the others).
    SecurityKeysChanged { change: String, key: String, by: String },
}

/// `POST /v1/certificates`: a user's device asks for a short-lived OpenSSH user certificate for
/// an ephemeral key it just made, under its live grant for `target`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertificateRequest {
    pub target: String,
    /// OpenSSH public key line (Ed25519).
    pub public_key: String,
}

/// The certificate (principal = the user, key id = the grant, valid until the grant ends) and
/// where to use it. No credential: the gateway holds that.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com ...`).
    pub certificate: String,
    pub grant_id: String,
    pub target: String,
    /// The account on the target the gateway logs in as.
    pub login: String,
    pub not_after: i64,
    pub gateway: GatewayEndpoint,
}

/// How a user reaches a gateway: the SSH user name is the target's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEndpoint {
    pub name: String,
    /// Host to connect to; empty means "the control server's host".
    pub host: String,
    pub port: u16,
    /// The gateway's SSH host key (OpenSSH public key line), pinned by clients.
    pub host_key: String,
}

/// `POST /v1/gateways` (admin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddGatewayRequest {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddGatewayResponse {
    pub gateway_id: String,
    pub name: String,
    pub enrolment_code: String,
    pub code_expires_at: i64,
}

/// Words in the answer a revoked gateway gets (after its signature verified): on hearing them it
/// ends every session it brokers.
pub const GATEWAY_REVOKED: &str = "was revoked by an admin";

/// A gateway as admins see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewaySummary {
    pub id: String,
    pub name: String,
    pub embedded: bool,
    /// `host:port` users connect to, once the gateway has reported it.
    pub address: Option<String>,
    pub host_key_fingerprint: Option<String>,
    pub enrolled_at: Option<i64>,
    pub last_contact_at: Option<i64>,
    /// Records written at the gateway and not yet acknowledged by the server, as it last reported.
    pub backlog: u64,
    pub targets: u64,
    /// A second admin confirmed it (the embedded gateway always is); until then it serves no target.
    #[serde(default)]
    pub confirmed: bool,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// `POST /v1/gateways/{name}/revoke`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayRevokeOutcome {
    pub grants_voided: u32,
    pub targets: u32,
}

/// `POST /v1/gateway/enroll`: a gateway process enrols with a one-time code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayEnrollRequest {
    pub code: String,
    pub sign_public_key: String,
    pub seal_public_key: String,
    /// The gateway's SSH host key (OpenSSH public key line).
    pub host_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayEnrollResponse {
    pub gateway_id: String,
    pub name: String,
    pub server: ServerIdentity,
    /// The user CA's public key (OpenSSH line): the gateway checks user certificates against it.
    pub user_ca: String,
}

/// `POST /v1/gateway/sessions`: a gateway asks whether a connection may open a session, and for
/// what it needs to broker it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionAuthorizationRequest {
    /// The user's certificate (OpenSSH line), as presented and verified by the gateway.
    pub certificate: String,
    /// The SSH user name the client asked for: the target's name.
    pub ssh_user: String,
    /// The client's address as the gateway sees it.
    pub client_addr: String,
}

/// What a gateway learns about a connection the control server authorised, besides the
/// credential: whose, which grant, where to connect, until when, how much to record in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedSession {
    pub ticket_id: String,
    pub grant_id: String,
    pub user: String,
    pub user_id: String,
    pub device_id: String,
    pub target: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub host_key: String,
    pub not_after: i64,
    pub credential_kind: CredentialKind,
    /// Exec sessions: stdin and stdout are recorded in full up to this many bytes each.
    pub exec_record_limit: u64,
}

/// The answer to `POST /v1/gateway/sessions`. The credential is sealed to the gateway's
/// X25519 key with [`INFO_GATEWAY_CREDENTIAL`] and the ticket id as associated data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionTicket {
    #[serde(flatten)]
    pub session: AuthorizedSession,
    pub credential: Sealed,
}

/// A bound password secret the gateway is to rotate on its target: where the target is, which
/// login, the host key to expect. The current and the new password travel beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationOrder {
    pub id: String,
    pub secret: String,
    pub target: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub host_key: String,
}

/// One order in the answer to `POST /v1/gateway/rotations`: both passwords sealed to the
/// gateway's X25519 key with [`INFO_GATEWAY_ROTATION`] and `current/ID` or `candidate/ID`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RotationTicket {
    #[serde(flatten)]
    pub order: RotationOrder,
    pub current: Sealed,
    pub candidate: Sealed,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RotationTickets {
    pub rotations: Vec<RotationTicket>,
}

/// Where a rotation failed on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStage {
    /// The gateway could not log in with the current password (unreachable, host key, refused):
    /// nothing was changed.
    Login,
    /// The target refused the change (`passwd` failed): it keeps the current password.
    Change,
    /// The change seemed to pass but the new password does not log in: the target's state is
    /// unknown, so the candidate is kept for an admin.
    Verify,
}

impl RotationStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStage::Login => "login",
            RotationStage::Change => "change",
            RotationStage::Verify => "verify",
        }
    }
}

/// `POST /v1/gateway/rotations/{id}`: how a rotation ended on the target. `failed: None` means
/// the new password is set and a fresh login with it succeeded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RotationReport {
    #[serde(default)]
    pub failed: Option<RotationStage>,
    /// What the target said (never a password: the change runs with echo off).
    #[serde(default)]
    pub detail: String,
}

/// `POST /v1/gateway/heartbeat`: where the gateway listens and how far behind its sync is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayHeartbeat {
    /// `host:port` for users; an empty host means "the control server's host".
    pub address: String,
    pub host_key: String,
    pub backlog: u64,
}

/// `POST /v1/gateway/standing`: do the grants behind the gateway's running sessions still
/// hold? Asked every second or two while sessions run, so a revocation ends them within seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GrantStandingRequest {
    pub grants: Vec<String>,
}

/// The grants whose sessions must end now, and why (expiry is the gateway's own business).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GrantStandingResponse {
    pub ended: Vec<EndedGrant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedGrant {
    pub grant_id: String,
    /// For the user: "revoked by bob: incident over", "user disabled", ...
    pub reason: String,
}

/// Most grants one standing question may name.
pub const MAX_STANDING_GRANTS: usize = 10_000;

/// An enrolment code: `pc1-<secret>-<pin>`. The secret (128 bits, hex) proves the right to
/// enrol as one user, once; the pin is the first 128 bits of the server's TLS certificate
/// fingerprint, so the client can pin the server it talks to from the code alone.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    pub secret: String,
    pub pin: String,
}

impl std::fmt::Debug for EnrolmentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnrolmentCode(<secret>, pin={})", self.pin)
    }
}

impl EnrolmentCode {
    pub fn new(secret: [u8; 16], tls_fingerprint_hex: &str) -> Self {
        Self { secret: hex::encode(secret), pin: tls_fingerprint_hex.chars().take(32).collect() }
    }

    pub fn render(&self) -> String {
        format!("pc1-{}-{}", self.secret, self.pin)
    }

    pub fn parse(code: &str) -> Result<Self, String> {
        let bad = || "malformed enrolment code: expected pc1-<32 hex digits>-<32 hex digits>".to_string();
        let rest = code.trim().strip_prefix("pc1-").ok_or_else(bad)?;
        let (secret, pin) = rest.split_once('-').ok_or_else(bad)?;
        let is_hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex32(secret) || !is_hex32(pin) {
            return Err(bad());
        }
        Ok(Self { secret: secret.to_ascii_lowercase(), pin: pin.to_ascii_lowercase() })
    }

    /// What the server stores: a hash, never the code.
    pub fn secret_hash(&self) -> String {
        portcullis_crypto::sha256_hex(self.secret.as_bytes())
    }

    pub fn pins(&self, tls_fingerprint_hex: &str) -> bool {
        tls_fingerprint_hex.to_ascii_lowercase().starts_with(&self.pin)
    }
}

/// Names of users and targets: 1–64 characters of letters, digits, `.`, `_`, `-`, starting
/// with a letter or digit.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// Text from elsewhere made safe to print on a terminal: control characters (escape sequences
/// that could rewrite what the reader sees) are shown escaped.
pub fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// Free text people type (request and review reasons, descriptions): 1..=`max` bytes after
/// trimming, and no control characters — they would rewrite what an approver's terminal shows.
pub fn check_free_text(kind: &str, text: &str, max: usize) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.len() > max {
        return Err(format!("a {kind} (1-{max} characters) is required"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("the {kind} contains a control character ({:?}); use plain text on one line", c));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_code_roundtrip_and_rejects_garbage() {
        let fp = "ab".repeat(32);
        let code = EnrolmentCode::new([7u8; 16], &fp);
        let parsed = EnrolmentCode::parse(&code.render()).unwrap();
        assert_eq!(parsed, code);
        assert!(parsed.pins(&fp));
        assert!(!parsed.pins(&"cd".repeat(32)));
        assert!(!format!("{code:?}").contains(&code.secret));
        for bad in ["", "pc1-", "pc2-00-00", "pc1-zz-00", &format!("pc1-{}", "a".repeat(65))] {
            assert!(EnrolmentCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_filter() {
        let t = TargetSummary {
            id: "1".into(),
            name: "web-01".into(),
            host: "10.0.0.5".into(),
            port: 22,
            login: "deploy".into(),
            credential_kind: CredentialKind::Password,
            host_key: String::new(),
            host_key_fingerprint: String::new(),
            created_at: 0,
            environment: "prod".into(),
            tags: vec!["eu".into(), "nginx".into()],
            description: "Front web server".into(),
            last_used_at: None,
            last_used_by: None,
            active_grants: vec![],
            gateway: "embedded".into(),
            credential_version: 1,
            requester_view: false,
        };
        let f = |text: Option<&str>, env: Option<&str>, tag: Option<&str>| TargetFilter {
            text: text.map(Into::into),
            environment: env.map(Into::into),
            tag: tag.map(Into::into),
        };
        assert!(f(None, None, None).matches(&t));
        assert!(f(Some("FRONT"), None, None).matches(&t));
        assert!(f(Some("ngin"), Some("PROD"), Some("eu")).matches(&t));
        assert!(!f(Some("db"), None, None).matches(&t));
        assert!(!f(None, Some("staging"), None).matches(&t));
        assert!(!f(None, None, Some("us")).matches(&t));
    }

    #[test]
    fn names() {
        assert!(check_name("user", "alice.b-1").is_ok());
        for bad in ["", "-x", "a b", "x;rm", &"a".repeat(65)] {
            assert!(check_name("user", bad).is_err());
        }
    }
}
