//! Releasing a secret's value to the device that holds a grant for it: check-out (shown to a
//! person; exclusive; every reveal and copy an audit event in the transaction that releases
//! it) and use (injected into a process by `portcullis run`; the command and how it ended are
//! recorded). A value leaves only sealed to the caller's device key, bound to the release's id.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use portcullis_crypto::OsRng;
use portcullis_crypto::identity::seal_to;
use portcullis_proto::{Access, check_free_text};
use portcullis_vault::SecretKind;
use portcullis_vault::wire::{
    CheckinOutcome, CheckoutRequest, INFO_SECRET_RELEASE, Released, RevealPurpose, UseEnded, UseRequest, encode_fields,
};

use super::access::{no_grant, requestable_secret, verified_claims};
use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::store::{CheckoutRow, SecretRow, Store, Tx};

/// The caller's live grant for `access` to `secret`, its claims checked.
async fn grant_for(
    state: &crate::ServerState,
    caller: &Caller,
    secret: &SecretRow,
    access: Access,
    now: i64,
) -> Result<portcullis_proto::GrantClaims, ServerError> {
    let Some(grant) =
        state.db.active_secret_grant(&caller.user_id, &caller.device_id, &secret.id, access.as_str(), now).await?
    else {
        return Err(no_grant(state, caller, &secret.id, &secret.name, access, now).await);
    };
    verified_claims(state, caller, &grant, &secret.id, &secret.name, access, now).await
}

fn rotating(secret: &SecretRow) -> ServerError {
    ServerError::Refused(
        "rotating",
        format!(
            "secret {} is being rotated on {} (its last check-out ended); ask again in a few seconds",
            secret.name,
            secret.target_name.as_deref().unwrap_or("its target")
        ),
    )
}

/// The current value of `secret`, sealed to the caller's device for release `id` — refused
/// while a rotation of it is pending: that value is about to stop working on its target.
async fn sealed_value(
    state: &crate::ServerState,
    tx: &mut Tx<'_>,
    caller: &Caller,
    secret: &SecretRow,
    id: &str,
) -> Result<portcullis_proto::Sealed, ServerError> {
    if Store::pending_rotation_in(tx, &secret.id).await?.is_some() {
        return Err(rotating(secret));
    }
    let kind = SecretKind::parse(&secret.kind).map_err(ServerError::Internal)?;
    let envelope = Store::secret_envelope(tx, &secret.id, secret.current_version)
        .await?
        .ok_or_else(|| ServerError::Internal(format!("the current version of {} has no value", secret.name)))?;
    let value = portcullis_vault::open(&state.root_key, &envelope, &secret.id, secret.current_version, kind)?;
    let plain = encode_fields(value.fields());
    Ok(seal_to(&caller.seal_public_key, plain.expose_secret(), INFO_SECRET_RELEASE, id.as_bytes(), &mut OsRng)?)
}

/// Ends `open` if its grant no longer holds (expired or revoked): it no longer bars others.
/// Whether it was ended.
async fn end_if_lapsed(
    state: &crate::ServerState,
    tx: &mut Tx<'_>,
    open: &CheckoutRow,
    secret: &SecretRow,
    now: i64,
) -> Result<bool, ServerError> {
    let why = if open.grant_revoked_at.is_some() {
        "revoked"
    } else if now >= open.until {
        "grant_ended"
    } else {
        return Ok(false);
    };
    Store::end_checkout(tx, &state.rows, &open.id, now, why).await?;
    let rotation = super::rotation::start(state, tx, secret, why, &open.user_id, now).await?;
    state
        .record_event(
            tx,
            now,
            None,
            None,
            "secret_checked_in",
            serde_json::json!({ "secret": secret.name, "checkout": open.id, "holder": open.holder, "ended_by": why,
                "version": open.version, "rotation": rotation }),
        )
        .await?;
    Ok(true)
}

/// Ends the check-outs whose grant ran out or was revoked (each rotated if it is a bound
/// password): the server's background duty, so a revealed password does not outlive its
/// grant on the target. How many ended.
pub async fn end_lapsed_checkouts(state: &crate::ServerState) -> Result<usize, ServerError> {
    let now = state.clock.now();
    let mut ended = 0;
    for open in state.db.lapsed_checkouts(now, 100).await? {
        let mut tx = state.db.begin().await?;
        // Decided again inside the transaction: another replica may have ended it.
        let Some(current) = Store::open_checkout_in(&mut tx, &open.secret_id).await? else { continue };
        if current.id != open.id {
            continue;
        }
        state.rows.check(&mut tx, crate::rows::Row::Checkout(&current.id)).await?;
        let Some(secret) = Store::secret_by_id_in(&mut tx, &current.secret_id).await? else { continue };
        state.rows.check(&mut tx, crate::rows::Row::Secret(&secret.id)).await?;
        if end_if_lapsed(state, &mut tx, &current, &secret, now).await? {
            tx.commit().await?;
            ended += 1;
        }
    }
    if ended > 0 {
        state.rotations.notify_one();
    }
    Ok(ended)
}

pub async fn checkout(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<CheckoutRequest>,
) -> ApiResult<Released> {
    if !matches!(req.to.as_str(), "terminal" | "pipe" | "desktop") {
        return Err(ServerError::BadRequest("`to` is terminal, pipe or desktop".into()));
    }
    let secret = requestable_secret(&state, &name).await?;
    if secret.revealable == 0 {
        return Err(ServerError::Refused(
            "not_revealable",
            format!("secret {name} is never revealed to a person; a process may use it (portcullis run)"),
        ));
    }
    let now = state.clock.now();
    let claims = grant_for(&state, &caller, &secret, Access::Checkout, now).await?;
    let mut tx = state.db.begin().await?;
    // Decided inside the write transaction: two check-outs racing cannot both be the one.
    let open = Store::open_checkout_in(&mut tx, &secret.id).await?;
    let current = match open {
        Some(open) => {
            state.rows.check(&mut tx, crate::rows::Row::Checkout(&open.id)).await?;
            if end_if_lapsed(&state, &mut tx, &open, &secret, now).await? {
                // Its end started a rotation: that stands, and this check-out waits for it.
                if Store::pending_rotation_in(&mut tx, &secret.id).await?.is_some() {
                    tx.commit().await?;
                    state.rotations.notify_one();
                    return Err(rotating(&secret));
                }
                None
            } else if open.grant_id == claims.grant_id {
                Some(open)
            } else {
                let until = super::access::clock_time(open.until, &state);
                return Err(ServerError::Refused(
                    "checked_out",
                    format!(
                        "secret {name} is checked out by {} until {until} (exclusive); it is yours to check out when \
                         they check it in or their access ends",
                        open.holder
                    ),
                ));
            }
        }
        None => None,
    };
    let (id, fresh) = match current {
        Some(open) => (open.id, false),
        None => {
            let row = CheckoutRow {
                id: uuid::Uuid::new_v4().to_string(),
                secret_id: secret.id.clone(),
                grant_id: claims.grant_id.clone(),
                user_id: caller.user_id.clone(),
                device_id: caller.device_id.clone(),
                version: secret.current_version,
                checked_out_at: now,
                until: claims.not_after,
                checked_in_at: None,
                ended_by: None,
                holder: caller.user_name.clone(),
                grant_revoked_at: None,
            };
            Store::insert_checkout(&mut tx, &state.rows, &row).await?;
            (row.id, true)
        }
    };
    let value = sealed_value(&state, &mut tx, &caller, &secret, &id).await?;
    let purpose = match req.purpose {
        RevealPurpose::Reveal => "secret_revealed",
        RevealPurpose::Copy => "secret_copied",
    };
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            purpose,
            serde_json::json!({ "secret": secret.name, "version": secret.current_version, "checkout": id,
                "first": fresh, "to": req.to, "grant": claims.grant_id }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(Released {
        id,
        secret: secret.name,
        kind: SecretKind::parse(&secret.kind).map_err(ServerError::Internal)?,
        version: secret.current_version,
        until: claims.not_after,
        value,
    }))
}

pub async fn checkin(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<CheckinOutcome> {
    let secret = requestable_secret(&state, &name).await?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let Some(open) = Store::open_checkout_in(&mut tx, &secret.id).await? else {
        return Err(ServerError::Conflict(format!("secret {name} is not checked out")));
    };
    state.rows.check(&mut tx, crate::rows::Row::Checkout(&open.id)).await?;
    if open.user_id != caller.user_id {
        return Err(ServerError::Refused(
            "not_holder",
            format!(
                "secret {name} is checked out by {}; only they check it in (revoking their access ends it too)",
                open.holder
            ),
        ));
    }
    Store::end_checkout(&mut tx, &state.rows, &open.id, now, "checkin").await?;
    state.rows.check(&mut tx, crate::rows::Row::Secret(&secret.id)).await?;
    let rotation = super::rotation::start(&state, &mut tx, &secret, "checkin", &caller.user_id, now).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "secret_checked_in",
            serde_json::json!({ "secret": secret.name, "checkout": open.id, "holder": open.holder, "ended_by": "checkin",
                "version": open.version, "rotation": rotation }),
        )
        .await?;
    tx.commit().await?;
    if rotation.is_some() {
        state.rotations.notify_one();
    }
    Ok(Json(CheckinOutcome { secret: secret.name, version: secret.current_version, rotation }))
}

pub async fn use_secret(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<UseRequest>,
) -> ApiResult<Released> {
    let command = check_free_text("command", &req.command, 4096).map_err(ServerError::BadRequest)?;
    let secret = requestable_secret(&state, &name).await?;
    let now = state.clock.now();
    let claims = grant_for(&state, &caller, &secret, Access::Use, now).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = state.db.begin().await?;
    let value = sealed_value(&state, &mut tx, &caller, &secret, &id).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "secret_used",
            serde_json::json!({ "secret": secret.name, "version": secret.current_version, "use": id,
                "command": command, "grant": claims.grant_id }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(Released {
        id,
        secret: secret.name,
        kind: SecretKind::parse(&secret.kind).map_err(ServerError::Internal)?,
        version: secret.current_version,
        until: claims.not_after,
        value,
    }))
}

/// How the process a value went to ended (what `portcullis run` reports after the child exits).
pub async fn used(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<UseEnded>,
) -> ApiResult<serde_json::Value> {
    uuid::Uuid::parse_str(&req.id).map_err(|_| ServerError::BadRequest("id is not a use id".into()))?;
    let signal = match req.signal.as_deref() {
        Some(s) => Some(check_free_text("signal", s, 32).map_err(ServerError::BadRequest)?),
        None => None,
    };
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "secret_use_ended",
            serde_json::json!({ "secret": name, "use": req.id, "exit_status": req.exit_status, "signal": signal }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}
