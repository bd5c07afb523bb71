//! Access requests, reviews, grants, and the short-lived user certificates a grant buys.

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use portcullis_crypto::OsRng;
use portcullis_proto::{
    AccessRequestView, CertificateRequest, CertificateResponse, CreateAccessRequest, Decision, GatewayEndpoint,
    GrantClaims, LiveEvent, MAX_REQUEST_SECS, PENDING_REQUEST_TTL_SECS, RequestStatus, ReviewRequest, Role,
    SignedGrant,
};
use russh::keys::PublicKey;
use serde::Deserialize;

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::store::{RequestRow, Store, TargetRow};
use crate::user_ca::fingerprint;

async fn target_named(state: &crate::ServerState, name: &str) -> Result<TargetRow, ServerError> {
    state.db.target_by_name(name).await?.ok_or_else(|| ServerError::NotFound(format!("unknown target {name:?}")))
}

/// The status a person should see: a pending request past its deadline is expired.
fn status_at(r: &RequestRow, now: i64) -> RequestStatus {
    match RequestStatus::parse(&r.status) {
        Some(RequestStatus::Pending) if now >= r.expires_at => RequestStatus::Expired,
        Some(s) => s,
        None => RequestStatus::Expired,
    }
}

fn view(r: &RequestRow, now: i64) -> AccessRequestView {
    AccessRequestView {
        id: r.id.clone(),
        requester: r.requester.clone(),
        target: r.target.clone(),
        duration_secs: r.duration_secs as u64,
        reason: r.reason.clone(),
        status: status_at(r, now),
        created_at: r.created_at,
        expires_at: r.expires_at,
        decided_by: r.decided_by.clone(),
        decided_at: r.decided_at,
        decision_reason: r.decision_reason.clone(),
        grant_not_after: r.grant_not_after,
    }
}

pub async fn create_request(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<CreateAccessRequest>,
) -> ApiResult<AccessRequestView> {
    caller.require(Role::Requester)?;
    if req.duration_secs == 0 || req.duration_secs > MAX_REQUEST_SECS {
        return Err(ServerError::BadRequest(format!(
            "duration must be between 1 second and {} hours",
            MAX_REQUEST_SECS / 3600
        )));
    }
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > 2000 {
        return Err(ServerError::BadRequest("a reason (1-2000 characters) is required".into()));
    }
    let target = target_named(&state, &req.target).await?;
    let now = state.clock.now();
    let row = RequestRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: caller.user_id.clone(),
        requester: caller.user_name.clone(),
        device_id: caller.device_id.clone(),
        target_id: target.id.clone(),
        target: target.name.clone(),
        duration_secs: req.duration_secs as i64,
        reason: reason.to_string(),
        status: "pending".into(),
        created_at: now,
        expires_at: now + PENDING_REQUEST_TTL_SECS,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        grant_not_after: None,
    };
    let mut tx = state.db.begin().await?;
    Store::insert_request(&mut tx, &row).await?;
    Store::record_event(
        &mut tx,
        now,
        Some(&caller.user_id),
        Some(&caller.device_id),
        "access_requested",
        serde_json::json!({ "request": row.id, "target": row.target, "duration_secs": row.duration_secs, "reason": row.reason }),
    )
    .await?;
    tx.commit().await?;
    let created = view(&row, now);
    state.live.publish(LiveEvent::RequestCreated { request: created.clone() }, &row.user_id);
    Ok(Json(created))
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

pub async fn review(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
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
        decided => {
            return Err(ServerError::Conflict(format!("request {id} was already {}", decided.as_str())));
        }
    }
    let reason = req.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.len() > 2000) {
        return Err(ServerError::BadRequest("the reason is longer than 2000 characters".into()));
    }

    // Read what the grant needs before the transaction: the store has a single connection.
    let target = target_named(&state, &request.target).await?;
    let mut tx = state.db.begin().await?;
    let status = match req.decision {
        Decision::Approve => "approved",
        Decision::Deny => "denied",
    };
    if !Store::decide_request(&mut tx, &id, status, &caller.user_id, now, reason).await? {
        return Err(ServerError::Conflict(format!("request {id} was decided by someone else meanwhile")));
    }
    if req.decision == Decision::Approve {
        let claims = GrantClaims {
            grant_id: uuid::Uuid::new_v4().to_string(),
            request_id: request.id.clone(),
            user_id: request.user_id.clone(),
            user_name: request.requester.clone(),
            device_id: request.device_id.clone(),
            target_id: target.id.clone(),
            target_name: target.name.clone(),
            login: target.login.clone(),
            not_before: now,
            not_after: now + request.duration_secs,
            issued_at: now,
            host_key_fingerprint: PublicKey::from_openssh(&target.host_key)
                .map(|k| fingerprint(&k))
                .unwrap_or_default(),
            credential_version: target.credential_version,
        };
        let signed = SignedGrant::sign(&claims, &state.signing);
        let signed_json = serde_json::to_string(&signed).map_err(|e| ServerError::Internal(e.to_string()))?;
        Store::insert_grant(&mut tx, &claims.grant_id, &request, claims.not_before, claims.not_after, &signed_json)
            .await?;
    }
    Store::record_event(
        &mut tx,
        now,
        Some(&caller.user_id),
        Some(&caller.device_id),
        if req.decision == Decision::Approve { "request_approved" } else { "request_denied" },
        serde_json::json!({ "request": id, "requester": request.requester, "target": request.target, "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    let updated = state.db.request(&id).await?.ok_or_else(|| ServerError::Internal("request vanished".into()))?;
    let decided = view(&updated, now);
    state.live.publish(LiveEvent::RequestDecided { request: decided.clone() }, &updated.user_id);
    Ok(Json(decided))
}

/// Explains why there is no usable grant, from the caller's latest request for the target.
async fn no_grant(state: &crate::ServerState, caller: &Caller, target_id: &str, target: &str, now: i64) -> ServerError {
    let latest = match state.db.latest_request_for(&caller.user_id, target_id).await {
        Ok(latest) => latest,
        Err(e) => return e,
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
        Some((r, RequestStatus::Approved)) => match state.db.grant_for_request(&r.id).await {
            Ok(Some(g)) if g.revoked_at.is_some() => ServerError::Refused(
                "grant_revoked",
                format!(
                    "your access to {target} (request {}) was ended ({}); ask again",
                    r.id,
                    g.revoke_reason.as_deref().unwrap_or("revoked")
                ),
            ),
            Ok(_) => ServerError::Refused(
                "grant_expired",
                format!("your access to {target} (request {}) has expired; ask again", r.id),
            ),
            Err(e) => e,
        },
    }
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
        return Err(no_grant(&state, &caller, &target.id, &target.name, now).await);
    };
    // Check our own signature too: a grant row edited in the database does not count.
    let signed: SignedGrant =
        serde_json::from_str(&grant.signed).map_err(|_| ServerError::Internal("stored grant is malformed".into()))?;
    let claims = signed
        .verify(&state.signing.public_key())
        .map_err(|e| ServerError::Internal(format!("stored grant {}: {e}", grant.id)))?;
    claims
        .check_use(now, &caller.device_id, &target.name)
        .map_err(|e| ServerError::Refused("grant_invalid", e.to_string()))?;
    if claims.user_id != caller.user_id || claims.target_id != target.id || grant.revoked_at.is_some() {
        return Err(ServerError::Refused("grant_invalid", "the grant does not match this caller".into()));
    }
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
    Store::record_event(
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
