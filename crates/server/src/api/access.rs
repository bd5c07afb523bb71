//! Access requests, reviews, grants, revocation, and the short-lived user certificates a grant
//! buys. What may be asked for, how many approvals it needs and who may give them is decided
//! by the Cedar policies in force ([`crate::policy`]); the fixed rules around them (nobody
//! reviews their own request, separation of duties) hold whatever the policies say.

use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use portcullis_crypto::OsRng;
use portcullis_policy::{ApprovalQuery, RequestQuery};
use portcullis_proto::{
    Access, AccessRequestView, CertificateRequest, CertificateResponse, CreateAccessRequest, Decision, GatewayEndpoint,
    GrantClaims, LiveEvent, MAX_REQUEST_SECS, PENDING_REQUEST_TTL_SECS, RequestDetail, RequestStatus, ReviewRequest,
    ReviewView, RevokeOutcome, RevokeRequest, Role, SessionSummary, SignedGrant, TimelineEntry, check_free_text,
};
use russh::keys::PublicKey;
use serde::Deserialize;

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::duties;
use crate::policy::{person, target_facts, timestamp};
use crate::store::{RequestRow, SETTING_STANDALONE_OWNER, Store, TargetRow, csv_list};
use crate::user_ca::fingerprint;

/// The target named `name`, refused if its row was changed behind the server's back.
pub(crate) async fn target_named(state: &crate::ServerState, name: &str) -> Result<TargetRow, ServerError> {
    let target = state
        .db
        .target_by_name(name)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("unknown target {name:?}")))?;
    state.check_row(crate::rows::Row::Target(&target.id)).await?;
    Ok(target)
}

/// What a request names: a target (SSH access) or a vault secret (check-out or use).
pub(crate) enum Resource {
    Target(TargetRow),
    Secret(crate::store::SecretRow),
}

impl Resource {
    fn id(&self) -> &str {
        match self {
            Resource::Target(t) => &t.id,
            Resource::Secret(s) => &s.id,
        }
    }

    fn name(&self) -> &str {
        match self {
            Resource::Target(t) => &t.name,
            Resource::Secret(s) => &s.name,
        }
    }

    fn facts(&self) -> portcullis_policy::TargetFacts {
        match self {
            Resource::Target(t) => target_facts(t),
            Resource::Secret(s) => crate::policy::secret_facts(s),
        }
    }
}

/// The secret named `name` that may be asked for: authentic, not removed.
pub(crate) async fn requestable_secret(
    state: &crate::ServerState,
    name: &str,
) -> Result<crate::store::SecretRow, ServerError> {
    let secret = state
        .db
        .secret_by_name(name)
        .await?
        .filter(|s| s.removed_at.is_none())
        .ok_or_else(|| ServerError::NotFound(format!("unknown target or secret {name:?}")))?;
    state.check_row(crate::rows::Row::Secret(&secret.id)).await?;
    Ok(secret)
}

/// The target or secret a request names, and what it asks for (a secret's default: check it
/// out when it may be revealed, else use it).
async fn resource_named(
    state: &crate::ServerState,
    name: &str,
    access: Option<Access>,
) -> Result<(Resource, Access), ServerError> {
    if state.db.target_by_name(name).await?.is_some() {
        let target = target_named(state, name).await?;
        if access.is_some_and(Access::is_secret) {
            return Err(ServerError::BadRequest(format!("{name} is a target: ask for SSH access to it")));
        }
        return Ok((Resource::Target(target), Access::Ssh));
    }
    let secret = requestable_secret(state, name).await?;
    let revealable = secret.revealable != 0;
    let access = match access {
        None if revealable => Access::Checkout,
        None => Access::Use,
        Some(Access::Ssh) => {
            return Err(ServerError::BadRequest(format!(
                "{name} is a secret: ask to check it out or to use it (--checkout, --use)"
            )));
        }
        Some(Access::Checkout) if !revealable => {
            return Err(ServerError::Refused(
                "not_revealable",
                format!("secret {name} is never revealed to a person; ask to use it in a process (--use)"),
            ));
        }
        Some(other) => other,
    };
    Ok((Resource::Secret(secret), access))
}

/// The resource of a stored request, as it is now.
async fn resource_of(state: &crate::ServerState, request: &RequestRow) -> Result<(Resource, Access), ServerError> {
    let access = Access::parse(&request.access)
        .ok_or_else(|| ServerError::Internal(format!("request {} has an unknown access kind", request.id)))?;
    if !access.is_secret() {
        return Ok((Resource::Target(target_named(state, &request.target).await?), access));
    }
    let secret = requestable_secret(state, &request.target).await?;
    if secret.id != request.target_id {
        return Err(ServerError::Refused("secret_gone", format!("secret {} was replaced since", request.target)));
    }
    Ok((Resource::Secret(secret), access))
}

/// The status a person should see: a pending request past its deadline is expired; an
/// approved one whose grant ended early is revoked.
pub(crate) fn status_at(r: &RequestRow, now: i64) -> RequestStatus {
    match RequestStatus::parse(&r.status) {
        Some(RequestStatus::Pending) if now >= r.expires_at => RequestStatus::Expired,
        Some(RequestStatus::Approved) if r.revoked_at.is_some() => RequestStatus::Revoked,
        Some(s) => s,
        None => RequestStatus::Expired,
    }
}

pub(crate) fn view(r: &RequestRow, now: i64) -> AccessRequestView {
    AccessRequestView {
        id: r.id.clone(),
        requester: r.requester.clone(),
        target: r.target.clone(),
        access: Access::parse(&r.access).unwrap_or_default(),
        duration_secs: r.duration_secs as u64,
        reason: r.reason.clone(),
        status: status_at(r, now),
        created_at: r.created_at,
        expires_at: r.expires_at,
        decided_by: r.decided_by.clone(),
        decided_at: r.decided_at,
        decision_reason: r.decision_reason.clone(),
        grant_not_after: r.grant_not_after,
        approvals: r.approvals.max(0) as u32,
        approvals_needed: r.approvals_needed.max(1) as u32,
        approver_groups: csv_list(&r.approver_groups),
        permitted_by: csv_list(&r.permitted_by),
        grant_id: r.grant_id.clone(),
        revoked_at: r.revoked_at,
        revoked_by: r.revoked_by.clone(),
        revoke_reason: r.revoke_reason.clone(),
    }
}

/// The caller as policies see them (with their groups).
async fn caller_person(state: &crate::ServerState, caller: &Caller) -> Result<portcullis_policy::Person, ServerError> {
    let user =
        state.db.user_by_id(&caller.user_id).await?.ok_or_else(|| ServerError::Unauthorized("unknown user".into()))?;
    Ok(person(&user))
}

/// How long a request the target list imagines lasts: policies cap durations, rarely floor them.
const LISTING_PROBE_SECS: u64 = 60;

/// The targets `caller` could ask for now, from `from` (a short request at this time): what a
/// requester's target list shows. A policy that cannot be evaluated hides the target (fail
/// closed); asking for a hidden target still gets the policy's own answer.
pub(crate) async fn requestable(
    state: &crate::ServerState,
    caller: &Caller,
    from: IpAddr,
    targets: Vec<TargetRow>,
) -> Result<Vec<TargetRow>, ServerError> {
    let who = caller_person(state, caller).await?;
    let loaded = state.policies.in_force(&state.db, &state.rows).await?;
    let Ok(policies) = loaded.usable() else { return Ok(Vec::new()) };
    let now = state.clock.now();
    Ok(targets
        .into_iter()
        .filter(|target| {
            policies
                .decide_request(&RequestQuery {
                    user: &who,
                    target: &target_facts(target),
                    access: portcullis_policy::Access::Ssh,
                    duration_secs: LISTING_PROBE_SECS,
                    source_ip: from,
                    at: timestamp(now),
                    time_zone: state.policies.time_zone.clone(),
                })
                .is_ok_and(|d| d.allowed)
        })
        .collect())
}

pub async fn create_request(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    crate::client_addr::ClientAddr(client): crate::client_addr::ClientAddr,
    Json(req): Json<CreateAccessRequest>,
) -> ApiResult<AccessRequestView> {
    let service = caller.has(Role::Service);
    if !service {
        caller.require(Role::Requester)?;
    }
    if req.duration_secs == 0 || req.duration_secs > MAX_REQUEST_SECS {
        return Err(ServerError::BadRequest(format!(
            "duration must be between 1 second and {} days",
            MAX_REQUEST_SECS / 86_400
        )));
    }
    let reason = check_free_text("reason", &req.reason, 2000).map_err(ServerError::BadRequest)?;
    if service && req.access.is_some_and(|a| a != Access::Use) {
        return Err(ServerError::Refused(
            "service_account",
            format!(
                "{} is a service account: it uses secrets in processes, and asks for nothing else",
                caller.user_name
            ),
        ));
    }
    let (target, access) = resource_named(&state, &req.target, req.access.or(service.then_some(Access::Use))).await?;
    if service && access != Access::Use {
        return Err(ServerError::Refused(
            "service_account",
            format!(
                "{} is a service account: it uses secrets in processes, and asks for nothing else",
                caller.user_name
            ),
        ));
    }
    let now = state.clock.now();
    let from = client;
    let who = caller_person(&state, &caller).await?;
    let loaded = state.policies.in_force(&state.db, &state.rows).await?;
    let decision = loaded
        .usable()?
        .decide_request(&RequestQuery {
            user: &who,
            target: &target.facts(),
            access,
            duration_secs: req.duration_secs,
            source_ip: from,
            at: timestamp(now),
            time_zone: state.policies.time_zone.clone(),
        })
        .map_err(|e| ServerError::Refused("policy_error", e.to_string()))?;
    if !decision.allowed {
        let why = decision.why.clone().unwrap_or_else(|| "no policy permits it".into());
        let mut tx = state.db.begin().await?;
        state.record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "request_refused_by_policy",
            serde_json::json!({ "target": target.name(), "access": access.as_str(), "duration_secs": req.duration_secs,
                "source_ip": from.to_string(), "policies": decision.policies, "why": why, "policy_version": loaded.version }),
        )
        .await?;
        tx.commit().await?;
        return Err(ServerError::Refused("policy_denied", format!("request for {} refused: {why}", target.name())));
    }
    // No human approval only for a pipeline; a person asking under the same policy still needs one.
    let by_policy = decision.approvals == 0 && service;
    let approvals_needed = if decision.approvals == 0 && !service { 1 } else { decision.approvals };
    let row = RequestRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: caller.user_id.clone(),
        requester: caller.user_name.clone(),
        device_id: caller.device_id.clone(),
        target_id: target.id().to_string(),
        target: target.name().to_string(),
        access: access.as_str().to_string(),
        duration_secs: req.duration_secs as i64,
        reason,
        status: "pending".into(),
        created_at: now,
        expires_at: now + PENDING_REQUEST_TTL_SECS,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        grant_not_after: None,
        grant_id: None,
        source_ip: Some(from.to_string()),
        approvals: 0,
        approvals_needed: i64::from(approvals_needed),
        approver_groups: decision.approver_groups.join(","),
        permitted_by: decision.policies.join(","),
        policy_version: Some(loaded.version),
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    };
    let mut tx = state.db.begin().await?;
    Store::insert_request(&mut tx, &row).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "access_requested",
            serde_json::json!({ "request": row.id, "target": row.target, "access": row.access, "duration_secs": row.duration_secs,
            "reason": row.reason, "source_ip": from.to_string(), "policies": decision.policies,
            "approvals_needed": decision.approvals, "approver_groups": decision.approver_groups,
            "policy_version": loaded.version }),
        )
        .await?;
    if by_policy {
        let why = format!("granted without an approval by policy {}", decision.policies.join(", "));
        Store::approve_by_policy(&mut tx, &row.id, now, &why).await?;
        let grant = issue_grant(&state, &mut tx, &row, &target, access, now).await?;
        state
            .record_event(
                &mut tx,
                now,
                Some(&caller.user_id),
                Some(&caller.device_id),
                "request_approved_by_policy",
                serde_json::json!({ "request": row.id, "grant": grant.grant_id, "target": row.target,
                    "access": row.access, "policies": decision.policies, "policy_version": loaded.version }),
            )
            .await?;
        let decided = Store::request_in(&mut tx, &row.id)
            .await?
            .ok_or_else(|| ServerError::Internal("request vanished".into()))?;
        let decided = view(&decided, now);
        state.live.publish_in(&mut tx, LiveEvent::RequestDecided { request: decided.clone() }, &row.user_id).await?;
        tx.commit().await?;
        state.live.published();
        return Ok(Json(decided));
    }
    let created = view(&row, now);
    state.live.publish_in(&mut tx, LiveEvent::RequestCreated { request: created.clone() }, &row.user_id).await?;
    tx.commit().await?;
    state.live.published();
    Ok(Json(created))
}

/// Signs and stores the grant an approved `request` makes, for `target` as it is now.
async fn issue_grant(
    state: &crate::ServerState,
    tx: &mut crate::store::Tx<'_>,
    request: &RequestRow,
    target: &Resource,
    access: Access,
    now: i64,
) -> Result<GrantClaims, ServerError> {
    let mut claims = GrantClaims {
        grant_id: uuid::Uuid::new_v4().to_string(),
        request_id: request.id.clone(),
        user_id: request.user_id.clone(),
        user_name: request.requester.clone(),
        device_id: request.device_id.clone(),
        target_id: target.id().to_string(),
        target_name: target.name().to_string(),
        login: String::new(),
        not_before: now,
        not_after: now + request.duration_secs,
        issued_at: now,
        host_key_fingerprint: String::new(),
        credential_version: 0,
        access,
    };
    match target {
        Resource::Target(t) => {
            claims.login = t.login.clone();
            claims.host_key_fingerprint =
                PublicKey::from_openssh(&t.host_key).map(|k| fingerprint(&k)).unwrap_or_default();
            claims.credential_version = t.credential_version;
        }
        Resource::Secret(s) => claims.credential_version = s.current_version,
    }
    let signed = SignedGrant::sign(&claims, &state.signing);
    let signed_json = serde_json::to_string(&signed).map_err(|e| ServerError::Internal(e.to_string()))?;
    Store::insert_grant(tx, &state.rows, &claims.grant_id, request, claims.not_before, claims.not_after, &signed_json)
        .await?;
    Ok(claims)
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pending: bool,
}

pub async fn list_requests(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<AccessRequestView>> {
    let sees_all = caller.has(Role::Approver) || caller.has(Role::Admin) || caller.has(Role::Auditor);
    let only = if sees_all { None } else { Some(caller.user_id.as_str()) };
    let now = state.clock.now();
    let rows = state.db.requests(only).await?;
    Ok(Json(rows.iter().map(|r| view(r, now)).filter(|v| !q.pending || v.status == RequestStatus::Pending).collect()))
}

/// The accounts separation of duties follows from `start` (creators, confirmers, theirs…),
/// each row authenticated; a row that fails its MAC refuses the review.
async fn load_lineage(state: &crate::ServerState, start: &[&str]) -> Result<duties::Lineage, ServerError> {
    let mut lineage = duties::Lineage::new();
    let mut queue: Vec<String> = start.iter().map(|s| s.to_string()).collect();
    while let Some(id) = queue.pop() {
        if lineage.contains_key(&id) {
            continue;
        }
        if lineage.len() > 4 * duties::MAX_CHAIN {
            break; // what is missing reads as an unknown lineage: the review is barred
        }
        let Some((name, created_by, confirmation)) = state.db.lineage_facts(&id).await? else { continue };
        let mut conn = state.db.conn().await?;
        state.rows.check(&mut conn, crate::rows::Row::User(&id)).await?;
        let confirmation = match confirmation {
            Some((by, via)) => {
                state.rows.check(&mut conn, crate::rows::Row::Confirmation(&id)).await?;
                let via = duties::ConfirmedVia::parse(&via)
                    .ok_or_else(|| ServerError::Internal(format!("unknown confirmation kind {via:?}")))?;
                queue.push(by.clone());
                Some(duties::Confirmation { by, via })
            }
            None => None,
        };
        queue.extend(created_by.iter().cloned());
        lineage.insert(id, duties::Account { name, created_by, confirmation });
    }
    Ok(lineage)
}

/// Separation of duties (see [`duties`]): lineage in both directions through chains of
/// creation, and role or group changes in either direction within 24 hours.
async fn separation_of_duties(
    state: &crate::ServerState,
    caller: &Caller,
    request: &RequestRow,
    now: i64,
) -> Result<(), ServerError> {
    let owner = state.db.setting(&state.rows, SETTING_STANDALONE_OWNER).await?;
    let lineage = load_lineage(state, &[&caller.user_id, &request.user_id]).await?;
    let refused = |m: String| Err(ServerError::Refused("separation_of_duties", m));
    match duties::lineage_bar(&lineage, &caller.user_id, &request.user_id, owner.as_deref()) {
        None => {}
        Some(duties::Bar::Created { chain }) if chain.len() <= 2 => {
            return refused(format!(
                "you created {}'s account, so another approver must review their requests",
                request.requester
            ));
        }
        Some(duties::Bar::Created { chain }) => {
            return refused(format!(
                "{}'s account comes from yours ({}), so another approver must review their requests",
                request.requester,
                chain.join(" created ")
            ));
        }
        Some(duties::Bar::CreatedBy { chain }) => {
            return refused(format!(
                "your account comes from {}'s ({}) and no second admin confirmed it independently, so your \
                 review cannot count on their requests",
                request.requester,
                chain.join(" created ")
            ));
        }
        Some(duties::Bar::Unknown) => {
            return refused(format!(
                "the chain of accounts that created yours or {}'s cannot be followed; refusing the review",
                request.requester
            ));
        }
    }
    let since = now - duties::CHANGE_BAR_SECS;
    if let Some((changed, what, at)) =
        state.db.change_between(&state.rows, &caller.user_id, &request.user_id, since).await?
    {
        let ago = portcullis_policy::human_duration((now - at).max(0) as u64);
        return refused(if changed == request.user_id {
            format!(
                "you changed {}'s {what} {ago} ago; for 24 hours after such a change another approver must review \
                 their requests",
                request.requester
            )
        } else {
            format!(
                "{} changed your {what} {ago} ago; for 24 hours after such a change you cannot review their requests",
                request.requester
            )
        });
    }
    Ok(())
}

pub async fn review(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    crate::client_addr::ClientAddr(client): crate::client_addr::ClientAddr,
    Path(id): Path<String>,
    Json(req): Json<ReviewRequest>,
) -> ApiResult<AccessRequestView> {
    let request =
        state.db.request(&id).await?.ok_or_else(|| ServerError::NotFound(format!("no request with id {id}")))?;
    if !caller.has(Role::Approver) {
        return Err(ServerError::Refused(
            "not_approver",
            format!("{} is not an approver and cannot review requests", caller.user_name),
        ));
    }
    if request.user_id == caller.user_id {
        return Err(ServerError::Refused("self_approval", "you cannot review your own request".into()));
    }
    let now = state.clock.now();
    match status_at(&request, now) {
        RequestStatus::Pending => {}
        RequestStatus::Expired => {
            return Err(ServerError::Refused(
                "request_expired",
                format!("request {id} expired undecided; the requester must ask again"),
            ));
        }
        RequestStatus::Revoked => {
            return Err(ServerError::Refused("request_revoked", format!("request {id} was withdrawn or revoked")));
        }
        decided => {
            return Err(ServerError::Conflict(format!("request {id} was already {}", decided.as_str())));
        }
    }
    let reason = match req.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(check_free_text("reason", r, 2000).map_err(ServerError::BadRequest)?),
        None => None,
    };
    separation_of_duties(&state, &caller, &request, now).await?;

    // Read what the decision needs before the transaction: the store has a single connection.
    let (target, access) = resource_of(&state, &request).await?;
    let approver = caller_person(&state, &caller).await?;
    let requester = state
        .db
        .user_by_id(&request.user_id)
        .await?
        .ok_or_else(|| ServerError::Internal("the requester vanished".into()))?;
    state.rows.check(&mut state.db.conn().await?, crate::rows::Row::User(&requester.id)).await?;
    let missing: Vec<String> =
        csv_list(&request.approver_groups).into_iter().filter(|g| !approver.groups.contains(g)).collect();
    if !missing.is_empty() {
        return Err(ServerError::Refused(
            "not_in_approver_group",
            format!(
                "only members of {} count as approvers for this request (policy {}); {} is not",
                missing.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" and "),
                request.permitted_by,
                caller.user_name
            ),
        ));
    }
    let from = client;
    let loaded = state.policies.in_force(&state.db, &state.rows).await?;
    let decision = loaded
        .usable()?
        .decide_approval(&ApprovalQuery {
            approver: &approver,
            requester: &person(&requester),
            target: &target.facts(),
            access,
            duration_secs: request.duration_secs.max(0) as u64,
            source_ip: from,
            at: timestamp(now),
            time_zone: state.policies.time_zone.clone(),
        })
        .map_err(|e| ServerError::Refused("policy_error", e.to_string()))?;
    if !decision.allowed {
        return Err(ServerError::Refused(
            "approval_not_permitted",
            decision.why.unwrap_or_else(|| "no policy permits this approval".into()),
        ));
    }
    let step_up_evidence = if decision.step_up {
        Some(
            super::keys::verify_step_up(
                &state,
                &caller,
                &request,
                req.decision,
                req.step_up.as_ref(),
                &decision.policies,
                now,
            )
            .await?,
        )
    } else {
        None
    };

    let mut tx = state.db.begin().await?;
    let decision_name = match req.decision {
        Decision::Approve => "approve",
        Decision::Deny => "deny",
    };
    if !Store::insert_review(
        &mut tx,
        &state.rows,
        &id,
        &caller.user_id,
        &caller.device_id,
        decision_name,
        reason.as_deref(),
        now,
        &from.to_string(),
        &decision.policies.join(","),
        step_up_evidence.as_deref(),
    )
    .await?
    {
        return Err(ServerError::Conflict(format!("you already reviewed request {id}")));
    }
    let approvals = Store::approvals_in(&mut tx, &state.rows, &id).await?;
    let threshold_met = req.decision == Decision::Approve && approvals >= request.approvals_needed.max(1);
    if req.decision == Decision::Deny || threshold_met {
        let status = if threshold_met { "approved" } else { "denied" };
        if !Store::decide_request(&mut tx, &id, status, &caller.user_id, now, reason.as_deref()).await? {
            return Err(ServerError::Conflict(format!("request {id} was decided by someone else meanwhile")));
        }
    }
    if threshold_met {
        issue_grant(&state, &mut tx, &request, &target, access, now).await?;
    }
    let kind = match (req.decision, threshold_met) {
        (Decision::Deny, _) => "request_denied",
        (Decision::Approve, true) => "request_approved",
        (Decision::Approve, false) => "request_approval_recorded",
    };
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            kind,
            serde_json::json!({ "request": id, "requester": request.requester, "target": request.target,
            "access": request.access, "reason": reason,
            "approvals": approvals, "approvals_needed": request.approvals_needed, "policies": decision.policies,
            "step_up": step_up_evidence.is_some(), "source_ip": from.to_string() }),
        )
        .await?;
    let updated =
        Store::request_in(&mut tx, &id).await?.ok_or_else(|| ServerError::Internal("request vanished".into()))?;
    let reviewed = view(&updated, now);
    let event = if reviewed.status == RequestStatus::Pending {
        LiveEvent::RequestUpdated { request: reviewed.clone() }
    } else {
        LiveEvent::RequestDecided { request: reviewed.clone() }
    };
    state.live.publish_in(&mut tx, event, &updated.user_id).await?;
    tx.commit().await?;
    state.live.published();
    Ok(Json(reviewed))
}

/// Ends a grant, or withdraws a pending request, by the request's or the grant's id:
/// approvers and admins for anyone, a requester for their own.
pub async fn revoke(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<RevokeRequest>,
) -> ApiResult<RevokeOutcome> {
    let reason = match req.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => check_free_text("reason", r, 2000).map_err(ServerError::BadRequest)?,
        None => "revoked".to_string(),
    };
    let request = match state.db.request(&req.id).await? {
        Some(r) => r,
        None => match state.db.grant(&req.id).await? {
            Some(g) => state
                .db
                .request(&g.request_id)
                .await?
                .ok_or_else(|| ServerError::Internal("grant without request".into()))?,
            None => return Err(ServerError::NotFound(format!("no request or grant with id {}", req.id))),
        },
    };
    let own = request.user_id == caller.user_id;
    if !own && !caller.has(Role::Approver) && !caller.has(Role::Admin) {
        return Err(ServerError::Forbidden(format!(
            "{} can revoke only their own access (request {} is {}'s)",
            caller.user_name, request.id, request.requester
        )));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    // Decided on the request as it is now, inside the transaction: an approval that committed
    // since it was read above made a grant, and that grant is what must end.
    let request = Store::request_in(&mut tx, &request.id)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no request or grant with id {}", req.id)))?;
    let status = status_at(&request, now);
    let ended = match status {
        RequestStatus::Pending => Store::revoke_request(&mut tx, &request.id, now, &caller.user_id, &reason).await?,
        RequestStatus::Approved => match &request.grant_id {
            Some(grant) => {
                Store::revoke_grant(&mut tx, &state.rows, grant, now, Some(&caller.user_id), &reason).await?
            }
            None => false,
        },
        _ => false,
    };
    // A revoked grant to check a secret out ends its check-out now (it no longer bars others).
    let mut checkout_ended = None;
    if ended
        && status == RequestStatus::Approved
        && let Some(grant) = &request.grant_id
        && let Some(checkout) = Store::open_checkout_of_grant(&mut tx, grant).await?
    {
        Store::end_checkout(&mut tx, &state.rows, &checkout, now, "revoked").await?;
        checkout_ended = Some(checkout);
    }
    // Whatever was revealed under it is changed on the target.
    let rotation = match &checkout_ended {
        Some(_) => {
            super::rotation::after_checkout(&state, &mut tx, &request.target_id, "revoked", &request.user_id, now)
                .await?
        }
        None => None,
    };
    if !ended {
        let what = match status {
            RequestStatus::Approved => "its access has already ended (expired)".to_string(),
            other => format!("it is {}", other.as_str()),
        };
        return Err(ServerError::Conflict(format!("request {} cannot be revoked: {what}", request.id)));
    }
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            if status == RequestStatus::Pending { "request_withdrawn" } else { "grant_revoked" },
            serde_json::json!({ "request": request.id, "grant": request.grant_id, "requester": request.requester,
            "target": request.target, "access": request.access, "checkout_ended": checkout_ended, "rotation": rotation,
            "reason": reason }),
        )
        .await?;
    let updated = Store::request_in(&mut tx, &request.id)
        .await?
        .ok_or_else(|| ServerError::Internal("request vanished".into()))?;
    let revoked = view(&updated, now);
    state.live.publish_in(&mut tx, LiveEvent::RequestUpdated { request: revoked.clone() }, &updated.user_id).await?;
    tx.commit().await?;
    state.live.published();
    state.revocations.notify_waiters();
    if rotation.is_some() {
        state.rotations.notify_one();
    }
    let sessions_ended = match &request.grant_id {
        Some(grant) if status == RequestStatus::Approved => state.db.open_sessions_of_grant(grant).await?,
        _ => 0,
    };
    Ok(Json(RevokeOutcome { request: revoked, sessions_ended }))
}

/// The story of a request in order: who asked for what and why, the policy that permitted
/// it, each review (with step-up evidence), the grant, every session it opened, and how it
/// ended. The requester sees their own; approvers, admins and auditors see any.
pub async fn request_detail(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<RequestDetail> {
    let request =
        state.db.request(&id).await?.ok_or_else(|| ServerError::NotFound(format!("no request with id {id}")))?;
    let sees_all = caller.has(Role::Approver) || caller.has(Role::Admin) || caller.has(Role::Auditor);
    if request.user_id != caller.user_id && !sees_all {
        // Not "forbidden": whether someone else's request exists is not the caller's business.
        return Err(ServerError::NotFound(format!("no request with id {id}")));
    }
    let now = state.clock.now();
    let view = view(&request, now);
    let reviews: Vec<ReviewView> = state
        .db
        .reviews(&id)
        .await?
        .into_iter()
        .map(|r| ReviewView {
            approver: r.approver,
            decision: if r.decision == "approve" { Decision::Approve } else { Decision::Deny },
            reason: r.reason,
            at: r.at,
            source_ip: r.source_ip,
            policies: csv_list(&r.policies),
            step_up: r.step_up.as_deref().and_then(|e| serde_json::from_str(e).ok()),
        })
        .collect();
    let grant = match &request.grant_id {
        Some(g) => state.db.grant(g).await?,
        None => None,
    };
    let writers = state.db.gateways().await?;
    let sessions: Vec<SessionSummary> = match &request.grant_id {
        Some(g) => state
            .db
            .sessions_of_grant(g)
            .await?
            .into_iter()
            .map(|s| {
                let writer = writers.iter().find(|w| w.id == s.writer_id).map(|w| w.name.clone()).unwrap_or_default();
                super::audit::summary(s, &writer)
            })
            .collect(),
        None => Vec::new(),
    };

    let mut timeline = Vec::new();
    let mut entry = |at: f64, kind: &str, actor: Option<&str>, text: String, session_id: Option<&str>| {
        timeline.push(TimelineEntry {
            at,
            kind: kind.into(),
            actor: actor.map(String::from),
            text,
            session_id: session_id.map(String::from),
        });
    };
    let created = request.created_at as f64;
    entry(
        created,
        "requested",
        Some(&request.requester),
        format!(
            "asked for {} for {}{}: {:?}",
            request.target,
            portcullis_policy::human_duration(request.duration_secs.max(0) as u64),
            request.source_ip.as_deref().map(|ip| format!(" from {ip}")).unwrap_or_default(),
            request.reason
        ),
        None,
    );
    if !view.permitted_by.is_empty() {
        let from = if view.approver_groups.is_empty() {
            String::new()
        } else {
            format!(" from members of {}", view.approver_groups.join(" and "))
        };
        entry(
            created,
            "permitted",
            None,
            format!(
                "permitted by policy {}{}; needs {} approval{}{from}",
                view.permitted_by.join(", "),
                request.policy_version.map(|v| format!(" (policy set version {v})")).unwrap_or_default(),
                view.approvals_needed,
                if view.approvals_needed == 1 { "" } else { "s" }
            ),
            None,
        );
    }
    let mut approvals = 0;
    for r in &reviews {
        let verb = match r.decision {
            Decision::Approve => {
                approvals += 1;
                format!("approved ({approvals} of {})", view.approvals_needed)
            }
            Decision::Deny => "denied".to_string(),
        };
        let key = r
            .step_up
            .as_ref()
            .map(|e| {
                format!(
                    "; confirmed with security key {:?}{}",
                    e.key_name,
                    if e.user_verified { " and PIN" } else { "" }
                )
            })
            .unwrap_or_default();
        let why = r.reason.as_deref().map(|x| format!(": {x:?}")).unwrap_or_default();
        let kind = if r.decision == Decision::Approve { "approved" } else { "denied" };
        entry(r.at as f64, kind, Some(&r.approver), format!("{verb}{key}{why}"), None);
    }
    if let (Some(g), Some(decided)) = (&grant, request.decided_at) {
        entry(
            decided as f64,
            "granted",
            None,
            format!("access granted until {} (grant {})", clock_time(g.not_after, &state), g.id),
            None,
        );
    }
    for s in &sessions {
        let what = match s.command.as_deref() {
            Some(c) => format!("ran {c:?}"),
            None => format!("opened a {} session", if s.kind.is_empty() { "shell" } else { &s.kind }),
        };
        entry(
            s.started_at,
            "session_started",
            Some(&s.user),
            format!("{what} through {}", s.recorded_by),
            Some(&s.session_id),
        );
        if let Some(ended) = s.ended_at {
            let reason = s.end_reason.as_deref().unwrap_or("ended");
            let status = s.exit_status.map(|x| format!(", exit status {x}")).unwrap_or_default();
            entry(ended, "session_ended", None, format!("session ended ({reason}{status})"), Some(&s.session_id));
        }
    }
    match view.status {
        RequestStatus::Revoked => entry(
            request.revoked_at.unwrap_or(now) as f64,
            if request.grant_id.is_some() { "revoked" } else { "withdrawn" },
            request.revoked_by.as_deref(),
            format!(
                "{}: {}",
                if request.grant_id.is_some() { "access revoked" } else { "request withdrawn" },
                request.revoke_reason.as_deref().unwrap_or("revoked")
            ),
            None,
        ),
        RequestStatus::Expired => {
            entry(request.expires_at as f64, "expired", None, "expired before enough approvals".into(), None)
        }
        RequestStatus::Approved if grant.as_ref().is_some_and(|g| g.not_after <= now) => {
            let end = grant.as_ref().map(|g| g.not_after).unwrap_or(now);
            entry(end as f64, "expired", None, "access expired".into(), None)
        }
        _ => {}
    }
    // Server events are stamped to the second, sessions finer: within one second, the order of
    // the story decides (a session cannot start before its grant, nor end before it starts).
    let rank = |kind: &str| match kind {
        "requested" => 0,
        "permitted" => 1,
        "approved" | "denied" => 2,
        "granted" => 3,
        "session_started" => 4,
        "session_ended" => 5,
        _ => 6,
    };
    timeline.sort_by(|a, b| {
        (a.at.floor() as i64, rank(&a.kind)).cmp(&(b.at.floor() as i64, rank(&b.kind))).then(a.at.total_cmp(&b.at))
    });
    Ok(Json(RequestDetail {
        request: view,
        source_ip: request.source_ip.clone(),
        policy_version: request.policy_version,
        reviews,
        sessions,
        timeline,
    }))
}

/// `2026-11-26 14:05 UTC` in the server's time zone.
pub(crate) fn clock_time(unix: i64, state: &crate::ServerState) -> String {
    timestamp(unix).to_zoned(state.policies.time_zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string()
}

/// Explains why there is no usable grant, from the caller's latest request for the target.
pub(crate) async fn no_grant(
    state: &crate::ServerState,
    caller: &Caller,
    target_id: &str,
    target: &str,
    access: Access,
    now: i64,
) -> ServerError {
    let latest = match state.db.latest_request_for(&caller.user_id, target_id, access.as_str()).await {
        Ok(latest) => latest,
        Err(e) => return e.into(),
    };
    match latest.as_ref().map(|r| (r, status_at(r, now))) {
        None => ServerError::Refused(
            "no_grant",
            format!(
                "you have no access to {target}; ask for it with `portcullis request {target} --duration 30m --reason ...`"
            ),
        ),
        Some((r, RequestStatus::Pending)) => {
            ServerError::Refused("pending", format!("request {} for {target} is still waiting for approval", r.id))
        }
        Some((r, RequestStatus::Denied)) => ServerError::Refused(
            "denied",
            format!(
                "request {} for {target} was denied by {}{}",
                r.id,
                r.decided_by.as_deref().unwrap_or("an approver"),
                r.decision_reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
            ),
        ),
        Some((r, RequestStatus::Expired)) => ServerError::Refused(
            "request_expired",
            format!("request {} for {target} expired before anyone approved it; ask again", r.id),
        ),
        Some((r, RequestStatus::Revoked)) if r.grant_id.is_some() => ServerError::Refused(
            "grant_revoked",
            format!(
                "your access to {target} (request {}) was ended{} ({}); ask again",
                r.id,
                r.revoked_by.as_deref().map(|by| format!(" by {by}")).unwrap_or_default(),
                r.revoke_reason.as_deref().unwrap_or("revoked")
            ),
        ),
        Some((r, RequestStatus::Revoked)) => {
            ServerError::Refused("request_withdrawn", format!("request {} for {target} was withdrawn; ask again", r.id))
        }
        Some((r, RequestStatus::Approved)) => ServerError::Refused(
            "grant_expired",
            format!("your access to {target} (request {}) has expired; ask again", r.id),
        ),
    }
}

/// The claims of `grant` as the server signed them, checked for use now by `caller` on the
/// resource `id`/`name` for `access`: its row authentic (a revocation undone in the database
/// does not count), its signature ours (an edited grant does not count), live, this device's.
pub(crate) async fn verified_claims(
    state: &crate::ServerState,
    caller: &Caller,
    grant: &crate::store::GrantRow,
    id: &str,
    name: &str,
    access: Access,
    now: i64,
) -> Result<GrantClaims, ServerError> {
    state.check_row(crate::rows::Row::Grant(&grant.id)).await?;
    let signed: SignedGrant =
        serde_json::from_str(&grant.signed).map_err(|_| ServerError::Internal("stored grant is malformed".into()))?;
    let claims = signed
        .verify(&state.signing.public_key())
        .map_err(|e| ServerError::Internal(format!("stored grant {}: {e}", grant.id)))?;
    claims.check_use(now, &caller.device_id, name).map_err(|e| ServerError::Refused("grant_invalid", e.to_string()))?;
    if claims.user_id != caller.user_id
        || claims.target_id != id
        || claims.access != access
        || grant.revoked_at.is_some()
    {
        return Err(ServerError::Refused("grant_invalid", "the grant does not match this caller".into()));
    }
    Ok(claims)
}

/// Signs a short-lived OpenSSH user certificate for an ephemeral key the caller's device made,
/// under its live grant for the target: principal = the user, key id = the grant, valid until
/// the grant ends, `permit-pty` only. The answer names the gateway to use and pins its host
/// key; it never carries a credential.
pub async fn issue_certificate(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<CertificateRequest>,
) -> ApiResult<CertificateResponse> {
    let target = target_named(&state, &req.target).await?;
    let now = state.clock.now();
    let Some(grant) = state.db.active_grant(&caller.user_id, &caller.device_id, &target.id, now).await? else {
        return Err(no_grant(&state, &caller, &target.id, &target.name, Access::Ssh, now).await);
    };
    let claims = verified_claims(&state, &caller, &grant, &target.id, &target.name, Access::Ssh, now).await?;
    if let Some(what) = super::gateways::binding_mismatch(&claims, &target) {
        return Err(super::gateways::target_changed(&target.name, what));
    }
    let subject = PublicKey::from_openssh(req.public_key.trim())
        .map_err(|_| ServerError::BadRequest("public_key is not an OpenSSH public key line".into()))?;
    if subject.algorithm() != russh::keys::Algorithm::Ed25519 {
        return Err(ServerError::BadRequest("certificates are issued for Ed25519 keys only".into()));
    }
    let gateway = state
        .db
        .gateway(&target.gateway_id)
        .await?
        .ok_or_else(|| ServerError::Internal(format!("the gateway of {} is missing", target.name)))?;
    let (Some(address), Some(host_key)) = (gateway.address.as_deref(), gateway.host_key.clone()) else {
        return Err(ServerError::Refused(
            "gateway_offline",
            format!(
                "gateway {} (which reaches {}) has not reported where it listens yet; is it running?",
                gateway.name, target.name
            ),
        ));
    };
    let (host, port) = super::gateways::split_address(address)
        .ok_or_else(|| ServerError::Internal(format!("gateway {} reported a malformed address", gateway.name)))?;
    let serial = loop {
        let n = u64::from_be_bytes(portcullis_crypto::random_bytes(&mut OsRng)) >> 1;
        if n != 0 {
            break n;
        }
    };
    let certificate = state
        .user_ca
        .issue(
            &subject,
            &claims.user_name,
            &claims.grant_id,
            serial,
            claims.not_before.max(0) as u64,
            claims.not_after.max(0) as u64,
        )
        .map_err(ServerError::Internal)?;
    let certificate = certificate.to_openssh().map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut tx = state.db.begin().await?;
    Store::insert_user_certificate(&mut tx, serial, &claims.grant_id, &fingerprint(&subject), now, claims.not_after)
        .await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "certificate_issued",
            serde_json::json!({ "grant": claims.grant_id, "target": target.name, "serial": serial.to_string(),
            "key": fingerprint(&subject), "valid_before": claims.not_after, "gateway": gateway.name }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(CertificateResponse {
        certificate,
        grant_id: claims.grant_id,
        target: target.name,
        login: target.login,
        not_after: claims.not_after,
        gateway: GatewayEndpoint { name: gateway.name, host, port, host_key },
    }))
}
