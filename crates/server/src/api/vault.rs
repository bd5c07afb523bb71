//! Users and targets (admin), and the target list (everyone enrolled).

use axum::extract::State;
use axum::{Extension, Json};
use portcullis_crypto::{OsRng, envelope};
use portcullis_proto::{
    AddTargetRequest, AddUserRequest, AddUserResponse, CredentialKind, GrantHolder, INFO_TARGET_CREDENTIAL, Role,
    TargetSummary, check_label, check_name, roles_to_string,
};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::store::{Store, TargetRow, credential_aad};

pub async fn add_user(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddUserRequest>,
) -> ApiResult<AddUserResponse> {
    caller.require(Role::Admin)?;
    check_name("user", &req.name).map_err(ServerError::BadRequest)?;
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(ServerError::BadRequest("a user needs at least one role".into()));
    }
    let now = state.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = state.db.begin().await?;
    Store::insert_user(&mut tx, &id, &req.name, &roles_to_string(&roles), now).await?;
    let code = super::issue_enrolment_code(&mut tx, &id, &state.tls.fingerprint, now).await?;
    Store::record_event(
        &mut tx,
        now,
        Some(&caller.user_id),
        Some(&caller.device_id),
        "user_added",
        serde_json::json!({ "user": req.name, "roles": roles_to_string(&roles) }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(AddUserResponse {
        user_id: id,
        name: req.name,
        roles,
        enrolment_code: code,
        code_expires_at: now + portcullis_proto::ENROLMENT_CODE_TTL_SECS,
    }))
}

pub fn parse_host_key(line: &str) -> Result<PublicKey, ServerError> {
    PublicKey::from_openssh(line.trim())
        .map_err(|e| ServerError::BadRequest(format!("host key is not an OpenSSH public key line: {e}")))
}

pub fn host_key_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn summary(t: &TargetRow, grants: &[(String, String, i64)]) -> TargetSummary {
    let fingerprint =
        parse_host_key(&t.host_key).map(|k| host_key_fingerprint(&k)).unwrap_or_else(|_| "invalid".into());
    TargetSummary {
        id: t.id.clone(),
        name: t.name.clone(),
        host: t.host.clone(),
        port: t.port as u16,
        login: t.login.clone(),
        credential_kind: CredentialKind::parse(&t.credential_kind).unwrap_or(CredentialKind::Password),
        host_key: t.host_key.clone(),
        host_key_fingerprint: fingerprint,
        created_at: t.created_at,
        environment: t.environment.clone(),
        tags: t.tags.split(',').filter(|x| !x.is_empty()).map(String::from).collect(),
        description: t.description.clone(),
        last_used_at: t.last_used_at,
        last_used_by: t.last_used_by.clone(),
        active_grants: grants
            .iter()
            .filter(|(target, _, _)| *target == t.id)
            .map(|(_, user, not_after)| GrantHolder { user: user.clone(), not_after: *not_after })
            .collect(),
    }
}

pub async fn add_target(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddTargetRequest>,
) -> ApiResult<TargetSummary> {
    caller.require(Role::Admin)?;
    check_name("target", &req.name).map_err(ServerError::BadRequest)?;
    let host = req.host.trim();
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServerError::BadRequest(format!("invalid host {:?}", req.host)));
    }
    if req.port == 0 {
        return Err(ServerError::BadRequest("port must be between 1 and 65535".into()));
    }
    if req.login.is_empty() || req.login.len() > 64 || req.login.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServerError::BadRequest(format!("invalid login {:?}", req.login)));
    }
    let host_key = parse_host_key(&req.host_key)?;
    if !req.environment.is_empty() {
        check_label("environment", &req.environment).map_err(ServerError::BadRequest)?;
    }
    let mut tags = req.tags.clone();
    tags.sort();
    tags.dedup();
    for tag in &tags {
        check_label("tag", tag).map_err(ServerError::BadRequest)?;
    }
    if tags.len() > 16 || req.description.len() > 500 {
        return Err(ServerError::BadRequest("at most 16 tags and 500 characters of description".into()));
    }

    let credential = state
        .sealing
        .open(&req.credential, INFO_TARGET_CREDENTIAL, req.name.as_bytes())
        .map_err(|_| ServerError::BadRequest("the credential was not sealed to this server's key".into()))?;
    match req.credential_kind {
        CredentialKind::Password if credential.expose_secret().is_empty() => {
            return Err(ServerError::BadRequest("the password is empty".into()));
        }
        CredentialKind::Password => {}
        CredentialKind::PrivateKey => {
            let text = std::str::from_utf8(credential.expose_secret())
                .map_err(|_| ServerError::BadRequest("the private key is not an OpenSSH private key".into()))?;
            let key = PrivateKey::from_openssh(text)
                .map_err(|_| ServerError::BadRequest("the private key is not an OpenSSH private key".into()))?;
            if key.is_encrypted() {
                return Err(ServerError::BadRequest(
                    "the private key is passphrase-protected; add it decrypted (it is stored encrypted)".into(),
                ));
            }
        }
    }

    let now = state.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let version = 1;
    let sealed =
        envelope::seal(&state.root_key, &mut OsRng, credential.expose_secret(), &credential_aad(&id, version))?;
    drop(credential);
    let row = TargetRow {
        id,
        name: req.name.clone(),
        host: host.to_string(),
        port: i64::from(req.port),
        login: req.login.clone(),
        host_key: host_key.to_openssh().map_err(|e| ServerError::Internal(e.to_string()))?,
        credential_kind: req.credential_kind.as_str().to_string(),
        credential_version: version,
        credential_data_key: sealed.wrapped_data_key,
        credential: sealed.ciphertext,
        created_at: now,
        environment: req.environment.clone(),
        tags: tags.join(","),
        description: req.description.trim().to_string(),
        last_used_at: None,
        last_used_by: None,
    };
    let mut tx = state.db.begin().await?;
    Store::insert_target(&mut tx, &row, &caller.user_id).await?;
    Store::record_event(
        &mut tx,
        now,
        Some(&caller.user_id),
        Some(&caller.device_id),
        "target_added",
        serde_json::json!({ "target": row.name, "host": row.host, "port": row.port, "login": row.login,
            "credential_kind": row.credential_kind, "host_key": host_key_fingerprint(&host_key) }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(summary(&row, &[])))
}

pub async fn list_targets(
    State(state): AppState,
    Extension(_caller): Extension<Caller>,
) -> ApiResult<Vec<TargetSummary>> {
    let grants = state.db.live_grants(state.clock.now()).await?;
    Ok(Json(state.db.targets().await?.iter().map(|t| summary(t, &grants)).collect()))
}
