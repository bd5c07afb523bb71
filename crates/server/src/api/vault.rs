//! Targets (admin) and the target list (everyone enrolled).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use portcullis_crypto::SecretBytes;
use portcullis_crypto::{OsRng, envelope};
use portcullis_proto::{
    AddTargetRequest, CredentialKind, GrantHolder, INFO_TARGET_CREDENTIAL, Role, Sealed, TargetSummary,
    UpdateTargetRequest, check_label, check_name,
};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::store::{Store, TargetRow, credential_aad};

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
        tags: crate::store::csv_list(&t.tags),
        description: t.description.clone(),
        last_used_at: t.last_used_at,
        last_used_by: t.last_used_by.clone(),
        active_grants: grants
            .iter()
            .filter(|(target, _, _)| *target == t.id)
            .map(|(_, user, not_after)| GrantHolder { user: user.clone(), not_after: *not_after })
            .collect(),
        gateway: t.gateway.clone(),
        credential_version: t.credential_version,
        requester_view: false,
    }
}

/// The gateway named `name` (or the embedded one): its id and name.
async fn gateway_for(state: &crate::ServerState, name: Option<&str>) -> Result<(String, String), ServerError> {
    let gateway = match name {
        None => state.db.gateway(&state.embedded_gateway_id).await?,
        Some(name) => state.db.gateway_by_name(name).await?,
    };
    let gateway = gateway.ok_or_else(|| {
        ServerError::NotFound(format!("no gateway named {:?}; see `portcullis gateway list`", name.unwrap_or_default()))
    })?;
    if gateway.revoked_at.is_some() {
        return Err(ServerError::BadRequest(format!("gateway {} was revoked", gateway.name)));
    }
    if !super::gateways::gateway_confirmed(state, &gateway).await? {
        return Err(super::gateways::unconfirmed(&gateway));
    }
    Ok((gateway.id, gateway.name))
}

pub async fn add_target(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddTargetRequest>,
) -> ApiResult<TargetSummary> {
    caller.require(Role::Admin)?;
    check_name("target", &req.name).map_err(ServerError::BadRequest)?;
    let fields =
        check_fields(&req.host, req.port, &req.login, &req.host_key, &req.environment, &req.tags, &req.description)?;
    let host = fields.host.as_str();
    let host_key = fields.host_key;
    let tags = fields.tags;
    let credential = open_credential(&state, req.credential_kind, &req.credential, &req.name)?;
    let (gateway_id, gateway) = gateway_for(&state, req.gateway.as_deref()).await?;
    if state.db.secret_by_name(&req.name).await?.is_some() {
        return Err(ServerError::Conflict(format!(
            "a secret is named {:?}: a target and a secret cannot share a name (requests name either)",
            req.name
        )));
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
        gateway_id,
        gateway,
    };
    let mut tx = state.db.begin().await?;
    Store::insert_target(&mut tx, &state.rows, &row, &caller.user_id).await?;
    state.record_event(
        &mut tx,
        now,
        Some(&caller.user_id),
        Some(&caller.device_id),
        "target_added",
        serde_json::json!({ "target": row.name, "host": row.host, "port": row.port, "login": row.login,
            "credential_kind": row.credential_kind, "host_key": host_key_fingerprint(&host_key), "gateway": row.gateway }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(summary(&row, &[])))
}

/// Target fields after validation (shared by add and update).
struct CheckedFields {
    host: String,
    host_key: PublicKey,
    tags: Vec<String>,
}

fn check_fields(
    host: &str,
    port: u16,
    login: &str,
    host_key: &str,
    environment: &str,
    tags: &[String],
    description: &str,
) -> Result<CheckedFields, ServerError> {
    let host = host.trim();
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServerError::BadRequest(format!("invalid host {host:?}")));
    }
    if port == 0 {
        return Err(ServerError::BadRequest("port must be between 1 and 65535".into()));
    }
    if login.is_empty() || login.len() > 64 || login.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServerError::BadRequest(format!("invalid login {login:?}")));
    }
    let host_key = parse_host_key(host_key)?;
    if !environment.is_empty() {
        check_label("environment", environment).map_err(ServerError::BadRequest)?;
    }
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    for tag in &tags {
        check_label("tag", tag).map_err(ServerError::BadRequest)?;
    }
    if tags.len() > 16 || description.len() > 500 {
        return Err(ServerError::BadRequest("at most 16 tags and 500 characters of description".into()));
    }
    if description.chars().any(char::is_control) {
        return Err(ServerError::BadRequest(
            "the description contains a control character; use plain text on one line".into(),
        ));
    }
    Ok(CheckedFields { host: host.to_string(), host_key, tags })
}

/// Opens a credential sealed to this server for target `name` and checks it is usable as `kind`.
fn open_credential(
    state: &crate::ServerState,
    kind: CredentialKind,
    sealed: &Sealed,
    name: &str,
) -> Result<SecretBytes, ServerError> {
    let credential = state
        .sealing
        .open(sealed, INFO_TARGET_CREDENTIAL, name.as_bytes())
        .map_err(|_| ServerError::BadRequest("the credential was not sealed to this server's key".into()))?;
    // A target's credential is a vault secret of its kind: the vault's rules validate it.
    let (secret_kind, field) = match kind {
        CredentialKind::Password => (portcullis_vault::SecretKind::Password, "password"),
        CredentialKind::PrivateKey => (portcullis_vault::SecretKind::SshKey, "private_key"),
    };
    portcullis_vault::SecretValue::parse(secret_kind, vec![(field.to_string(), credential.clone())]).map_err(|e| {
        match kind {
            CredentialKind::PrivateKey => {
                ServerError::BadRequest("the private key is not an OpenSSH private key".into())
            }
            CredentialKind::Password => ServerError::from(e),
        }
    })?;
    if kind == CredentialKind::PrivateKey {
        // The gateway uses it unattended: no passphrase to type.
        let text = std::str::from_utf8(credential.expose_secret()).unwrap_or_default();
        if PrivateKey::from_openssh(text).is_ok_and(|key| key.is_encrypted()) {
            return Err(ServerError::BadRequest(
                "the private key is passphrase-protected; add it decrypted (it is stored encrypted)".into(),
            ));
        }
    }
    Ok(credential)
}

/// Edits a target's metadata; with a credential, also rotates it (its version goes up, so the
/// old ciphertext can never be swapped back in under the new version's associated data).
/// Changing where the target is or who logs in (host, port, login, host key) needs the
/// credential in the same call — the old one rarely fits the new place — and voids live grants:
/// what was approved is no longer what would be reached.
pub async fn update_target(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<UpdateTargetRequest>,
) -> ApiResult<TargetSummary> {
    caller.require(Role::Admin)?;
    let mut row = state
        .db
        .target_by_name(&name)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no target named {name:?}")))?;
    // An edit reseals the row: one changed behind the server's back must not be laundered.
    state.check_row(crate::rows::Row::Target(&row.id)).await?;
    let fields =
        check_fields(&req.host, req.port, &req.login, &req.host_key, &req.environment, &req.tags, &req.description)?;
    let new_host_key = fields.host_key.to_openssh().map_err(|e| ServerError::Internal(e.to_string()))?;
    let old_host_key = parse_host_key(&row.host_key).map(|k| host_key_fingerprint(&k)).unwrap_or_default();
    let mut moved = Vec::new();
    if fields.host != row.host {
        moved.push("host");
    }
    if i64::from(req.port) != row.port {
        moved.push("port");
    }
    if req.login != row.login {
        moved.push("login");
    }
    if host_key_fingerprint(&fields.host_key) != old_host_key {
        moved.push("host key");
    }
    // A new gateway receives the credential at the next session: moving a target needs the
    // credential in the same call (whoever moves it already holds it), and raises an alarm.
    let from_gateway = row.gateway.clone();
    if let Some(gateway) = req.gateway.as_deref() {
        let (id, gateway) = gateway_for(&state, Some(gateway)).await?;
        if id != row.gateway_id {
            moved.push("gateway");
        }
        row.gateway_id = id;
        row.gateway = gateway;
    }
    if !moved.is_empty() && req.credential.is_none() {
        return Err(ServerError::BadRequest(format!(
            "changing the {} of {name} needs its credential in the same edit (--password-stdin or --key-file)",
            moved.join(", ")
        )));
    }
    if req.credential.is_some()
        && let Some(secret) = state.db.secret_of_target(&row.id).await?
    {
        return Err(ServerError::Conflict(format!(
            "the password of {name} is the vault secret {0}: change it there (`portcullis secret edit {0}` or \
             `secret rotate {0}`)",
            secret.name
        )));
    }
    let rotated = match &req.credential {
        Some(sealed) => {
            let credential = open_credential(&state, req.credential_kind, sealed, &name)?;
            let version = row.credential_version + 1;
            let sealed = envelope::seal(
                &state.root_key,
                &mut OsRng,
                credential.expose_secret(),
                &credential_aad(&row.id, version),
            )?;
            row.credential_version = version;
            row.credential_data_key = sealed.wrapped_data_key;
            row.credential = sealed.ciphertext;
            row.credential_kind = req.credential_kind.as_str().to_string();
            true
        }
        None if req.credential_kind.as_str() != row.credential_kind => {
            return Err(ServerError::BadRequest("changing the credential kind needs the new credential".into()));
        }
        None => false,
    };
    row.host = fields.host;
    row.port = i64::from(req.port);
    row.login = req.login.clone();
    row.host_key = new_host_key;
    row.environment = req.environment.clone();
    row.tags = fields.tags.join(",");
    row.description = req.description.trim().to_string();
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    Store::update_target(&mut tx, &state.rows, &row).await?;
    // Rotating the credential alone also ends live grants' use (they name the version), but
    // only a move voids them outright.
    let voided = if moved.is_empty() {
        0
    } else {
        Store::void_live_grants(&mut tx, &state.rows, &row.id, now, &format!("target changed: {}", moved.join(", ")))
            .await?
    };
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "target_updated",
            serde_json::json!({ "target": row.name, "host": row.host, "port": row.port, "login": row.login,
            "host_key": host_key_fingerprint(&fields.host_key), "credential_rotated": rotated,
            "changed": moved, "grants_voided": voided, "gateway": row.gateway }),
        )
        .await?;
    if moved.contains(&"gateway") {
        state
            .record_event(
                &mut tx,
                now,
                Some(&caller.user_id),
                Some(&caller.device_id),
                "target_gateway_moved",
                serde_json::json!({ "target": row.name, "from": from_gateway, "to": row.gateway,
                "grants_voided": voided }),
            )
            .await?;
    }
    tx.commit().await?;
    let grants = state.db.live_grants(now).await?;
    Ok(Json(summary(&row, &grants)))
}

/// Admins, approvers and auditors see every target in full. Someone who is only a requester
/// sees the targets they could request now, and of each only what they need to choose one:
/// name, environment, tags, description, and their own live grant — not where it is, which
/// account or gateway, nor who else uses it.
pub async fn list_targets(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    crate::client_addr::ClientAddr(client): crate::client_addr::ClientAddr,
) -> ApiResult<Vec<TargetSummary>> {
    let grants = state.db.live_grants(state.clock.now()).await?;
    let targets = state.db.targets().await?;
    if [Role::Admin, Role::Approver, Role::Auditor].iter().any(|r| caller.has(*r)) {
        return Ok(Json(targets.iter().map(|t| summary(t, &grants)).collect()));
    }
    let own: Vec<_> = grants.into_iter().filter(|(_, user, _)| *user == caller.user_name).collect();
    // A target they hold a grant on stays listed even when they could not ask for it again now.
    let (held, others): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| own.iter().any(|g| g.0 == t.id));
    let mut visible = super::access::requestable(&state, &caller, client, others).await?;
    visible.extend(held);
    visible.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(visible.iter().map(|t| requester_view(summary(t, &own))).collect()))
}

/// A target as a requester sees it (see [`list_targets`]).
fn requester_view(full: TargetSummary) -> TargetSummary {
    TargetSummary {
        id: full.id,
        name: full.name,
        host: String::new(),
        port: 0,
        login: String::new(),
        credential_kind: full.credential_kind,
        host_key: String::new(),
        host_key_fingerprint: String::new(),
        created_at: 0,
        environment: full.environment,
        tags: full.tags,
        description: full.description,
        last_used_at: None,
        last_used_by: None,
        active_grants: full.active_grants,
        gateway: String::new(),
        credential_version: 0,
        requester_view: true,
    }
}
