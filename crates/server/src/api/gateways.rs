//! Gateways: admins add and list them; a gateway process enrols with a one-time code; every
//! gateway asks here, per connection, whether a user certificate may open a session — and only
//! then receives the target's credential (in-process for the embedded gateway, sealed to a
//! remote gateway's X25519 key for that one connection).

use crate::rows::Row;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use portcullis_crypto::identity::seal_to;
use portcullis_crypto::{OsRng, SecretBytes, envelope};
use portcullis_proto::{
    AddGatewayRequest, AddGatewayResponse, AuthorizedSession, CredentialKind, EndedGrant, EnrolmentCode,
    GatewayEnrollRequest, GatewayEnrollResponse, GatewayHeartbeat, GatewayRevokeOutcome, GatewaySummary, GrantClaims,
    GrantStandingRequest, GrantStandingResponse, INFO_GATEWAY_CREDENTIAL, MAX_STANDING_GRANTS, Role,
    SessionAuthorizationRequest, SessionTicket, SignedGrant, UploadAck, UploadBatch, check_name, roles_from_string,
};
use russh::keys::{Certificate, PublicKey};

use super::{ApiResult, AppState, decode_key, server_identity};
use crate::auth::{Caller, GatewayCaller};
use crate::store::{GatewayRow, Store, TargetRow, credential_aad};
use crate::user_ca::{check_user_certificate, fingerprint};
use crate::{ServerError, ServerState};

pub async fn add(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddGatewayRequest>,
) -> ApiResult<AddGatewayResponse> {
    caller.require(Role::Admin)?;
    check_name("gateway", &req.name).map_err(ServerError::BadRequest)?;
    let now = state.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let code = EnrolmentCode::new(portcullis_crypto::random_bytes(&mut OsRng), &state.tls.fingerprint);
    let expires = now + portcullis_proto::ENROLMENT_CODE_TTL_SECS;
    let mut tx = state.db.begin().await?;
    Store::insert_gateway(&mut tx, &id, &req.name, false, Some(&caller.user_id), now).await?;
    state.rows.seal(&mut tx, Row::Gateway(&id)).await?;
    Store::insert_gateway_code(&mut tx, &code.secret_hash(), &id, now, expires).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "gateway_added",
            serde_json::json!({ "gateway": req.name }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(AddGatewayResponse {
        gateway_id: id,
        name: req.name,
        enrolment_code: code.render(),
        code_expires_at: expires,
    }))
}

/// Whether a gateway may serve targets: the embedded one always; another once an admin other
/// than the one who added it confirmed the signing key it enrolled with (the confirmation row
/// authenticated, the key the one enrolled now).
pub(crate) async fn gateway_confirmed(state: &ServerState, g: &GatewayRow) -> Result<bool, ServerError> {
    if g.embedded {
        return Ok(true);
    }
    let Some(key) = &g.sign_public_key else { return Ok(false) };
    let Some((_, _, confirmed_key)) = state.db.gateway_confirmation(&g.id).await? else { return Ok(false) };
    state.rows.check(&mut state.db.conn().await?, Row::GatewayConfirmation(&g.id)).await?;
    Ok(confirmed_key.eq_ignore_ascii_case(&hex::encode(key)))
}

/// The refusal for a gateway nobody confirmed yet.
pub(crate) fn unconfirmed(g: &GatewayRow) -> ServerError {
    let fingerprint = g
        .host_key
        .as_deref()
        .and_then(|k| PublicKey::from_openssh(k).ok())
        .map(|k| fingerprint(&k))
        .unwrap_or_else(|| "(not enrolled yet)".into());
    ServerError::Refused(
        "gateway_unconfirmed",
        format!(
            "gateway {} serves no target until an admin other than the one who added it confirms it: \
             `portcullis gateway confirm {}` (its host key is {fingerprint})",
            g.name, g.name
        ),
    )
}

async fn gateway_named(state: &ServerState, name: &str) -> Result<GatewayRow, ServerError> {
    state.db.gateway_by_name(name).await?.ok_or_else(|| ServerError::NotFound(format!("no gateway named {name:?}")))
}

/// A second admin vouches for an enrolled gateway (the key it enrolled with); from then on
/// targets may be placed on it and it may broker their sessions. In a one-admin installation
/// the admin who added it may do so alone 24 hours after it enrolled, raising an alarm.
pub async fn confirm(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<GatewaySummary> {
    caller.require(Role::Admin)?;
    let g = gateway_named(&state, &name).await?;
    state.rows.check(&mut state.db.conn().await?, Row::Gateway(&g.id)).await?;
    if g.embedded {
        return Err(ServerError::Conflict(
            "the embedded gateway runs inside the server and needs no confirmation".into(),
        ));
    }
    if g.revoked_at.is_some() {
        return Err(ServerError::Refused("gateway_revoked", format!("gateway {name} was revoked")));
    }
    let (Some(key), Some(enrolled_at)) = (&g.sign_public_key, g.enrolled_at) else {
        return Err(ServerError::Refused(
            "gateway_not_enrolled",
            format!("gateway {name} has not enrolled yet; confirm it once it has, checking its host key fingerprint"),
        ));
    };
    if state.db.gateway_confirmation(&g.id).await?.is_some() {
        return Err(ServerError::Conflict(format!("gateway {name} is already confirmed")));
    }
    let creator = state.db.gateway_created_by(&g.id).await?;
    let via = super::admin::confirmation_via(
        &state,
        &caller,
        creator.as_deref(),
        None,
        enrolled_at,
        &format!("gateway {name}"),
    )
    .await?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    Store::insert_gateway_confirmation(&mut tx, &g.id, &caller.user_id, via.as_str(), &hex::encode(key), now).await?;
    state.rows.seal(&mut tx, Row::GatewayConfirmation(&g.id)).await?;
    let kind = match via {
        crate::duties::ConfirmedVia::SecondAdmin => "gateway_confirmed",
        crate::duties::ConfirmedVia::Delay => "gateway_confirmed_alone",
    };
    let host_key = g.host_key.as_deref().and_then(|k| PublicKey::from_openssh(k).ok()).map(|k| fingerprint(&k));
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            kind,
            serde_json::json!({ "gateway": name, "via": via.as_str(), "host_key": host_key }),
        )
        .await?;
    tx.commit().await?;
    let counts = state.db.gateway_target_counts().await?;
    let g = state.db.gateway(&g.id).await?.ok_or_else(|| ServerError::Internal("the gateway vanished".into()))?;
    Ok(Json(summary(g, &counts, true)))
}

/// Revokes a gateway: its uploads and session checks are refused from then on (what it wrote
/// before stays verifiable), live grants on its targets are voided, and its running sessions
/// end — the gateway hears it at its next standing check, and nothing it asks is answered.
pub async fn revoke(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<GatewayRevokeOutcome> {
    caller.require(Role::Admin)?;
    let g = gateway_named(&state, &name).await?;
    if g.embedded {
        return Err(ServerError::Refused(
            "embedded_gateway",
            "the embedded gateway runs inside the server; move its targets instead".into(),
        ));
    }
    let targets = state.db.targets_on_gateway(&g.id).await?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if !Store::revoke_gateway(&mut tx, &g.id, now).await? {
        return Err(ServerError::Conflict(format!("gateway {name} is already revoked")));
    }
    state.rows.seal(&mut tx, Row::Gateway(&g.id)).await?;
    let mut voided = 0;
    for target in &targets {
        voided +=
            Store::void_live_grants(&mut tx, &state.rows, target, now, &format!("gateway {name} was revoked")).await?;
    }
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "gateway_revoked",
            serde_json::json!({ "gateway": name, "targets": targets.len(), "grants_voided": voided }),
        )
        .await?;
    tx.commit().await?;
    state.revocations.notify_waiters();
    Ok(Json(GatewayRevokeOutcome { grants_voided: voided as u32, targets: targets.len() as u32 }))
}

fn summary(g: GatewayRow, targets: &[(String, i64)], confirmed: bool) -> GatewaySummary {
    GatewaySummary {
        host_key_fingerprint: g
            .host_key
            .as_deref()
            .and_then(|k| PublicKey::from_openssh(k).ok())
            .map(|k| fingerprint(&k)),
        targets: targets.iter().find(|(id, _)| *id == g.id).map(|(_, n)| *n as u64).unwrap_or(0),
        id: g.id,
        name: g.name,
        embedded: g.embedded,
        address: g.address,
        enrolled_at: if g.embedded { Some(g.created_at) } else { g.enrolled_at },
        last_contact_at: g.last_contact_at,
        backlog: g.backlog.max(0) as u64,
        confirmed,
        revoked_at: g.revoked_at,
    }
}

pub async fn list(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<GatewaySummary>> {
    caller.require(Role::Admin)?;
    let counts = state.db.gateway_target_counts().await?;
    let mut out = Vec::new();
    for g in state.db.gateways().await? {
        let confirmed = gateway_confirmed(&state, &g).await?;
        out.push(summary(g, &counts, confirmed));
    }
    Ok(Json(out))
}

fn check_host_key(line: &str) -> Result<PublicKey, ServerError> {
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|_| ServerError::BadRequest("the gateway's host key is not an OpenSSH public key line".into()))?;
    if key.algorithm() != russh::keys::Algorithm::Ed25519 {
        return Err(ServerError::BadRequest("a gateway's host key must be Ed25519".into()));
    }
    Ok(key)
}

pub async fn enroll(
    State(state): AppState,
    crate::client_addr::ClientAddr(client): crate::client_addr::ClientAddr,
    Json(req): Json<GatewayEnrollRequest>,
) -> ApiResult<GatewayEnrollResponse> {
    let invalid =
        || ServerError::Refused("invalid_code", "gateway enrolment code is invalid, expired or already used".into());
    state.check_failures("gateway_enrol", client).await?;
    let Ok(code) = EnrolmentCode::parse(&req.code) else {
        state.record_failure("gateway_enrol", "gateway_enrolment_refused", client).await?;
        return Err(invalid());
    };
    let sign = decode_key("sign_public_key", &req.sign_public_key)?;
    let seal = decode_key("seal_public_key", &req.seal_public_key)?;
    let host_key = check_host_key(&req.host_key)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let Some(gateway_id) = Store::consume_gateway_code(&mut tx, &code.secret_hash(), now).await? else {
        drop(tx);
        state.record_failure("gateway_enrol", "gateway_enrolment_refused", client).await?;
        return Err(invalid());
    };
    let host_key_line = host_key.to_openssh().map_err(|e| ServerError::Internal(e.to_string()))?;
    let name = Store::enrol_gateway(&mut tx, &gateway_id, &sign, &seal, &host_key_line, now).await?;
    state.rows.seal(&mut tx, Row::Gateway(&gateway_id)).await?;
    state
        .record_event(
            &mut tx,
            now,
            None,
            None,
            "gateway_enrolled",
            serde_json::json!({ "gateway": name, "host_key": fingerprint(&host_key) }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(GatewayEnrollResponse {
        gateway_id,
        name,
        server: server_identity(&state),
        user_ca: state.user_ca.public_openssh(),
    }))
}

/// A session the control server allowed, with the credential the gateway needs to broker it.
pub struct Authorization {
    pub session: AuthorizedSession,
    pub credential: SecretBytes,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization").field("session", &self.session).field("credential", &self.credential).finish()
    }
}

/// Whether the target still is what was approved: login, host key and credential version.
pub fn binding_mismatch(claims: &GrantClaims, target: &TargetRow) -> Option<&'static str> {
    let fingerprint_now = PublicKey::from_openssh(&target.host_key).map(|k| fingerprint(&k)).unwrap_or_default();
    if claims.login != target.login {
        Some("its login")
    } else if claims.host_key_fingerprint != fingerprint_now {
        Some("its host key")
    } else if claims.credential_version != target.credential_version {
        Some("its credential")
    } else {
        None
    }
}

/// The refusal a user sees when the target changed under their grant.
pub fn target_changed(target: &str, what: &str) -> ServerError {
    ServerError::Refused(
        "target_changed",
        format!("{target} changed since your access was approved ({what}); ask for access again"),
    )
}

/// The checks behind every brokered session, in order: a well-formed user certificate from
/// this server's CA, valid now; issued by this server for this key and this grant; the grant
/// signed by this server, live and not revoked; the certificate's user is the grant's; the
/// target asked for is the grant's and is reached through this gateway; the target still is
/// what was approved. Only then is the credential opened.
pub async fn authorize_session(
    state: &ServerState,
    gateway_id: &str,
    req: &SessionAuthorizationRequest,
) -> Result<Authorization, ServerError> {
    let now = state.clock.now();
    let result = authorize_checked(state, gateway_id, req, now).await;
    let (kind, detail) = match &result {
        Ok(a) => (
            "session_authorized",
            serde_json::json!({ "grant": a.session.grant_id, "user": a.session.user, "target": a.session.target,
                "gateway_id": gateway_id, "client": req.client_addr }),
        ),
        Err(e) => (
            "session_refused",
            serde_json::json!({ "reason": e.to_string(), "ssh_user": req.ssh_user, "gateway_id": gateway_id,
                "client": req.client_addr }),
        ),
    };
    let user_id = result.as_ref().ok().map(|a| a.session.user_id.clone());
    // Read before the transaction: the store has a single connection.
    let used = match &result {
        Ok(a) => state.db.target_by_name(&a.session.target).await?.map(|t| (t.id, a.session.user_id.clone())),
        Err(_) => None,
    };
    let mut tx = state.db.begin().await?;
    state.record_event(&mut tx, now, user_id.as_deref(), None, kind, detail).await?;
    if let Some((target_id, user_id)) = used {
        Store::mark_target_used(&mut tx, &target_id, &user_id, now).await?;
    }
    if let Ok(a) = &result {
        // What this gateway's SessionStart records must match (see `ingest`).
        let s = &a.session;
        let id = uuid::Uuid::new_v4().to_string();
        Store::insert_session_authorization(&mut tx, &id, gateway_id, &s.grant_id, &s.user, &s.target, &s.login, now)
            .await?;
        state.rows.seal(&mut tx, Row::SessionAuthorization(&id)).await?;
    }
    tx.commit().await?;
    result
}

async fn authorize_checked(
    state: &ServerState,
    gateway_id: &str,
    req: &SessionAuthorizationRequest,
    now: i64,
) -> Result<Authorization, ServerError> {
    let refused = |code: &'static str, message: String| ServerError::Refused(code, message);
    let gateway =
        state.db.gateway(gateway_id).await?.ok_or_else(|| ServerError::Unauthorized("unknown gateway".into()))?;
    if gateway.revoked_at.is_some() {
        return Err(ServerError::Unauthorized("this gateway was revoked".into()));
    }
    if !gateway_confirmed(state, &gateway).await? {
        return Err(unconfirmed(&gateway));
    }
    // Fail closed: a gateway whose records the server refuses could not audit a new session.
    if let Some((index, why)) = crate::audit::writer_refused(&state.db, gateway_id).await? {
        return Err(refused(
            "audit_log_refused",
            format!(
                "gateway {} cannot open sessions: the server refuses its audit log from record {index} ({why}); \
                 an admin must look at its alarms",
                gateway.name
            ),
        ));
    }
    let cert = Certificate::from_openssh(req.certificate.trim())
        .map_err(|_| refused("certificate_invalid", "the certificate is malformed".into()))?;
    let checked = check_user_certificate(&cert, &state.user_ca.fingerprint(), now.max(0) as u64)
        .map_err(|e| refused("certificate_invalid", e.to_string()))?;
    let issued = state.db.user_certificate(checked.serial).await?;
    if issued.as_ref() != Some(&(checked.key_id.clone(), checked.key_fingerprint.clone())) {
        return Err(refused(
            "certificate_unknown",
            "this certificate was not issued by this server for this key".into(),
        ));
    }
    let grant = state
        .db
        .grant(&checked.key_id)
        .await?
        .ok_or_else(|| refused("grant_unknown", "the certificate names no grant this server knows".into()))?;
    state.check_row(Row::Grant(&grant.id)).await?;
    let signed: SignedGrant =
        serde_json::from_str(&grant.signed).map_err(|_| ServerError::Internal("stored grant is malformed".into()))?;
    let claims = signed
        .verify(&state.signing.public_key())
        .map_err(|e| ServerError::Internal(format!("stored grant {}: {e}", grant.id)))?;
    if grant.revoked_at.is_some() {
        let why = grant.revoke_reason.as_deref().unwrap_or("revoked");
        return Err(refused("grant_revoked", format!("your access to {} was revoked ({why})", claims.target_name)));
    }
    if now >= claims.not_after {
        return Err(refused("grant_expired", format!("your access to {} has expired; ask again", claims.target_name)));
    }
    if let Some(why) = holder_ended(state, &claims).await? {
        return Err(refused("grant_revoked", format!("your access to {} has ended ({why})", claims.target_name)));
    }
    if now < claims.not_before {
        return Err(refused("grant_not_yet_valid", "your access has not started yet".into()));
    }
    if !checked.principals.contains(&claims.user_name) {
        return Err(refused("certificate_foreign", "the certificate is not for the grant's user".into()));
    }
    // A grant to check out or use a secret never opens a session (its name is a secret's).
    if claims.access != portcullis_proto::Access::Ssh {
        return Err(refused(
            "wrong_target",
            format!("this grant is for a secret ({}), not SSH access", claims.access.as_str()),
        ));
    }
    if req.ssh_user != claims.target_name {
        return Err(refused(
            "wrong_target",
            format!(
                "this certificate opens {0}, not {1:?}; connect as {0} (ssh {0}@gateway) or get access to {1:?}",
                claims.target_name, req.ssh_user
            ),
        ));
    }
    let target = state
        .db
        .target_by_name(&claims.target_name)
        .await?
        .filter(|t| t.id == claims.target_id)
        .ok_or_else(|| refused("target_gone", format!("target {} no longer exists", claims.target_name)))?;
    // Where it is, who logs in and which gateway reaches it: as the server last wrote them.
    state.check_row(Row::Target(&target.id)).await?;
    if target.gateway_id != gateway.id {
        return Err(refused(
            "wrong_gateway",
            format!("{} is reached through gateway {}, not {}", target.name, target.gateway, gateway.name),
        ));
    }
    if let Some(what) = binding_mismatch(&claims, &target) {
        return Err(target_changed(&target.name, what));
    }
    if let Some((device, _)) = state.db.device_with_user(&claims.device_id).await?
        && device.revoked_at.is_some()
    {
        return Err(refused("device_revoked", "the device this access was granted to was revoked".into()));
    }
    let credential = match state.db.secret_of_target(&target.id).await? {
        // Its password is a vault secret (rotated by this gateway): the current version.
        Some(secret) => bound_password(state, &secret).await?,
        None => envelope::open(
            &state.root_key,
            &envelope::Envelope {
                wrapped_data_key: target.credential_data_key.clone(),
                ciphertext: target.credential.clone(),
            },
            &credential_aad(&target.id, target.credential_version),
        )?,
    };
    let session = AuthorizedSession {
        ticket_id: uuid::Uuid::new_v4().to_string(),
        grant_id: claims.grant_id,
        user: claims.user_name,
        user_id: claims.user_id,
        device_id: claims.device_id,
        target: target.name,
        host: target.host,
        port: target.port as u16,
        login: target.login,
        host_key: target.host_key,
        not_after: claims.not_after,
        credential_kind: CredentialKind::parse(&target.credential_kind).unwrap_or(CredentialKind::Password),
        exec_record_limit: state.exec_record_limit.load(std::sync::atomic::Ordering::Relaxed),
    };
    Ok(Authorization { session, credential })
}

/// The current password of a secret bound to a target, checked to be the row the server wrote.
async fn bound_password(state: &ServerState, secret: &crate::store::SecretRow) -> Result<SecretBytes, ServerError> {
    state.check_row(Row::Secret(&secret.id)).await?;
    let envelope = state
        .db
        .current_secret_envelope(&secret.id, secret.current_version)
        .await?
        .ok_or_else(|| ServerError::Internal(format!("the current version of {} has no value", secret.name)))?;
    let kind = portcullis_vault::SecretKind::Password;
    let value = portcullis_vault::open(&state.root_key, &envelope, &secret.id, secret.current_version, kind)?;
    value.field("password").cloned().ok_or_else(|| ServerError::Internal(format!("{} has no password", secret.name)))
}

/// `POST /v1/gateway/sessions`: as [`authorize_session`], the credential sealed to the calling
/// gateway's key for this ticket only.
pub async fn authorize(
    State(state): AppState,
    Extension(gateway): Extension<GatewayCaller>,
    Json(req): Json<SessionAuthorizationRequest>,
) -> ApiResult<SessionTicket> {
    let Authorization { session, credential } = authorize_session(&state, &gateway.id, &req).await?;
    let sealed = seal_to(
        &gateway.seal_public_key,
        credential.expose_secret(),
        INFO_GATEWAY_CREDENTIAL,
        session.ticket_id.as_bytes(),
        &mut OsRng,
    )?;
    drop(credential);
    tracing::info!(gateway = %gateway.name, user = %session.user, target = %session.target, "session authorised; credential sealed to the gateway");
    Ok(Json(SessionTicket { session, credential: sealed }))
}

pub async fn upload(
    State(state): AppState,
    Extension(gateway): Extension<GatewayCaller>,
    Json(batch): Json<UploadBatch>,
) -> ApiResult<UploadAck> {
    Ok(Json(super::ingest::ingest_records(&state, &gateway.id, &batch).await?))
}

/// Checks `host:port` with a possibly empty host (meaning "the control server's host").
fn check_address(address: &str) -> Result<(), ServerError> {
    let bad = || ServerError::BadRequest(format!("gateway address {address:?} is not HOST:PORT"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    if host.len() > 255 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(())
}

pub async fn gateway_heartbeat(
    state: &ServerState,
    gateway_id: &str,
    beat: &GatewayHeartbeat,
) -> Result<(), ServerError> {
    check_address(&beat.address)?;
    let host_key = check_host_key(&beat.host_key)?.to_openssh().map_err(|e| ServerError::Internal(e.to_string()))?;
    let gateway =
        state.db.gateway(gateway_id).await?.ok_or_else(|| ServerError::Unauthorized("unknown gateway".into()))?;
    // A remote gateway's host key is the one it enrolled with; a new one needs a new enrolment.
    if !gateway.embedded && gateway.host_key.as_deref() != Some(host_key.as_str()) {
        return Err(ServerError::Refused(
            "host_key_changed",
            "this gateway's SSH host key differs from the one it enrolled with; enrol it again".into(),
        ));
    }
    Ok(state
        .db
        .gateway_contact(gateway_id, Some(&beat.address), Some(&host_key), Some(beat.backlog), state.clock.now())
        .await?)
}

pub async fn heartbeat(
    State(state): AppState,
    Extension(gateway): Extension<GatewayCaller>,
    Json(beat): Json<GatewayHeartbeat>,
) -> ApiResult<serde_json::Value> {
    gateway_heartbeat(&state, &gateway.id, &beat).await?;
    Ok(Json(serde_json::json!({})))
}

/// Which of these grants no longer hold: revoked, their user disabled or no longer a
/// requester, their device revoked, or unknown. Expiry is left to the gateway's own clock.
pub async fn grant_standing(
    state: &ServerState,
    req: &GrantStandingRequest,
) -> Result<GrantStandingResponse, ServerError> {
    if req.grants.len() > MAX_STANDING_GRANTS {
        return Err(ServerError::BadRequest(format!("at most {MAX_STANDING_GRANTS} grants per question")));
    }
    let mut ended = Vec::new();
    for grant_id in &req.grants {
        if let Some(reason) = grant_ended(state, grant_id).await? {
            ended.push(EndedGrant { grant_id: grant_id.clone(), reason });
        }
    }
    Ok(GrantStandingResponse { ended })
}

async fn grant_ended(state: &ServerState, grant_id: &str) -> Result<Option<String>, ServerError> {
    let Some(grant) = state.db.grant(grant_id).await? else {
        return Ok(Some("the grant is unknown to the server".into()));
    };
    if let Err(e) = state.check_row(Row::Grant(&grant.id)).await {
        return Ok(Some(e.to_string()));
    }
    if grant.revoked_at.is_some() {
        let request = state.db.request(&grant.request_id).await?;
        let by = request.and_then(|r| r.revoked_by).map(|by| format!(" by {by}")).unwrap_or_default();
        return Ok(Some(format!("revoked{by}: {}", grant.revoke_reason.as_deref().unwrap_or("revoked"))));
    }
    let signed: SignedGrant =
        serde_json::from_str(&grant.signed).map_err(|_| ServerError::Internal("stored grant is malformed".into()))?;
    let Ok(claims) = signed.verify(&state.signing.public_key()) else {
        return Ok(Some("the grant's signature does not verify".into()));
    };
    holder_ended(state, &claims).await
}

/// Why a verified grant's holder may no longer use it: user disabled or no longer a requester,
/// device revoked or unknown.
async fn holder_ended(state: &ServerState, claims: &GrantClaims) -> Result<Option<String>, ServerError> {
    let Some((device, user)) = state.db.device_with_user(&claims.device_id).await? else {
        return Ok(Some("the device it was granted to is unknown".into()));
    };
    let mut conn = state.db.conn().await?;
    for row in [Row::Device(&device.id), Row::User(&user.id)] {
        if let Err(e) = state.rows.check(&mut conn, row).await {
            return Ok(Some(e.to_string()));
        }
    }
    drop(conn);
    if user.id != claims.user_id {
        return Ok(Some("the grant does not match its device's user".into()));
    }
    if user.disabled_at.is_some() {
        return Ok(Some(format!("user {} was disabled", user.name)));
    }
    if device.revoked_at.is_some() {
        return Ok(Some("the device it was granted to was revoked".into()));
    }
    if !roles_from_string(&user.roles).map_err(ServerError::Internal)?.contains(&Role::Requester) {
        return Ok(Some(format!("{} no longer has the requester role", user.name)));
    }
    Ok(None)
}

pub async fn standing(
    State(state): AppState,
    Extension(_gateway): Extension<GatewayCaller>,
    Json(req): Json<GrantStandingRequest>,
) -> ApiResult<GrantStandingResponse> {
    Ok(Json(grant_standing(&state, &req).await?))
}

/// `host:port` of a gateway for a user: an empty host means "the control server's host".
pub fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().ok()?))
}
