//! Security keys (WebAuthn) and step-up: register a key, list and remove one's own, and the
//! approval challenge a `@step_up("webauthn")` policy asks for. A challenge is bound to one
//! user and purpose — for approvals to one request and one decision — used once, and lapses
//! after two minutes.

use crate::rows::Row;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use portcullis_proto::{
    Decision, KeyChallenge, KeyRegistrationFinish, KeyRegistrationStart, KeyRemoval, LiveEvent, Role, SecurityKeyView,
    StepUpAssertion, StepUpEvidence, StepUpStart, check_name,
};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
};

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::store::{ChallengeRow, RequestRow, Store};
use crate::webauthn::CHALLENGE_TTL_SECS;

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approve",
        Decision::Deny => "deny",
    }
}

/// A credential id as base64url (how WebAuthn writes them).
fn credential_id_text(id: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn stored_passkey(json: &str) -> Result<Passkey, ServerError> {
    serde_json::from_str(json).map_err(|e| ServerError::Internal(format!("a stored security key is unreadable: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ServerError> {
    serde_json::to_value(value).map_err(|e| ServerError::Internal(e.to_string()))
}

/// A user id as the 16 bytes WebAuthn names users by.
fn user_handle(user_id: &str) -> uuid::Uuid {
    // User ids are UUIDs; anything else maps to a stable handle from its hash.
    uuid::Uuid::parse_str(user_id).unwrap_or_else(|_| {
        let digest = portcullis_crypto::sha256(user_id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Uuid::from_bytes(bytes)
    })
}

pub async fn start_registration(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<KeyRegistrationStart>,
) -> ApiResult<KeyChallenge> {
    check_name("security key", &req.name).map_err(ServerError::BadRequest)?;
    confirm_key_change(&state, &caller, req.step_up.as_ref(), "adding another security key", state.clock.now()).await?;
    let keys = state.db.security_keys(&caller.user_id).await?;
    if keys.iter().any(|k| k.name == req.name) {
        return Err(ServerError::Conflict(format!("you already have a security key named {:?}", req.name)));
    }
    let exclude =
        keys.iter().map(|k| stored_passkey(&k.passkey).map(|p| p.cred_id().clone())).collect::<Result<_, _>>()?;
    let rp = &state.relying_party;
    let (options, registration) = rp
        .webauthn
        .start_passkey_registration(user_handle(&caller.user_id), &caller.user_name, &caller.user_name, Some(exclude))
        .map_err(|e| ServerError::Internal(format!("starting a key registration: {e}")))?;
    let now = state.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let row = ChallengeRow {
        id: id.clone(),
        user_id: caller.user_id.clone(),
        purpose: "register".into(),
        request_id: None,
        decision: None,
        key_name: Some(req.name.clone()),
        state: serde_json::to_string(&registration).map_err(|e| ServerError::Internal(e.to_string()))?,
        created_at: now,
        expires_at: now + CHALLENGE_TTL_SECS,
        used_at: None,
    };
    state.db.insert_challenge(&state.rows, &row).await?;
    Ok(Json(KeyChallenge {
        challenge_id: id,
        rp_id: rp.rp_id.clone(),
        origin: rp.origin.clone(),
        options: to_json(&options)?,
        expires_at: row.expires_at,
    }))
}

/// Takes a challenge for use: it must be the caller's, for `purpose`, unexpired and unused;
/// it is used up whatever happens next.
async fn take_challenge(
    state: &crate::ServerState,
    caller: &Caller,
    id: &str,
    purpose: &str,
    now: i64,
) -> Result<ChallengeRow, ServerError> {
    let refused = |m: &str| ServerError::Refused("step_up_failed", m.to_string());
    let row = state.db.challenge(id).await?.ok_or_else(|| refused("unknown security-key challenge"))?;
    if row.user_id != caller.user_id || row.purpose != purpose {
        return Err(refused("this security-key challenge was issued to someone else or for something else"));
    }
    if !state.db.use_challenge(&state.rows, id, now).await? {
        return Err(refused("this security-key challenge was already used (a replayed answer)"));
    }
    if now >= row.expires_at {
        return Err(refused("this security-key challenge expired (they last two minutes); try again"));
    }
    Ok(row)
}

pub async fn finish_registration(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<KeyRegistrationFinish>,
) -> ApiResult<SecurityKeyView> {
    let now = state.clock.now();
    let row = take_challenge(&state, &caller, &req.challenge_id, "register", now).await?;
    let registration: PasskeyRegistration =
        serde_json::from_str(&row.state).map_err(|e| ServerError::Internal(e.to_string()))?;
    let credential: RegisterPublicKeyCredential = serde_json::from_value(req.credential)
        .map_err(|e| ServerError::BadRequest(format!("the security key's answer is malformed: {e}")))?;
    let passkey =
        state.relying_party.webauthn.finish_passkey_registration(&credential, &registration).map_err(|e| {
            ServerError::Refused("key_refused", format!("the security key's registration was refused: {e}"))
        })?;
    let name = row.key_name.clone().unwrap_or_else(|| "security key".into());
    let id = uuid::Uuid::new_v4().to_string();
    let credential_id = credential_id_text(passkey.cred_id());
    // One security key, one person: a key registered to several accounts would let whoever
    // holds it answer step-up for all of them (puppet approvers).
    if state.db.security_key_holder(&credential_id, &caller.user_id).await?.is_some() {
        return Err(ServerError::Refused(
            "key_in_use",
            "this security key is registered to another user; each person needs their own key".into(),
        ));
    }
    let json = serde_json::to_string(&passkey).map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut tx = state.db.begin().await?;
    Store::insert_security_key(&mut tx, &id, &caller.user_id, &name, &credential_id, &json, now).await?;
    state.rows.seal(&mut tx, Row::SecurityKey(&id)).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "security_key_added",
            serde_json::json!({ "key": name, "credential_id": credential_id }),
        )
        .await?;
    tx.commit().await?;
    state
        .live
        .tell_user(
            LiveEvent::SecurityKeysChanged { change: "added".into(), key: name.clone(), by: caller.user_name.clone() },
            &caller.user_id,
        )
        .await;
    Ok(Json(SecurityKeyView { id, name, created_at: now, last_used_at: None }))
}

pub async fn list(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<SecurityKeyView>> {
    Ok(Json(
        state
            .db
            .security_keys(&caller.user_id)
            .await?
            .into_iter()
            .map(|k| SecurityKeyView { id: k.id, name: k.name, created_at: k.created_at, last_used_at: k.last_used_at })
            .collect(),
    ))
}

/// Removes one of the caller's own keys (by id or name), confirmed with one of their keys.
pub async fn remove(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Option<Json<KeyRemoval>>,
) -> ApiResult<SecurityKeyView> {
    let keys = state.db.security_keys(&caller.user_id).await?;
    let found = keys
        .into_iter()
        .find(|k| k.id == key || k.name == key)
        .ok_or_else(|| ServerError::NotFound(format!("you have no security key {key:?}")))?;
    let now = state.clock.now();
    let step_up = body.and_then(|Json(b)| b.step_up);
    confirm_key_change(&state, &caller, step_up.as_ref(), "removing a security key", now).await?;
    remove_key(&state, &caller, &caller.user_id, &found, "security_key_removed", now).await
}

/// An admin removes another user's key (a lost one: its owner cannot confirm with it).
pub async fn remove_for_user(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<SecurityKeyView> {
    caller.require(Role::Admin)?;
    let user =
        state.db.user_named(&name).await?.ok_or_else(|| ServerError::NotFound(format!("no user named {name:?}")))?;
    if user.id == caller.user_id {
        return Err(ServerError::Refused(
            "self_key_removal",
            "remove your own keys with `portcullis key remove`, confirmed with one of them".into(),
        ));
    }
    let found = state
        .db
        .security_keys(&user.id)
        .await?
        .into_iter()
        .find(|k| k.id == key || k.name == key)
        .ok_or_else(|| ServerError::NotFound(format!("{name} has no security key {key:?}")))?;
    remove_key(&state, &caller, &user.id, &found, "security_key_removed_by_admin", state.clock.now()).await
}

async fn remove_key(
    state: &crate::ServerState,
    caller: &Caller,
    owner: &str,
    found: &crate::store::SecurityKeyRow,
    kind: &str,
    now: i64,
) -> ApiResult<SecurityKeyView> {
    let owner_name = state.db.user_by_id(owner).await?.map(|u| u.name).unwrap_or_default();
    let removed_by = caller.user_name.clone();
    let mut tx = state.db.begin().await?;
    Store::remove_security_key(&mut tx, &found.id, now).await?;
    state.rows.seal(&mut tx, Row::SecurityKey(&found.id)).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            kind,
            serde_json::json!({ "key": found.name, "user": owner_name }),
        )
        .await?;
    tx.commit().await?;
    state
        .live
        .tell_user(
            LiveEvent::SecurityKeysChanged { change: "removed".into(), key: found.name.clone(), by: removed_by },
            owner,
        )
        .await;
    let found = found.clone();
    Ok(Json(SecurityKeyView {
        id: found.id,
        name: found.name,
        created_at: found.created_at,
        last_used_at: found.last_used_at,
    }))
}

/// A step-up challenge for reviewing request `id` with `decision`.
pub async fn start_step_up(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<StepUpStart>,
) -> ApiResult<KeyChallenge> {
    if !caller.has(Role::Approver) {
        return Err(ServerError::Refused("not_approver", format!("{} is not an approver", caller.user_name)));
    }
    let request =
        state.db.request(&id).await?.ok_or_else(|| ServerError::NotFound(format!("no request with id {id}")))?;
    if request.user_id == caller.user_id {
        return Err(ServerError::Refused("self_approval", "you cannot review your own request".into()));
    }
    assertion_challenge(&state, &caller, "approve", Some(&request.id), Some(decision_name(req.decision))).await
}

/// `POST /v1/keys/step-up`: a challenge to confirm a change to one's own security keys with one
/// of them (adding another, removing one).
pub async fn start_manage_step_up(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
) -> ApiResult<KeyChallenge> {
    assertion_challenge(&state, &caller, MANAGE_KEYS, None, None).await
}

/// What confirms a change to a user's own keys.
const MANAGE_KEYS: &str = "manage_keys";

/// The caller's live keys, each row authenticated.
async fn own_keys(
    state: &crate::ServerState,
    caller: &Caller,
) -> Result<Vec<crate::store::SecurityKeyRow>, ServerError> {
    let keys = state.db.security_keys(&caller.user_id).await?;
    for key in &keys {
        state.rows.check(&mut state.db.conn().await?, Row::SecurityKey(&key.id)).await?;
    }
    Ok(keys)
}

/// A WebAuthn assertion challenge over the caller's keys, for `purpose` (and, for approvals,
/// one request and decision).
async fn assertion_challenge(
    state: &crate::ServerState,
    caller: &Caller,
    purpose: &str,
    request_id: Option<&str>,
    decision: Option<&str>,
) -> ApiResult<KeyChallenge> {
    let keys = own_keys(state, caller).await?;
    if keys.is_empty() {
        return Err(ServerError::Refused(
            "no_security_key",
            "this needs a security key and you have none registered; add one with `portcullis key add NAME`".into(),
        ));
    }
    let passkeys = keys.iter().map(|k| stored_passkey(&k.passkey)).collect::<Result<Vec<_>, _>>()?;
    let rp = &state.relying_party;
    let (options, authentication) = rp
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|e| ServerError::Internal(format!("starting a step-up: {e}")))?;
    let now = state.clock.now();
    let challenge_id = uuid::Uuid::new_v4().to_string();
    let row = ChallengeRow {
        id: challenge_id.clone(),
        user_id: caller.user_id.clone(),
        purpose: purpose.into(),
        request_id: request_id.map(str::to_string),
        decision: decision.map(str::to_string),
        key_name: None,
        state: serde_json::to_string(&authentication).map_err(|e| ServerError::Internal(e.to_string()))?,
        created_at: now,
        expires_at: now + CHALLENGE_TTL_SECS,
        used_at: None,
    };
    state.db.insert_challenge(&state.rows, &row).await?;
    Ok(Json(KeyChallenge {
        challenge_id,
        rp_id: rp.rp_id.clone(),
        origin: rp.origin.clone(),
        options: to_json(&options)?,
        expires_at: row.expires_at,
    }))
}

/// Checks an assertion for a challenge of `purpose` (`fits` checks what it was bound to) and
/// moves the key's counter on: the key that answered.
async fn check_assertion(
    state: &crate::ServerState,
    caller: &Caller,
    assertion: &StepUpAssertion,
    purpose: &str,
    fits: impl FnOnce(&ChallengeRow) -> Result<(), ServerError>,
    now: i64,
) -> Result<(crate::store::SecurityKeyRow, webauthn_rs::prelude::AuthenticationResult), ServerError> {
    let row = take_challenge(state, caller, &assertion.challenge_id, purpose, now).await?;
    fits(&row)?;
    let authentication: PasskeyAuthentication =
        serde_json::from_str(&row.state).map_err(|e| ServerError::Internal(e.to_string()))?;
    let credential: PublicKeyCredential = serde_json::from_value(assertion.credential.clone())
        .map_err(|e| ServerError::BadRequest(format!("the security key's answer is malformed: {e}")))?;
    let result =
        state.relying_party.webauthn.finish_passkey_authentication(&credential, &authentication).map_err(|e| {
            ServerError::Refused("step_up_failed", format!("the security key's answer was refused: {e}"))
        })?;
    let credential_id = credential_id_text(result.cred_id());
    let key = own_keys(state, caller)
        .await?
        .into_iter()
        .find(|k| k.credential_id == credential_id)
        .ok_or_else(|| ServerError::Refused("step_up_failed", "that security key is not one of yours".into()))?;
    let mut passkey = stored_passkey(&key.passkey)?;
    passkey.update_credential(&result);
    let json = serde_json::to_string(&passkey).map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut tx = state.db.begin().await?;
    Store::update_security_key(&mut tx, &key.id, &json, now).await?;
    state.rows.seal(&mut tx, Row::SecurityKey(&key.id)).await?;
    tx.commit().await?;
    Ok((key, result))
}

/// Once a user has a key, changing their keys takes an assertion from one of them: a stolen
/// device (its signing key) alone cannot register the thief's key, nor remove the owner's.
async fn confirm_key_change(
    state: &crate::ServerState,
    caller: &Caller,
    assertion: Option<&StepUpAssertion>,
    what: &str,
    now: i64,
) -> Result<(), ServerError> {
    if own_keys(state, caller).await?.is_empty() {
        return Ok(());
    }
    let Some(assertion) = assertion else {
        return Err(ServerError::Refused(
            "step_up_required",
            format!("{what} needs a security key you already have to confirm it (or an admin, for a lost key)"),
        ));
    };
    check_assertion(state, caller, assertion, MANAGE_KEYS, |_| Ok(()), now).await.map(|_| ())
}

/// Checks the step-up assertion of a review; the evidence (JSON of [`StepUpEvidence`]) is kept
/// with the review.
pub async fn verify_step_up(
    state: &crate::ServerState,
    caller: &Caller,
    request: &RequestRow,
    decision: Decision,
    assertion: Option<&StepUpAssertion>,
    policies: &[String],
    now: i64,
) -> Result<String, ServerError> {
    let Some(assertion) = assertion else {
        return Err(ServerError::Refused(
            "step_up_required",
            format!(
                "policy {} asks for a security key to confirm this review: `portcullis {} {} --authenticator usb` \
                 (or the desktop app) asks for it",
                policies.join(", "),
                decision_name(decision),
                request.id
            ),
        ));
    };
    let fits = |row: &ChallengeRow| {
        if row.request_id.as_deref() != Some(request.id.as_str())
            || row.decision.as_deref() != Some(decision_name(decision))
        {
            return Err(ServerError::Refused(
                "step_up_failed",
                "this security-key answer was given for another request or another decision".into(),
            ));
        }
        Ok(())
    };
    let (key, result) = check_assertion(state, caller, assertion, "approve", fits, now).await?;
    let credential_id = key.credential_id.clone();
    let evidence = StepUpEvidence {
        method: portcullis_policy::STEP_UP_WEBAUTHN.into(),
        key_name: key.name,
        credential_id,
        user_verified: result.user_verified(),
        counter: result.counter(),
    };
    serde_json::to_string(&evidence).map_err(|e| ServerError::Internal(e.to_string()))
}
