//! The embedded gateway: where the control server and the gateway meet in one process
//! (`portcullis server run`, the standalone desktop app). The gateway owns its control-plane
//! interface; this crate implements it in-process — the server authorises, ingests and
//! answers directly, and the target's credential is handed over in memory — so neither the
//! gateway nor the server depends on the other.
//!
//! Contract: glue only: no decision is taken here, each call is the server's own.

use std::sync::Arc;

use portcullis_crypto::SecretBytes;
use portcullis_gateway::control::Rotation;
use portcullis_gateway::{Authorized, ControlError, ControlFuture, ControlPlane, Gateway, GatewayConfig, RecordLog};
use portcullis_proto::{
    GatewayHeartbeat, GrantStandingRequest, GrantStandingResponse, RotationReport, SessionAuthorizationRequest,
    UploadAck, UploadBatch,
};
use portcullis_server::{Server, ServerError};

/// The gateway's record log beside the server's data.
const DATABASE: &str = "gateway.db";

/// The control plane of a gateway inside the server's process.
pub struct EmbeddedControl {
    server: Server,
    gateway_id: String,
}

fn from_server(e: ServerError) -> ControlError {
    match e {
        ServerError::Refused(_, message)
        | ServerError::Forbidden(message)
        | ServerError::NotFound(message)
        | ServerError::StoreUnavailable(message) => ControlError::Refused(message),
        ServerError::Unauthorized(message) if message.contains(portcullis_proto::GATEWAY_REVOKED) => {
            ControlError::NotTrusted(message)
        }
        other => ControlError::Failed(other.to_string()),
    }
}

impl ControlPlane for EmbeddedControl {
    fn authorize<'a>(&'a self, req: &'a SessionAuthorizationRequest) -> ControlFuture<'a, (Authorized, SecretBytes)> {
        Box::pin(async move {
            let a = self.server.authorize_session(&self.gateway_id, req).await.map_err(from_server)?;
            Ok((a.session, a.credential))
        })
    }

    fn upload<'a>(&'a self, batch: &'a UploadBatch) -> ControlFuture<'a, UploadAck> {
        Box::pin(async move { self.server.ingest_records(&self.gateway_id, batch).await.map_err(from_server) })
    }

    fn grant_standing<'a>(&'a self, req: &'a GrantStandingRequest) -> ControlFuture<'a, GrantStandingResponse> {
        Box::pin(async move { self.server.grant_standing(req).await.map_err(from_server) })
    }

    fn heartbeat<'a>(&'a self, beat: &'a GatewayHeartbeat) -> ControlFuture<'a, ()> {
        Box::pin(async move { self.server.gateway_heartbeat(&self.gateway_id, beat).await.map_err(from_server) })
    }

    /// Revocations wake the gateway at once instead of at its next poll.
    fn revocations(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.server.revocations())
    }

    fn rotations(&self) -> ControlFuture<'_, Vec<Rotation>> {
        Box::pin(async move { self.server.rotation_orders(&self.gateway_id).await.map_err(from_server) })
    }

    fn rotation_done<'a>(&'a self, id: &'a str, report: &'a RotationReport) -> ControlFuture<'a, ()> {
        Box::pin(async move { self.server.rotation_reported(&self.gateway_id, id, report).await.map_err(from_server) })
    }

    fn rotation_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.server.rotations())
    }
}

/// The gateway inside `server`'s process; its record log lives in the server's data directory.
pub async fn gateway(server: &Server) -> Result<Gateway, String> {
    let identity = server.embedded_gateway().await.map_err(|e| e.to_string())?;
    let db = portcullis_localdb::LocalDb::open(&server.data_dir().join(DATABASE)).await.map_err(|e| e.to_string())?;
    let log = RecordLog::open(db, identity.local_key, &identity.id, identity.signing, identity.server_key).await?;
    let config = GatewayConfig {
        id: identity.id.clone(),
        name: identity.name,
        host_key: identity.host_key,
        user_ca: identity.user_ca,
    };
    Ok(Gateway::new(config, EmbeddedControl { server: server.clone(), gateway_id: identity.id }, log))
}
