//! Users, groups, devices and policies (admin), and what changing them ends: a user disabled,
//! a device revoked or the requester role removed revokes that holder's grants, withdraws their
//! pending requests, tells gateways to end their sessions and closes their live streams.

use crate::rows::Row;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use portcullis_policy::{PolicyError, PolicySet, RequestQuery};
use portcullis_proto::{
    AccessChangeOutcome, AddGroupRequest, AddUserRequest, AddUserResponse, ConfirmUserResponse, DeviceView, GroupView,
    PolicyCheck, PolicyProblem, PolicyTestRequest, PolicyTestResult, PolicyText, PolicyView, Role, SetGroupsRequest,
    SetRolesRequest, UserView, check_name, roles_from_string, roles_to_string,
};

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::policy::{person, target_facts, timestamp};
use crate::store::{Store, UserDetailRow};

/// Largest policy text accepted (Cedar parses it in memory).
const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// A comma-separated list as a sorted list (SQLite's group_concat has no order).
fn names(csv: &str) -> Vec<String> {
    let mut names = crate::store::csv_list(csv);
    names.sort();
    names
}

fn user_view(u: &UserDetailRow) -> Result<UserView, ServerError> {
    Ok(UserView {
        id: u.id.clone(),
        name: u.name.clone(),
        roles: roles_from_string(&u.roles).map_err(ServerError::Internal)?,
        groups: names(&u.groups),
        created_at: u.created_at,
        created_by: u.created_by.clone(),
        disabled_at: u.disabled_at,
        confirmed_by: u.confirmed_by.clone(),
    })
}

fn clean_roles(roles: &[Role]) -> Result<Vec<Role>, ServerError> {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(ServerError::BadRequest("a user needs at least one role".into()));
    }
    if roles.contains(&Role::Service) && roles.len() > 1 {
        return Err(ServerError::BadRequest(
            "a service account (a pipeline) holds the service role alone: no person's role goes with it".into(),
        ));
    }
    Ok(roles)
}

fn clean_groups(groups: &[String]) -> Result<Vec<String>, ServerError> {
    let mut groups = groups.to_vec();
    for g in &groups {
        check_name("group", g).map_err(ServerError::BadRequest)?;
    }
    groups.sort();
    groups.dedup();
    Ok(groups)
}

async fn user_named(state: &crate::ServerState, name: &str) -> Result<UserDetailRow, ServerError> {
    state.db.user_named(name).await?.ok_or_else(|| ServerError::NotFound(format!("no user named {name:?}")))
}

pub async fn add_user(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddUserRequest>,
) -> ApiResult<AddUserResponse> {
    caller.require(Role::Admin)?;
    check_name("user", &req.name).map_err(ServerError::BadRequest)?;
    let roles = clean_roles(&req.roles)?;
    let groups = clean_groups(&req.groups)?;
    let now = state.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    // An account that could approve, made by an admin who could request, would be that admin's
    // puppet: its code goes to a second admin who confirms it (see `confirm_user`). The
    // standalone owner keeps the code: what they create never counts on their own requests
    // unless confirmed independently (see `crate::duties`), and they are the installation.
    let owner = state.db.setting(&state.rows, crate::store::SETTING_STANDALONE_OWNER).await?;
    // A service account may be granted secrets without a human approval: whoever holds its
    // device holds them, so its code goes to a second admin too, whoever creates it.
    let puppet = (could_approve(&roles) && caller.has(Role::Requester)) || roles.contains(&Role::Service);
    let withheld = puppet && owner.as_deref() != Some(caller.user_id.as_str());
    let mut tx = state.db.begin().await?;
    let group_ids = Store::group_ids(&mut tx, &groups).await?;
    Store::insert_user(&mut tx, &id, &req.name, &roles_to_string(&roles), now).await?;
    Store::set_created_by(&mut tx, &id, &caller.user_id).await?;
    Store::set_user_groups(&mut tx, &id, &group_ids).await?;
    state.rows.seal(&mut tx, Row::User(&id)).await?;
    Store::record_user_change(&mut tx, &state.rows, &id, &caller.user_id, now, "created").await?;
    let code = if withheld {
        None
    } else {
        Some(super::issue_enrolment_code(&mut tx, &state.rows, &id, &state.tls.fingerprint, now).await?)
    };
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "user_added",
            serde_json::json!({ "user": req.name, "roles": roles_to_string(&roles), "groups": groups,
            "code_withheld": withheld }),
        )
        .await?;
    tx.commit().await?;
    let confirmation = withheld.then(|| {
        let why = if roles.contains(&Role::Service) {
            "is a service account (policies may grant it secrets without an approval)".to_string()
        } else {
            "can approve and you can request".to_string()
        };
        format!(
            "{} {why}, so the enrolment code goes to a second admin: they run \
             `portcullis user confirm {}` and hand the code over (in a one-admin installation you can run it \
             yourself 24 hours from now; that is recorded as an alarm)",
            req.name, req.name
        )
    });
    Ok(Json(AddUserResponse {
        user_id: id,
        name: req.name,
        roles,
        enrolment_code: code,
        code_expires_at: now + portcullis_proto::ENROLMENT_CODE_TTL_SECS,
        confirmation,
    }))
}

/// How `caller` may confirm something `creator` made at `made_at` (an account, a gateway): as
/// a second admin when they are not its creator; as its creator only when no other admin is
/// active (`subject`, the account being confirmed, does not count) and 24 hours have passed.
pub(crate) async fn confirmation_via(
    state: &crate::ServerState,
    caller: &Caller,
    creator: Option<&str>,
    subject: Option<&str>,
    made_at: i64,
    what: &str,
) -> Result<crate::duties::ConfirmedVia, ServerError> {
    if creator != Some(caller.user_id.as_str()) {
        return Ok(crate::duties::ConfirmedVia::SecondAdmin);
    }
    let other_admins = state
        .db
        .active_users()
        .await?
        .into_iter()
        .filter(|(id, roles)| {
            *id != caller.user_id
                && Some(id.as_str()) != subject
                && roles_from_string(roles).map(|r| r.contains(&Role::Admin)).unwrap_or(false)
        })
        .count();
    if other_admins > 0 {
        return Err(ServerError::Refused(
            "second_admin_needed",
            format!("you created {what}, so another admin must confirm it"),
        ));
    }
    let now = state.clock.now();
    let ready_at = made_at + crate::duties::SINGLE_ADMIN_CONFIRM_DELAY_SECS;
    if now < ready_at {
        return Err(ServerError::Refused(
            "confirmation_delay",
            format!(
                "you are the only admin and created {what}: you can confirm it yourself {} from now (24 hours \
                 after creating it; recorded as an alarm), or a second admin can confirm it at once",
                portcullis_policy::human_duration((ready_at - now) as u64)
            ),
        ));
    }
    Ok(crate::duties::ConfirmedVia::Delay)
}

/// Roles that judge or grant others' access.
fn could_approve(roles: &[Role]) -> bool {
    roles.contains(&Role::Approver) || roles.contains(&Role::Admin)
}

/// A second admin vouches for an account they did not create: they receive a fresh enrolment
/// code (earlier ones are void) and from then on the account's reviews count even on requests
/// of the admin who created it. In a one-admin installation the creator may do it alone once
/// 24 hours have passed since the account was made, which raises an alarm.
pub async fn confirm_user(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<ConfirmUserResponse> {
    caller.require(Role::Admin)?;
    let user = user_named(&state, &name).await?;
    let mut conn = state.db.conn().await?;
    state.rows.check(&mut conn, Row::User(&user.id)).await?;
    drop(conn);
    let refused = |code: &'static str, m: String| Err(ServerError::Refused(code, m));
    if user.disabled_at.is_some() {
        return refused("user_disabled", format!("{name} is disabled"));
    }
    if user.id == caller.user_id {
        return refused("self_confirmation", "you cannot confirm your own account".into());
    }
    if state.db.lineage_facts(&user.id).await?.and_then(|(_, _, c)| c).is_some() {
        return Err(ServerError::Conflict(format!("{name} is already confirmed")));
    }
    if state.db.live_devices_of(&user.id).await? > 0 {
        return refused(
            "already_enrolled",
            format!(
                "{name} already enrolled a device with the code their creator received; a confirmation hands a new \
                 code to the person you vouch for — revoke {name}'s devices first"
            ),
        );
    }
    let now = state.clock.now();
    let creator_id = state.db.lineage_facts(&user.id).await?.and_then(|(_, by, _)| by);
    let via = confirmation_via(
        &state,
        &caller,
        creator_id.as_deref(),
        Some(&user.id),
        user.created_at,
        &format!("{name}'s account"),
    )
    .await?;
    let mut tx = state.db.begin().await?;
    Store::void_enrolment_codes(&mut tx, &state.rows, &user.id, now).await?;
    Store::insert_confirmation(&mut tx, &user.id, &caller.user_id, via.as_str(), now).await?;
    state.rows.seal(&mut tx, Row::Confirmation(&user.id)).await?;
    let code = super::issue_enrolment_code(&mut tx, &state.rows, &user.id, &state.tls.fingerprint, now).await?;
    let kind = match via {
        crate::duties::ConfirmedVia::SecondAdmin => "user_confirmed",
        crate::duties::ConfirmedVia::Delay => "user_confirmed_alone",
    };
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            kind,
            serde_json::json!({ "user": name, "via": via.as_str(), "roles": user.roles }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(ConfirmUserResponse {
        name,
        enrolment_code: code,
        code_expires_at: now + portcullis_proto::ENROLMENT_CODE_TTL_SECS,
        via: via.as_str().into(),
    }))
}

pub async fn list_users(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<UserView>> {
    if !caller.has(Role::Admin) && !caller.has(Role::Auditor) {
        caller.require(Role::Admin)?;
    }
    Ok(Json(state.db.users().await?.iter().map(user_view).collect::<Result<_, _>>()?))
}

/// Revokes a holder's live grants and withdraws their pending requests (one user, or one of
/// their devices), tells the gateways and closes the holder's live streams.
async fn end_access(
    tx: &mut crate::store::Tx<'_>,
    rows: &crate::rows::RowKey,
    user_id: &str,
    device_id: Option<&str>,
    actor_id: &str,
    reason: &str,
    now: i64,
) -> Result<AccessChangeOutcome, ServerError> {
    let grants = Store::revoke_live_grants_of(tx, rows, user_id, device_id, now, actor_id, reason).await?;
    let withdrawn = Store::revoke_pending_requests_of(tx, user_id, device_id, now, actor_id, reason).await?;
    Ok(AccessChangeOutcome { grants_revoked: grants.len() as u32, requests_withdrawn: withdrawn as u32 })
}

/// After the transaction that ended access committed: wake the gateways, close the streams.
async fn announce_access_ended(state: &crate::ServerState, user_id: &str, device_id: Option<&str>) {
    state.revocations.notify_waiters();
    state.live.close_streams(user_id, device_id).await;
}

pub async fn set_roles(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<SetRolesRequest>,
) -> ApiResult<AccessChangeOutcome> {
    caller.require(Role::Admin)?;
    let user = user_named(&state, &name).await?;
    let roles = clean_roles(&req.roles)?;
    let before = roles_from_string(&user.roles).map_err(ServerError::Internal)?;
    if roles.contains(&Role::Service) && !before.contains(&Role::Service) {
        return Err(ServerError::Refused(
            "service_account",
            "an account becomes a service account only when it is made as one (`portcullis user add NAME --role \
             service`): a person's account, or its devices, must never be granted secrets without an approval"
                .into(),
        ));
    }
    if user.id == caller.user_id && before.contains(&Role::Admin) && !roles.contains(&Role::Admin) {
        return Err(ServerError::Refused(
            "last_admin_guard",
            "you cannot remove your own admin role; ask another admin".into(),
        ));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    Store::set_user_roles(&mut tx, &user.id, &roles_to_string(&roles)).await?;
    state.rows.seal(&mut tx, Row::User(&user.id)).await?;
    Store::record_user_change(&mut tx, &state.rows, &user.id, &caller.user_id, now, "roles").await?;
    let removed: Vec<Role> = before.iter().copied().filter(|r| !roles.contains(r)).collect();
    let outcome = if removed.contains(&Role::Requester) {
        end_access(&mut tx, &state.rows, &user.id, None, &caller.user_id, "requester role removed", now).await?
    } else {
        AccessChangeOutcome { grants_revoked: 0, requests_withdrawn: 0 }
    };
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "user_roles_changed",
            serde_json::json!({ "user": user.name, "before": user.roles, "after": roles_to_string(&roles),
            "grants_revoked": outcome.grants_revoked }),
        )
        .await?;
    tx.commit().await?;
    // Any role change closes the user's live streams: they reconnect with what they may see now.
    announce_access_ended(&state, &user.id, None).await;
    Ok(Json(outcome))
}

pub async fn set_groups(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<SetGroupsRequest>,
) -> ApiResult<UserView> {
    caller.require(Role::Admin)?;
    let user = user_named(&state, &name).await?;
    let groups = clean_groups(&req.groups)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let ids = Store::group_ids(&mut tx, &groups).await?;
    Store::set_user_groups(&mut tx, &user.id, &ids).await?;
    state.rows.seal(&mut tx, Row::User(&user.id)).await?;
    Store::record_user_change(&mut tx, &state.rows, &user.id, &caller.user_id, now, "groups").await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "user_groups_changed",
            serde_json::json!({ "user": user.name, "before": names(&user.groups), "after": groups }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(user_view(&user_named(&state, &name).await?)?))
}

pub async fn disable_user(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<AccessChangeOutcome> {
    caller.require(Role::Admin)?;
    let user = user_named(&state, &name).await?;
    if user.id == caller.user_id {
        return Err(ServerError::Refused("self_disable", "you cannot disable yourself; ask another admin".into()));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if !Store::disable_user(&mut tx, &user.id, now).await? {
        return Err(ServerError::Conflict(format!("{name} is already disabled")));
    }
    state.rows.seal(&mut tx, Row::User(&user.id)).await?;
    let outcome = end_access(&mut tx, &state.rows, &user.id, None, &caller.user_id, "user disabled", now).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "user_disabled",
            serde_json::json!({ "user": user.name, "grants_revoked": outcome.grants_revoked,
            "requests_withdrawn": outcome.requests_withdrawn }),
        )
        .await?;
    tx.commit().await?;
    announce_access_ended(&state, &user.id, None).await;
    Ok(Json(outcome))
}

pub async fn list_groups(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<GroupView>> {
    if !caller.has(Role::Admin) && !caller.has(Role::Auditor) {
        caller.require(Role::Admin)?;
    }
    Ok(Json(
        state
            .db
            .groups()
            .await?
            .into_iter()
            .map(|g| GroupView { name: g.name, members: names(&g.members), created_at: g.created_at })
            .collect(),
    ))
}

pub async fn add_group(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddGroupRequest>,
) -> ApiResult<GroupView> {
    caller.require(Role::Admin)?;
    check_name("group", &req.name).map_err(ServerError::BadRequest)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    Store::insert_group(&mut tx, &req.name, now, &caller.user_id).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "group_added",
            serde_json::json!({ "group": req.name }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(GroupView { name: req.name, members: Vec::new(), created_at: now }))
}

pub async fn list_devices(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<DeviceView>> {
    let only = if caller.has(Role::Admin) || caller.has(Role::Auditor) { None } else { Some(caller.user_id.as_str()) };
    Ok(Json(
        state
            .db
            .devices(only)
            .await?
            .into_iter()
            .map(|d| DeviceView {
                id: d.id,
                user: d.user_name,
                name: d.name,
                created_at: d.created_at,
                revoked_at: d.revoked_at,
            })
            .collect(),
    ))
}

/// Admins revoke any device; a user their own (a lost laptop).
pub async fn revoke_device(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<AccessChangeOutcome> {
    let device = state
        .db
        .devices(None)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ServerError::NotFound(format!("no device with id {id}")))?;
    if device.user_id != caller.user_id && !caller.has(Role::Admin) {
        return Err(ServerError::Forbidden(format!("{} can revoke only their own devices", caller.user_name)));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if !Store::revoke_device(&mut tx, &id, now).await? {
        return Err(ServerError::Conflict(format!("device {id} is already revoked")));
    }
    state.rows.seal(&mut tx, Row::Device(&id)).await?;
    let outcome =
        end_access(&mut tx, &state.rows, &device.user_id, Some(&id), &caller.user_id, "device revoked", now).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "device_revoked",
            serde_json::json!({ "device": id, "device_name": device.name, "user": device.user_name,
            "grants_revoked": outcome.grants_revoked }),
        )
        .await?;
    tx.commit().await?;
    announce_access_ended(&state, &device.user_id, Some(&id)).await;
    Ok(Json(outcome))
}

// ---- policies ----

fn problems(e: &PolicyError) -> Vec<PolicyProblem> {
    match e {
        PolicyError::Invalid(problems) => problems
            .iter()
            .map(|p| PolicyProblem { line: p.line, column: p.column, message: p.message.clone() })
            .collect(),
        PolicyError::Facts(message) => vec![PolicyProblem { line: None, column: None, message: message.clone() }],
    }
}

fn compile(text: &str) -> Result<PolicySet, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::Invalid(vec![portcullis_policy::Problem {
            line: None,
            column: None,
            message: format!("the policy text is larger than {} KiB", MAX_POLICY_BYTES / 1024),
        }]));
    }
    PolicySet::compile(text)
}

fn can_read_policy(caller: &Caller) -> Result<(), ServerError> {
    if caller.has(Role::Admin) || caller.has(Role::Auditor) || caller.has(Role::Approver) {
        Ok(())
    } else {
        caller.require(Role::Admin)
    }
}

pub async fn show_policy(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<PolicyView> {
    can_read_policy(&caller)?;
    let row = state.db.current_policy().await?.ok_or_else(|| ServerError::Internal("no policy stored".into()))?;
    let policies = compile(&row.text).map(|s| s.len() as u32).unwrap_or(0);
    Ok(Json(PolicyView {
        version: row.version,
        text: row.text,
        created_at: row.created_at,
        created_by: row.created_by,
        policies,
    }))
}

pub async fn check_policy(Extension(caller): Extension<Caller>, Json(req): Json<PolicyText>) -> ApiResult<PolicyCheck> {
    caller.require(Role::Admin)?;
    Ok(Json(match compile(&req.text) {
        Ok(set) => PolicyCheck { valid: true, problems: Vec::new(), policies: set.len() as u32 },
        Err(e) => PolicyCheck { valid: false, problems: problems(&e), policies: 0 },
    }))
}

/// Stores a new policy set if it compiles; a refused one leaves the current set in force.
pub async fn set_policy(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<PolicyText>,
) -> ApiResult<PolicyView> {
    caller.require(Role::Admin)?;
    let set = compile(&req.text).map_err(|e| {
        ServerError::Refused(
            "policy_invalid",
            format!(
                "the policy set was refused (the one in force is unchanged):\n{}",
                problems(&e).iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
            ),
        )
    })?;
    let now = state.clock.now();
    let before = state.policies.in_force(&state.db, &state.rows).await?.version;
    let mut tx = state.db.begin().await?;
    let version = Store::insert_policy(&mut tx, &req.text, now, Some(&caller.user_id)).await?;
    state.rows.seal(&mut tx, Row::Policy(version)).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "policy_changed",
            serde_json::json!({ "version": version, "previous": before, "policies": set.len(),
            "sha256": portcullis_crypto::sha256_hex(req.text.as_bytes()) }),
        )
        .await?;
    tx.commit().await?;
    let count = set.len() as u32;
    state.policies.replace(version, set);
    Ok(Json(PolicyView {
        version,
        text: req.text,
        created_at: now,
        created_by: Some(caller.user_name),
        policies: count,
    }))
}

/// What-if: what would the policies (in force, or a draft) decide for this user and target?
pub async fn test_policy(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    crate::client_addr::ClientAddr(client): crate::client_addr::ClientAddr,
    Json(req): Json<PolicyTestRequest>,
) -> ApiResult<PolicyTestResult> {
    caller.require(Role::Admin)?;
    let user = user_named(&state, &req.user).await?;
    let target = super::access::target_named(&state, &req.target).await?;
    let at = match req.at.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(at) => at.parse::<jiff::Timestamp>().map_err(|e| {
            ServerError::BadRequest(format!("--at {at:?} is not an RFC 3339 time (2026-11-30T09:30:00Z): {e}"))
        })?,
        None => timestamp(state.clock.now()),
    };
    let source_ip = match req.source_ip.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(ip) => ip.parse().map_err(|_| ServerError::BadRequest(format!("--from {ip:?} is not an IP address")))?,
        None => client,
    };
    if req.duration_secs == 0 {
        return Err(ServerError::BadRequest("the duration must be at least one second".into()));
    }
    let draft;
    let loaded = state.policies.in_force(&state.db, &state.rows).await?;
    let set = match req.text.as_deref() {
        Some(text) => {
            draft = compile(text).map_err(|e| {
                ServerError::Refused(
                    "policy_invalid",
                    problems(&e).iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"),
                )
            })?;
            &draft
        }
        None => loaded.usable()?,
    };
    let decision = set
        .decide_request(&RequestQuery {
            user: &person(&user),
            target: &target_facts(&target),
            access: portcullis_policy::Access::Ssh,
            duration_secs: req.duration_secs,
            source_ip,
            at,
            time_zone: state.policies.time_zone.clone(),
        })
        .map_err(|e| ServerError::Refused("policy_error", e.to_string()))?;
    Ok(Json(PolicyTestResult {
        summary: decision.summary(),
        allowed: decision.allowed,
        policies: decision.policies,
        approvals: decision.approvals,
        approver_groups: decision.approver_groups,
        why: decision.why,
        at: at.to_zoned(state.policies.time_zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z (%A)").to_string(),
        source_ip: source_ip.to_string(),
        time_zone: state.policies.time_zone_name.clone(),
    }))
}
