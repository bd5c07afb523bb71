//! The HTTP API (v1). Handlers validate, decide and call the store; SQL lives in `store`.

mod access;
mod admin;
mod audit;
mod gateways;
mod ingest;
mod keys;
mod release;
mod rotation;
mod secrets;
mod vault;

pub use gateways::{Authorization, authorize_session, gateway_heartbeat, grant_standing};
pub use ingest::ingest_records;
pub use release::end_lapsed_checkouts;
pub use rotation::{orders as rotation_orders, reported as rotation_reported};
pub use vault::add_target;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router, middleware};
use base64::Engine;
use portcullis_crypto::OsRng;
use portcullis_proto::{EnrollRequest, EnrollResponse, EnrolmentCode, ServerIdentity, WhoAmI, roles_from_string};

use crate::auth::{Caller, MAX_BODY_BYTES, authenticate, authenticate_gateway};
use crate::store::{DeviceRow, Store, Tx};
use crate::{ServerError, ServerState};

pub(crate) type AppState = State<Arc<ServerState>>;
pub(crate) type ApiResult<T> = Result<Json<T>, ServerError>;

/// Every route a user's device may call (method, path), as the router serves them. The canary
/// test calls each one with a device holding a live grant and checks no answer carries a
/// credential; a route added to the router and not here fails `device_routes_are_all_listed`.
pub const DEVICE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/me"),
    ("GET", "/v1/users"),
    ("POST", "/v1/users"),
    ("PUT", "/v1/users/{name}/roles"),
    ("PUT", "/v1/users/{name}/groups"),
    ("POST", "/v1/users/{name}/disable"),
    ("POST", "/v1/users/{name}/confirm"),
    ("GET", "/v1/groups"),
    ("POST", "/v1/groups"),
    ("GET", "/v1/devices"),
    ("POST", "/v1/devices/{id}/revoke"),
    ("GET", "/v1/policy"),
    ("PUT", "/v1/policy"),
    ("POST", "/v1/policy/check"),
    ("POST", "/v1/policy/test"),
    ("GET", "/v1/targets"),
    ("POST", "/v1/targets"),
    ("PUT", "/v1/targets/{name}"),
    ("GET", "/v1/secrets"),
    ("POST", "/v1/secrets"),
    ("POST", "/v1/secret-imports"),
    ("GET", "/v1/secrets/{name}"),
    ("PUT", "/v1/secrets/{name}"),
    ("GET", "/v1/secrets/{name}/history"),
    ("POST", "/v1/secrets/{name}/restore"),
    ("POST", "/v1/secrets/{name}/remove"),
    ("POST", "/v1/secrets/{name}/purge"),
    ("POST", "/v1/secrets/{name}/checkout"),
    ("POST", "/v1/secrets/{name}/checkin"),
    ("POST", "/v1/secrets/{name}/use"),
    ("POST", "/v1/secrets/{name}/used"),
    ("POST", "/v1/secrets/{name}/rotate"),
    ("GET", "/v1/secrets/{name}/rotations"),
    ("GET", "/v1/requests"),
    ("POST", "/v1/requests"),
    ("GET", "/v1/requests/{id}"),
    ("POST", "/v1/requests/{id}/review"),
    ("POST", "/v1/requests/{id}/step-up"),
    ("POST", "/v1/revoke"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("POST", "/v1/keys/register"),
    ("DELETE", "/v1/keys/{key}"),
    ("POST", "/v1/keys/step-up"),
    ("POST", "/v1/users/{name}/keys/{key}/remove"),
    ("POST", "/v1/certificates"),
    ("GET", "/v1/gateways"),
    ("POST", "/v1/gateways"),
    ("POST", "/v1/gateways/{name}/confirm"),
    ("POST", "/v1/gateways/{name}/revoke"),
    ("GET", "/v1/live"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/audit/sessions"),
    ("GET", "/v1/audit/sessions/{id}"),
    ("GET", "/v1/audit/sessions/{id}/cast"),
    ("GET", "/v1/audit/sessions/{id}/bundle"),
    ("GET", "/v1/audit/events"),
    ("GET", "/v1/audit/alarms"),
    ("GET", "/v1/audit/verify"),
];

pub fn router(state: Arc<ServerState>) -> Router {
    let device_signed = Router::new()
        .route("/v1/me", get(me))
        .route("/v1/users", get(admin::list_users).post(admin::add_user))
        .route("/v1/users/{name}/roles", put(admin::set_roles))
        .route("/v1/users/{name}/groups", put(admin::set_groups))
        .route("/v1/users/{name}/disable", post(admin::disable_user))
        .route("/v1/users/{name}/confirm", post(admin::confirm_user))
        .route("/v1/groups", get(admin::list_groups).post(admin::add_group))
        .route("/v1/devices", get(admin::list_devices))
        .route("/v1/devices/{id}/revoke", post(admin::revoke_device))
        .route("/v1/policy", get(admin::show_policy).put(admin::set_policy))
        .route("/v1/policy/check", post(admin::check_policy))
        .route("/v1/policy/test", post(admin::test_policy))
        .route("/v1/targets", get(vault::list_targets).post(vault::add_target))
        .route("/v1/targets/{name}", put(vault::update_target))
        .route("/v1/secrets", get(secrets::list).post(secrets::add))
        .route("/v1/secret-imports", post(secrets::import))
        .route("/v1/secrets/{name}", get(secrets::show).put(secrets::edit))
        .route("/v1/secrets/{name}/history", get(secrets::history))
        .route("/v1/secrets/{name}/restore", post(secrets::restore))
        .route("/v1/secrets/{name}/remove", post(secrets::remove))
        .route("/v1/secrets/{name}/purge", post(secrets::purge))
        .route("/v1/secrets/{name}/checkout", post(release::checkout))
        .route("/v1/secrets/{name}/checkin", post(release::checkin))
        .route("/v1/secrets/{name}/use", post(release::use_secret))
        .route("/v1/secrets/{name}/used", post(release::used))
        .route("/v1/secrets/{name}/rotate", post(rotation::rotate_now))
        .route("/v1/secrets/{name}/rotations", get(rotation::list))
        .route("/v1/requests", get(access::list_requests).post(access::create_request))
        .route("/v1/requests/{id}", get(access::request_detail))
        .route("/v1/requests/{id}/review", post(access::review))
        .route("/v1/requests/{id}/step-up", post(keys::start_step_up))
        .route("/v1/revoke", post(access::revoke))
        .route("/v1/keys", get(keys::list).post(keys::finish_registration))
        .route("/v1/keys/register", post(keys::start_registration))
        .route("/v1/keys/{key}", delete(keys::remove))
        .route("/v1/keys/step-up", post(keys::start_manage_step_up))
        .route("/v1/users/{name}/keys/{key}/remove", post(keys::remove_for_user))
        .route("/v1/certificates", post(access::issue_certificate))
        .route("/v1/gateways", get(gateways::list).post(gateways::add))
        .route("/v1/gateways/{name}/confirm", post(gateways::confirm))
        .route("/v1/gateways/{name}/revoke", post(gateways::revoke))
        .route("/v1/live", get(crate::live::stream))
        .route("/v1/sessions", get(audit::my_sessions))
        .route("/v1/audit/sessions", get(audit::list_sessions))
        .route("/v1/audit/sessions/{id}", get(audit::session_detail))
        .route("/v1/audit/sessions/{id}/cast", get(audit::export_cast))
        .route("/v1/audit/sessions/{id}/bundle", get(audit::session_bundle))
        .route("/v1/audit/events", get(audit::list_events))
        .route("/v1/audit/alarms", get(audit::list_alarms))
        .route("/v1/audit/verify", get(audit::verify_logs))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let gateway_signed = Router::new()
        .route("/v1/gateway/sessions", post(gateways::authorize))
        .route("/v1/gateway/records", post(gateways::upload))
        .route("/v1/gateway/heartbeat", post(gateways::heartbeat))
        .route("/v1/gateway/standing", post(gateways::standing))
        .route("/v1/gateway/rotations", post(rotation::gateway_orders))
        .route("/v1/gateway/rotations/{id}", post(rotation::gateway_report))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate_gateway));
    let open = Router::new()
        .route("/v1/health", get(health))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/enroll", post(enroll))
        .route("/v1/gateway/enroll", post(gateways::enroll))
        .route_layer(middleware::from_fn(crate::auth::bounded_open_body));
    Router::new()
        .merge(open)
        .merge(device_signed)
        .merge(gateway_signed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

/// Liveness for a load balancer or an orchestrator: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers and holds every migration this build knows (a replica
/// started against a database another version migrated, or one it cannot reach, is taken out of
/// rotation). Says why, without the database's address.
async fn readyz(State(state): AppState) -> (axum::http::StatusCode, String) {
    match state.db.ready().await {
        Ok(()) => (axum::http::StatusCode::OK, "ready\n".into()),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            let why = match e {
                crate::store::StoreError::Outdated(why) => why,
                _ => "the database does not answer".into(),
            };
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"))
        }
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "api": portcullis_proto::API_VERSION }))
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub(crate) fn server_identity(state: &ServerState) -> ServerIdentity {
    ServerIdentity {
        sign_public_key: b64().encode(state.signing.public_key()),
        seal_public_key: b64().encode(state.sealing.public_key()),
        tls_fingerprint: state.tls.fingerprint.clone(),
    }
}

/// Creates a one-time enrolment code for `user_id`; only its hash is stored.
pub(crate) async fn issue_enrolment_code(
    tx: &mut Tx<'_>,
    rows: &crate::rows::RowKey,
    user_id: &str,
    tls_fingerprint: &str,
    now: i64,
) -> Result<String, ServerError> {
    let code = EnrolmentCode::new(portcullis_crypto::random_bytes(&mut OsRng), tls_fingerprint);
    let expires = now + portcullis_proto::ENROLMENT_CODE_TTL_SECS;
    Store::insert_enrolment_code(tx, rows, &code.secret_hash(), user_id, now, expires).await?;
    Ok(code.render())
}

pub(crate) fn decode_key(name: &str, b64_key: &str) -> Result<Vec<u8>, ServerError> {
    let bytes = b64().decode(b64_key).map_err(|_| ServerError::BadRequest(format!("{name} is not base64")))?;
    if bytes.len() != 32 {
        return Err(ServerError::BadRequest(format!("{name} must be 32 bytes")));
    }
    Ok(bytes)
}

async fn enroll(
    State(state): AppState,
    crate::client_addr::ClientAddr(client): crate::client_addr::ClientAddr,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<EnrollResponse> {
    let invalid = || ServerError::Refused("invalid_code", "enrolment code is invalid, expired or already used".into());
    state.check_failures("enrol", client).await?;
    let Ok(code) = EnrolmentCode::parse(&req.code) else {
        state.record_failure("enrol", "enrolment_refused", client).await?;
        return Err(invalid());
    };
    let sign_public_key = decode_key("sign_public_key", &req.sign_public_key)?;
    let seal_public_key = decode_key("seal_public_key", &req.seal_public_key)?;
    let device_name: String = req.device_name.chars().filter(|c| !c.is_control()).take(128).collect();
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let Some(user) = Store::consume_enrolment_code(&mut tx, &state.rows, &code.secret_hash(), now).await? else {
        drop(tx);
        state.record_failure("enrol", "enrolment_refused", client).await?;
        return Err(invalid());
    };
    let device = DeviceRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.clone(),
        sign_public_key,
        seal_public_key,
        revoked_at: None,
    };
    Store::insert_device(&mut tx, &device, &device_name, now).await?;
    state.rows.seal(&mut tx, crate::rows::Row::Device(&device.id)).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&user.id),
            Some(&device.id),
            "device_enrolled",
            serde_json::json!({ "user": user.name, "device_name": device_name }),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(user = %user.name, device = %device.id, "device enrolled");
    Ok(Json(EnrollResponse {
        user_id: user.id,
        user_name: user.name,
        roles: roles_from_string(&user.roles).map_err(ServerError::Internal)?,
        device_id: device.id,
        server: server_identity(&state),
    }))
}

async fn me(Extension(caller): Extension<Caller>) -> ApiResult<WhoAmI> {
    Ok(Json(WhoAmI {
        user_id: caller.user_id,
        user_name: caller.user_name,
        roles: caller.roles,
        device_id: caller.device_id,
    }))
}
