//! Users, groups, devices, policies and the story of a request: the admin and approver API.

use serde::{Deserialize, Serialize};

use crate::{AccessRequestView, Decision, Role, SessionSummary};

/// A user as admins see them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub groups: Vec<String>,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub disabled_at: Option<i64>,
    /// Who confirmed the account independently of its creator (see `portcullis user confirm`).
    #[serde(default)]
    pub confirmed_by: Option<String>,
}

/// `PUT /v1/users/{name}/roles`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetRolesRequest {
    pub roles: Vec<Role>,
}

/// `PUT /v1/users/{name}/groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetGroupsRequest {
    pub groups: Vec<String>,
}

/// `POST /v1/groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddGroupRequest {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub members: Vec<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a user, device or role change ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessChangeOutcome {
    /// Grants that stopped counting.
    pub grants_revoked: u32,
    /// Pending requests withdrawn.
    pub requests_withdrawn: u32,
}

/// The policy set in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyView {
    pub version: i64,
    pub text: String,
    pub created_at: i64,
    /// `None`: the built-in default.
    pub created_by: Option<String>,
    pub policies: u32,
}

/// `PUT /v1/policy` and `POST /v1/policy/check`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyText {
    pub text: String,
}

/// One reason a policy text was refused (1-based line and column where Cedar gave a place).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProblem {
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// `POST /v1/policy/check`: would this text be accepted?
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyCheck {
    pub valid: bool,
    pub problems: Vec<PolicyProblem>,
    pub policies: u32,
}

/// `POST /v1/policy/test`: what would the policies decide (what-if)?
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyTestRequest {
    pub user: String,
    pub target: String,
    pub duration_secs: u64,
    /// RFC 3339; now when absent.
    #[serde(default)]
    pub at: Option<String>,
    /// The address the request would come from; the caller's own when absent.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// A draft policy text to test instead of the one in force.
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyTestResult {
    pub allowed: bool,
    /// `@id`s of the determining policies.
    pub policies: Vec<String>,
    pub approvals: u32,
    pub approver_groups: Vec<String>,
    pub why: Option<String>,
    /// One line beginning with `allow` or `deny`.
    pub summary: String,
    /// The facts the decision used.
    pub at: String,
    pub source_ip: String,
    pub time_zone: String,
}

/// One approver's review, with the step-up evidence when the policy asked for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewView {
    pub approver: String,
    pub decision: Decision,
    pub reason: Option<String>,
    pub at: i64,
    pub source_ip: Option<String>,
    /// Approve policies that permitted this approver.
    pub policies: Vec<String>,
    pub step_up: Option<StepUpEvidence>,
}

/// What the server verified of a WebAuthn assertion.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepUpEvidence {
    pub method: String,
    /// The security key's name as its owner registered it.
    pub key_name: String,
    pub credential_id: String,
    pub user_verified: bool,
    pub counter: u32,
}

/// One step in the story of a request, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: f64,
    /// requested | permitted | approved | denied | granted | certificate | session_started |
    /// session_ended | revoked | expired | withdrawn
    pub kind: String,
    pub actor: Option<String>,
    pub text: String,
    /// For session entries: the session to replay.
    pub session_id: Option<String>,
}

/// `GET /v1/requests/{id}`: the whole story from request to session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestDetail {
    pub request: AccessRequestView,
    pub source_ip: Option<String>,
    pub policy_version: Option<i64>,
    pub reviews: Vec<ReviewView>,
    pub sessions: Vec<SessionSummary>,
    pub timeline: Vec<TimelineEntry>,
}

/// `POST /v1/keys/register`: start registering a security key under a name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRegistrationStart {
    pub name: String,
    /// Once the user has a key: an assertion from one of them for a `POST /v1/keys/step-up`
    /// challenge (a stolen device alone cannot add the thief's key).
    #[serde(default)]
    pub step_up: Option<StepUpAssertion>,
}

/// `DELETE /v1/keys/{key}`: removing one's own key, confirmed with one of one's keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyRemoval {
    #[serde(default)]
    pub step_up: Option<StepUpAssertion>,
}

/// A WebAuthn ceremony to run on the user's authenticator. `options` is the WebAuthn
/// `CreationChallengeResponse` or `RequestChallengeResponse` (JSON), kept opaque here.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyChallenge {
    pub challenge_id: String,
    /// The relying-party id fixed at `server init`, and the origin clients assert for it.
    pub rp_id: String,
    pub origin: String,
    pub options: serde_json::Value,
    pub expires_at: i64,
}

/// `POST /v1/keys`: the authenticator's answer to a registration challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRegistrationFinish {
    pub challenge_id: String,
    pub credential: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecurityKeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// `POST /v1/requests/{id}/step-up`: a challenge bound to this request, this approver and
/// this decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepUpStart {
    pub decision: Decision,
}

/// The authenticator's assertion for a step-up challenge, sent with the review.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepUpAssertion {
    pub challenge_id: String,
    pub credential: serde_json::Value,
}
