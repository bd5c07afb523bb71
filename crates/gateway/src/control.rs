//! The gateway's link to the control server: authorise a connection (and receive the target's
//! credential for it), upload records, report where it listens. In-process for the embedded
//! gateway; signed HTTPS with the gateway's own key for a gateway process near the targets.

use portcullis_client::{ApiClient, ClientError};
use portcullis_crypto::SecretBytes;
use portcullis_crypto::identity::SealingIdentity;
use portcullis_proto::{
    AuthorizedSession, GatewayHeartbeat, GrantStandingRequest, GrantStandingResponse, INFO_GATEWAY_CREDENTIAL,
    SessionAuthorizationRequest, SessionTicket, UploadAck, UploadBatch,
};
use portcullis_server::{Server, ServerError};

/// Why the control server could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// The control server refused: the message is for the user.
    #[error("{0}")]
    Refused(String),
    #[error("the gateway cannot reach the control server to check your access ({0}); try again shortly")]
    Unreachable(String),
    #[error("control server error: {0}")]
    Failed(String),
    /// The control server no longer accepts this gateway (revoked).
    #[error("the control server no longer trusts this gateway: {0}")]
    NotTrusted(String),
}

/// A connection the control server allowed (the credential to broker it travels beside it).
pub type Authorized = AuthorizedSession;

pub enum ControlPlane {
    /// The gateway runs inside the control server's process.
    Embedded { server: Server, gateway_id: String },
    /// A gateway process: signed calls with its key; credentials arrive sealed to `sealing`.
    Remote { api: ApiClient, sealing: SealingIdentity },
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

fn from_client(e: ClientError) -> ControlError {
    match e {
        ClientError::Unreachable { detail, .. } => ControlError::Unreachable(detail),
        ClientError::Api { status: 403 | 404 | 503, message, .. } => ControlError::Refused(message),
        ClientError::Api { status: 401, message, .. } if message.contains(portcullis_proto::GATEWAY_REVOKED) => {
            ControlError::NotTrusted(message)
        }
        other => ControlError::Failed(other.to_string()),
    }
}

impl ControlPlane {
    pub async fn authorize(
        &self,
        req: &SessionAuthorizationRequest,
    ) -> Result<(Authorized, SecretBytes), ControlError> {
        match self {
            ControlPlane::Embedded { server, gateway_id } => {
                let a = server.authorize_session(gateway_id, req).await.map_err(from_server)?;
                Ok((a.session, a.credential))
            }
            ControlPlane::Remote { api, sealing } => {
                let t: SessionTicket = api.post("/v1/gateway/sessions", req).await.map_err(from_client)?;
                let credential =
                    sealing
                        .open(&t.credential, INFO_GATEWAY_CREDENTIAL, t.session.ticket_id.as_bytes())
                        .map_err(|_| ControlError::Failed("the credential was not sealed to this gateway".into()))?;
                Ok((t.session, credential))
            }
        }
    }

    pub async fn upload(&self, batch: &UploadBatch) -> Result<UploadAck, ControlError> {
        match self {
            ControlPlane::Embedded { server, gateway_id } => {
                server.ingest_records(gateway_id, batch).await.map_err(from_server)
            }
            ControlPlane::Remote { api, .. } => api.post("/v1/gateway/records", batch).await.map_err(from_client),
        }
    }

    /// Which grants behind running sessions no longer hold.
    pub async fn grant_standing(&self, req: &GrantStandingRequest) -> Result<GrantStandingResponse, ControlError> {
        match self {
            ControlPlane::Embedded { server, .. } => server.grant_standing(req).await.map_err(from_server),
            ControlPlane::Remote { api, .. } => api.post("/v1/gateway/standing", req).await.map_err(from_client),
        }
    }

    pub async fn heartbeat(&self, beat: &GatewayHeartbeat) -> Result<(), ControlError> {
        match self {
            ControlPlane::Embedded { server, gateway_id } => {
                server.gateway_heartbeat(gateway_id, beat).await.map_err(from_server)
            }
            ControlPlane::Remote { api, .. } => {
                api.post::<_, serde_json::Value>("/v1/gateway/heartbeat", beat).await.map(|_| ()).map_err(from_client)
            }
        }
    }
}
