//! Rotation of bound passwords: a password secret bound to an SSH target is that target's
//! credential. When its check-out ends (check-in, revocation, the grant running out) or an admin
//! asks, the server generates a new password and seals it as the candidate for the next version;
//! the target's gateway sets it on the target and logs in afresh with it; only then does the
//! candidate become the current version. A failure keeps the current version and is an alarm.
//!
//! Nobody sees the new password: it leaves the server only sealed to the gateway's key (or in
//! memory to the embedded gateway).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use portcullis_crypto::identity::seal_to;
use portcullis_crypto::{OsRng, SecretBytes};
use portcullis_proto::{
    INFO_GATEWAY_ROTATION, Role, RotationOrder, RotationReport, RotationStage, RotationTicket, RotationTickets,
};
use portcullis_vault::wire::{RemoveSecretRequest, RotationView};
use portcullis_vault::{SecretKind, SecretValue};

use super::{ApiResult, AppState};
use crate::auth::{Caller, GatewayCaller};
use crate::rows::Row;
use crate::store::{RotationRow, SecretRow, Store, Tx};
use crate::{ServerError, ServerState};

/// Rotations handed to a gateway per ask.
const ORDERS_PER_ASK: i64 = 16;

/// Whether `secret` is rotated when its check-out ends: a password bound to a target.
pub(crate) fn rotates(secret: &SecretRow) -> bool {
    secret.target_id.is_some() && secret.kind == SecretKind::Password.as_str() && secret.removed_at.is_none()
}

/// Starts a rotation of `secret` (when it [`rotates`]) in the caller's transaction: a fresh
/// password over the current version's other fields, sealed as the next version. `by`: whose
/// check-in (or which admin) it follows. The id, or `None` when the secret does not rotate or
/// a rotation is already pending (that one will do).
pub(crate) async fn start(
    state: &ServerState,
    tx: &mut Tx<'_>,
    secret: &SecretRow,
    reason: &str,
    by: &str,
    now: i64,
) -> Result<Option<String>, ServerError> {
    let Some(target_id) = secret.target_id.clone().filter(|_| rotates(secret)) else { return Ok(None) };
    let kind = SecretKind::Password;
    let envelope = Store::secret_envelope(tx, &secret.id, secret.current_version)
        .await?
        .ok_or_else(|| ServerError::Internal(format!("the current version of {} has no value", secret.name)))?;
    let current = portcullis_vault::open(&state.root_key, &envelope, &secret.id, secret.current_version, kind)?;
    let mut fields: Vec<(String, SecretBytes)> =
        current.fields().filter(|(n, _)| *n != "password").map(|(n, v)| (n.to_string(), v.clone())).collect();
    drop(current);
    fields.push(("password".into(), portcullis_vault::generate_password(&mut OsRng)));
    let (candidate, _) = SecretValue::parse(kind, fields)?;
    let sealed =
        portcullis_vault::seal(&state.root_key, &mut OsRng, &secret.id, secret.current_version + 1, &candidate)?;
    drop(candidate);
    let row = RotationRow {
        id: uuid::Uuid::new_v4().to_string(),
        secret_id: secret.id.clone(),
        target_id,
        from_version: secret.current_version,
        data_key: Some(sealed.wrapped_data_key),
        ciphertext: Some(sealed.ciphertext),
        reason: reason.to_string(),
        requested_by: by.to_string(),
        requested_by_name: String::new(),
        state: "pending".into(),
        stage: None,
        detail: None,
        created_at: now,
        finished_at: None,
        version: None,
    };
    if !Store::insert_rotation(tx, &state.rows, &row).await? {
        return Ok(None);
    }
    state
        .record_event(
            tx,
            now,
            Some(by),
            None,
            "secret_rotation_started",
            serde_json::json!({ "secret": secret.name, "target": secret.target_name, "rotation": row.id,
                "from_version": row.from_version, "reason": reason }),
        )
        .await?;
    Ok(Some(row.id))
}

/// After a check-out of `secret_id` ended (`why`): its rotation, if it is one that rotates.
pub(crate) async fn after_checkout(
    state: &ServerState,
    tx: &mut Tx<'_>,
    secret_id: &str,
    why: &str,
    holder: &str,
    now: i64,
) -> Result<Option<String>, ServerError> {
    let Some(secret) = Store::secret_by_id_in(tx, secret_id).await? else { return Ok(None) };
    state.rows.check(tx, Row::Secret(&secret.id)).await?;
    start(state, tx, &secret, why, holder, now).await
}

fn view(r: RotationRow) -> RotationView {
    RotationView {
        id: r.id,
        reason: r.reason,
        requested_by: r.requested_by_name,
        state: r.state,
        stage: r.stage,
        detail: r.detail,
        from_version: r.from_version,
        version: r.version,
        created_at: r.created_at,
        finished_at: r.finished_at,
    }
}

async fn bound_secret(state: &ServerState, name: &str) -> Result<SecretRow, ServerError> {
    let secret = state
        .db
        .secret_by_name(name)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no secret named {name:?}; see `portcullis secret list`")))?;
    state.check_row(Row::Secret(&secret.id)).await?;
    Ok(secret)
}

/// `POST /v1/secrets/{name}/rotate` (admins): rotate now. Nobody sees the new value.
pub async fn rotate_now(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<RemoveSecretRequest>,
) -> ApiResult<RotationView> {
    caller.require(Role::Admin)?;
    let reason = super::secrets::check_reason(&req.reason)?;
    let secret = bound_secret(&state, &name).await?;
    if !rotates(&secret) {
        return Err(ServerError::BadRequest(format!(
            "secret {name} is not a password bound to a target; only those are rotated (see `secret add --target`)"
        )));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let why = if reason.is_empty() { "admin".to_string() } else { format!("admin: {reason}") };
    let Some(id) = start(&state, &mut tx, &secret, &why, &caller.user_id, now).await? else {
        return Err(ServerError::Conflict(format!("a rotation of {name} is already pending")));
    };
    let row =
        Store::rotation_in(&mut tx, &id).await?.ok_or_else(|| ServerError::Internal("rotation vanished".into()))?;
    tx.commit().await?;
    state.rotations.notify_one();
    Ok(Json(view(row)))
}

/// `GET /v1/secrets/{name}/rotations`: its rotations, newest first (admins, approvers and
/// auditors see all; a requester those their check-ins started).
pub async fn list(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Vec<RotationView>> {
    let everyone = caller.roles.iter().any(|r| matches!(r, Role::Admin | Role::Approver | Role::Auditor));
    let secret = bound_secret(&state, &name).await?;
    let rows = state.db.rotations_of(&secret.id, 50).await?;
    // A requester sees the rotations their own check-ins started.
    Ok(Json(rows.into_iter().filter(|r| everyone || r.requested_by == caller.user_id).map(view).collect()))
}

/// The pending rotations of `gateway_id`'s targets, each with the current and the new password.
pub async fn orders(
    state: &ServerState,
    gateway_id: &str,
) -> Result<Vec<(RotationOrder, SecretBytes, SecretBytes)>, ServerError> {
    let mut out = Vec::new();
    for r in state.db.pending_rotations(gateway_id, ORDERS_PER_ASK).await? {
        state.check_row(Row::Rotation(&r.id)).await?;
        state.check_row(Row::Target(&r.target_id)).await?;
        let Some(target) = state.db.target(&r.target_id).await? else { continue };
        let Some(secret) = state.db.secret_by_id(&r.secret_id).await? else { continue };
        state.check_row(Row::Secret(&secret.id)).await?;
        let password = |value: SecretValue| -> Result<SecretBytes, ServerError> {
            value
                .field("password")
                .cloned()
                .ok_or_else(|| ServerError::Internal("a password secret without one".into()))
        };
        let envelope = state
            .db
            .current_secret_envelope(&secret.id, secret.current_version)
            .await?
            .ok_or_else(|| ServerError::Internal(format!("the current version of {} has no value", secret.name)))?;
        let kind = SecretKind::Password;
        let current =
            password(portcullis_vault::open(&state.root_key, &envelope, &secret.id, secret.current_version, kind)?)?;
        let (Some(wrapped_data_key), Some(ciphertext)) = (r.data_key.clone(), r.ciphertext.clone()) else { continue };
        let candidate_envelope = portcullis_crypto::envelope::Envelope { wrapped_data_key, ciphertext };
        let candidate = password(portcullis_vault::open(
            &state.root_key,
            &candidate_envelope,
            &secret.id,
            r.from_version + 1,
            kind,
        )?)?;
        out.push((
            RotationOrder {
                id: r.id,
                secret: secret.name,
                target: target.name,
                host: target.host,
                port: target.port as u16,
                login: target.login,
                host_key: target.host_key,
            },
            current,
            candidate,
        ));
    }
    Ok(out)
}

/// `POST /v1/gateway/rotations`: [`orders`], both passwords sealed to the calling gateway.
pub async fn gateway_orders(
    State(state): AppState,
    Extension(gateway): Extension<GatewayCaller>,
) -> ApiResult<RotationTickets> {
    let mut rotations = Vec::new();
    for (order, current, candidate) in orders(&state, &gateway.id).await? {
        let seal = |what: &str, value: &SecretBytes| {
            seal_to(
                &gateway.seal_public_key,
                value.expose_secret(),
                INFO_GATEWAY_ROTATION,
                format!("{what}/{}", order.id).as_bytes(),
                &mut OsRng,
            )
        };
        let current = seal("current", &current)?;
        let candidate = seal("candidate", &candidate)?;
        rotations.push(RotationTicket { order, current, candidate });
    }
    Ok(Json(RotationTickets { rotations }))
}

/// How rotation `id` went on the target, from the gateway that reaches it: commits the new
/// version, or keeps the current one and raises the alarm.
pub async fn reported(
    state: &ServerState,
    gateway_id: &str,
    id: &str,
    report: &RotationReport,
) -> Result<(), ServerError> {
    let detail = match report.failed {
        None => String::new(),
        // A failure is recorded whatever the gateway could say about it.
        Some(_) if report.detail.trim().is_empty() => "the gateway gave no detail".to_string(),
        Some(_) => {
            portcullis_proto::check_free_text("detail", &report.detail, 1000).map_err(ServerError::BadRequest)?
        }
    };
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let r = Store::rotation_in(&mut tx, id).await?.ok_or_else(|| ServerError::NotFound(format!("no rotation {id}")))?;
    state.rows.check(&mut tx, Row::Rotation(&r.id)).await?;
    let target = state.db.target(&r.target_id).await?.ok_or_else(|| ServerError::NotFound("target gone".into()))?;
    if target.gateway_id != gateway_id {
        return Err(ServerError::Forbidden(format!("target {} is not reached through this gateway", target.name)));
    }
    if r.state != "pending" {
        return Err(ServerError::Conflict(format!("rotation {id} already ended ({})", r.state)));
    }
    let mut secret = Store::secret_by_id_in(&mut tx, &r.secret_id)
        .await?
        .ok_or_else(|| ServerError::NotFound("secret gone".into()))?;
    state.rows.check(&mut tx, Row::Secret(&secret.id)).await?;
    let gateway = state.db.gateway(gateway_id).await?.map(|g| g.name).unwrap_or_default();
    match report.failed {
        None => {
            let (Some(wrapped_data_key), Some(ciphertext)) = (r.data_key.clone(), r.ciphertext.clone()) else {
                return Err(ServerError::Internal(format!("rotation {id} has no candidate")));
            };
            let sealed = portcullis_crypto::envelope::Envelope { wrapped_data_key, ciphertext };
            let kind = SecretKind::Password;
            let candidate = portcullis_vault::open(&state.root_key, &sealed, &secret.id, r.from_version + 1, kind)?;
            let (value, facts) =
                SecretValue::parse(kind, candidate.fields().map(|(n, v)| (n.to_string(), v.clone())).collect())?;
            drop(candidate);
            let version = secret.current_version + 1;
            // Changed meanwhile (an admin's edit): the candidate is what the target has now, so
            // it still becomes current, sealed for the version it gets.
            let sealed = if secret.current_version == r.from_version {
                sealed
            } else {
                portcullis_vault::seal(&state.root_key, &mut OsRng, &secret.id, version, &value)?
            };
            drop(value);
            let facts_text = serde_json::to_string(&facts).map_err(|e| ServerError::Internal(e.to_string()))?;
            let why = format!("rotated on {} by gateway {gateway} ({})", target.name, r.reason);
            Store::insert_secret_version(
                &mut tx,
                &secret.id,
                version,
                &sealed,
                &facts_text,
                &r.requested_by,
                now,
                &why,
                None,
            )
            .await?;
            secret.current_version = version;
            secret.facts = facts_text;
            secret.updated_by = r.requested_by.clone();
            secret.updated_at = now;
            let destroyed =
                Store::destroy_old_secret_versions(&mut tx, &secret.id, version, secret.versions_kept, now).await?;
            Store::update_secret(&mut tx, &state.rows, &secret).await?;
            Store::finish_rotation(&mut tx, &state.rows, id, "rotated", None, None, Some(version), false, now).await?;
            state
                .record_event(
                    &mut tx,
                    now,
                    None,
                    None,
                    "secret_rotated",
                    serde_json::json!({ "secret": secret.name, "target": target.name, "rotation": id,
                        "version": version, "gateway": gateway, "reason": r.reason, "versions_destroyed": destroyed }),
                )
                .await?;
        }
        Some(stage) => {
            // Only when the target may hold the new password is the candidate kept.
            let keep = stage == RotationStage::Verify;
            Store::finish_rotation(
                &mut tx,
                &state.rows,
                id,
                "failed",
                Some(stage.as_str()),
                Some(&detail),
                None,
                keep,
                now,
            )
            .await?;
            let consequence = if keep {
                "the target may hold the new password: the candidate is kept with the rotation; check the target"
            } else {
                "the target keeps the current password, which the vault keeps too"
            };
            state
                .record_event(
                    &mut tx,
                    now,
                    None,
                    None,
                    "secret_rotation_failed",
                    serde_json::json!({ "secret": secret.name, "target": target.name, "rotation": id,
                        "stage": stage.as_str(), "detail": detail, "gateway": gateway, "consequence": consequence,
                        "version": secret.current_version,
                        "message": format!("rotating {} on {} failed at {}: {detail}; {consequence}",
                            secret.name, target.name, stage.as_str()) }),
                )
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// `POST /v1/gateway/rotations/{id}`: [`reported`] by a remote gateway.
pub async fn gateway_report(
    State(state): AppState,
    Extension(gateway): Extension<GatewayCaller>,
    Path(id): Path<String>,
    Json(report): Json<RotationReport>,
) -> ApiResult<serde_json::Value> {
    reported(&state, &gateway.id, &id, &report).await?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}
