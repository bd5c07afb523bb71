//! Device authentication: every call after enrolment is signed by the device's Ed25519 key.

use crate::rows::Row;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use portcullis_proto::{
    HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, MAX_CLOCK_SKEW_SECS, Role, request_signing_input,
    roles_from_string,
};

use crate::{ServerError, ServerState};

/// The authenticated device and its user, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: String,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub device_id: String,
    pub seal_public_key: Vec<u8>,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ServerError> {
        if self.roles.contains(&role) {
            Ok(())
        } else {
            Err(ServerError::Forbidden(format!(
                "{} does not have the {role} role (has: {})",
                self.user_name,
                portcullis_proto::roles_to_string(&self.roles)
            )))
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Largest body on any route: a gateway's record upload.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest body a device sends (a policy set is at most 1 MiB of text).
pub const MAX_DEVICE_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Largest body of a secrets import (one transaction: about 20,000 short secrets).
pub const MAX_IMPORT_BODY_BYTES: usize = MAX_BODY_BYTES;
/// The one device route that takes more than [`MAX_DEVICE_BODY_BYTES`].
pub const IMPORT_ROUTE: &str = "/v1/secret-imports";
/// Largest body on the routes anyone may call (enrolment).
pub const MAX_OPEN_BODY_BYTES: usize = 8 * 1024;
/// How long a body may take to arrive: strangers get little, a gateway uploading its backlog
/// over a slow link more.
pub const OPEN_BODY_SECS: u64 = 10;
pub const DEVICE_BODY_SECS: u64 = 60;
pub const GATEWAY_BODY_SECS: u64 = 300;

/// Reads a body up to `limit` bytes within `secs`, or refuses it.
pub async fn read_body(body: Body, limit: usize, secs: u64) -> Result<bytes::Bytes, ServerError> {
    match tokio::time::timeout(std::time::Duration::from_secs(secs), axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ServerError::PayloadTooLarge(format!("request body larger than {limit} bytes"))),
        Err(_) => Err(ServerError::BadRequest(format!("the request body did not arrive within {secs} s"))),
    }
}

/// The routes anyone may call: the body is read (bounded, with a deadline) before the handler.
pub async fn bounded_open_body(req: Request, next: Next) -> Result<Response, ServerError> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, MAX_OPEN_BODY_BYTES, OPEN_BODY_SECS).await?;
    Ok(next.run(Request::from_parts(parts, Body::from(bytes))).await)
}

/// A signer id as devices and gateways are named (UUIDs): anything else is refused before any
/// lookup.
fn plausible_signer(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn header<'a>(req: &'a Request, name: &str) -> Result<&'a str, ServerError> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ServerError::Unauthorized(format!("missing {name} header: this call needs an enrolled device")))
}

/// A gateway that signed its call with its enrolled key (the `/v1/gateway/*` routes).
#[derive(Clone, Debug)]
pub struct GatewayCaller {
    pub id: String,
    pub name: String,
    pub seal_public_key: Vec<u8>,
}

/// Checks the signature headers of `req` against the signer's public key from `lookup`, the
/// time against the clock and the nonce against those seen; hands back the request, rebuilt
/// with its body, and what `lookup` found.
///
/// Everything that can be checked without the body is checked first — header formats, time,
/// and that the signer exists — so a stranger's body is never read; then the body is read up to
/// `limit` within `secs`.
async fn verify_signed<T, F, Fut>(
    state: &ServerState,
    req: Request,
    limit: usize,
    secs: u64,
    lookup: F,
) -> Result<(Request, T), ServerError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<u8>, T), ServerError>>,
{
    use base64::Engine;
    let signer_id = header(&req, HEADER_DEVICE)?.to_string();
    let time: i64 =
        header(&req, HEADER_TIME)?.parse().map_err(|_| ServerError::Unauthorized("malformed request time".into()))?;
    let nonce = header(&req, HEADER_NONCE)?.to_string();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(header(&req, HEADER_SIGNATURE)?)
        .map_err(|_| ServerError::Unauthorized("malformed request signature".into()))?;
    if nonce.len() < 16 || nonce.len() > 64 {
        return Err(ServerError::Unauthorized("malformed request nonce".into()));
    }
    if !plausible_signer(&signer_id) {
        return Err(ServerError::Unauthorized("malformed signer id".into()));
    }
    let now = state.clock.now();
    if now.abs_diff(time) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(ServerError::Refused(
            "clock_skew",
            format!(
                "request time is {}s away from the server's clock; check this machine's clock",
                now.saturating_sub(time)
            ),
        ));
    }
    let (public_key, found) = lookup(signer_id.clone()).await?;

    let (parts, body) = req.into_parts();
    let bytes = read_body(body, limit, secs).await?;
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let input = request_signing_input(parts.method.as_str(), path, time, &nonce, &bytes);
    portcullis_crypto::identity::verify_signature(&public_key, &input, &signature)
        .map_err(|_| ServerError::Unauthorized("request signature does not verify for this signer".into()))?;
    // Only after the signature verifies, so strangers cannot fill the nonce table.
    if !state.db.remember_nonce(&signer_id, &nonce, now, now + 2 * MAX_CLOCK_SKEW_SECS + 1).await? {
        return Err(ServerError::Refused("replay", "this request was already received (replayed request)".into()));
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), found))
}

/// Device-signed routes: the caller is an enrolled, unrevoked device and its user.
pub async fn authenticate(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Result<Response, ServerError> {
    let unknown = || ServerError::Unauthorized("unknown or revoked device; enrol this device again".into());
    let db = state.db.clone();
    let rows_of = state.clone();
    let limit = if req.uri().path() == IMPORT_ROUTE { MAX_IMPORT_BODY_BYTES } else { MAX_DEVICE_BODY_BYTES };
    let (mut req, (revoked, disabled, caller)) =
        verify_signed(&state, req, limit, DEVICE_BODY_SECS, |device_id| async move {
            let (device, user) = db.device_with_user(&device_id).await?.ok_or_else(unknown)?;
            let mut conn = db.conn().await?;
            rows_of.rows.check(&mut conn, Row::Device(&device.id)).await?;
            rows_of.rows.check(&mut conn, Row::User(&user.id)).await?;
            drop(conn);
            let caller = Caller {
                user_id: user.id,
                user_name: user.name,
                roles: roles_from_string(&user.roles).map_err(ServerError::Internal)?,
                device_id,
                seal_public_key: device.seal_public_key,
            };
            Ok((device.sign_public_key, (device.revoked_at.is_some(), user.disabled_at.is_some(), caller)))
        })
        .await?;
    // Said only once the signature verified.
    if revoked {
        return Err(unknown());
    }
    if disabled {
        return Err(ServerError::Unauthorized(format!("user {} is disabled", caller.user_name)));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Gateway-signed routes: the caller is an enrolled, unrevoked gateway. A device key never
/// passes here, and a gateway key never passes the device routes.
pub async fn authenticate_gateway(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Result<Response, ServerError> {
    let unknown = || ServerError::Unauthorized("unknown or revoked gateway; enrol it again".into());
    let db = state.db.clone();
    let rows_of = state.clone();
    let (mut req, caller) = verify_signed(&state, req, MAX_BODY_BYTES, GATEWAY_BODY_SECS, |gateway_id| async move {
        let gateway = db.gateway(&gateway_id).await?.ok_or_else(unknown)?;
        rows_of.rows.check(&mut db.conn().await?, Row::Gateway(&gateway.id)).await?;
        let (Some(sign), Some(seal)) = (gateway.sign_public_key, gateway.seal_public_key) else {
            return Err(unknown());
        };
        if gateway.embedded {
            return Err(unknown());
        }
        Ok((sign, (gateway.revoked_at, GatewayCaller { id: gateway.id, name: gateway.name, seal_public_key: seal })))
    })
    .await?;
    // Said only to the gateway itself (its signature verified): it ends what it brokers.
    let (revoked_at, caller) = caller;
    if revoked_at.is_some() {
        return Err(ServerError::Unauthorized(format!(
            "gateway {} {}; it may broker and upload nothing more",
            caller.name,
            portcullis_proto::GATEWAY_REVOKED
        )));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
