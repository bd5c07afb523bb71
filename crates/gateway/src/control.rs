//! The gateway's link to the control server, as an interface the gateway owns: authorise a
//! connection (and receive the target's credential for it), upload records, ask whether grants
//! still stand, report where it listens. [`RemoteControl`] is signed HTTPS with the gateway's
//! own key, for a gateway process near the targets; the embedded gateway's in-process
//! implementation lives where server and gateway meet (`portcullis-embedded`), so this crate
//! never depends on the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use portcullis_crypto::SecretBytes;
use portcullis_crypto::identity::SealingIdentity;
use portcullis_link::{Link, LinkError};
use portcullis_proto::{
    AuthorizedSession, GatewayHeartbeat, GrantStandingRequest, GrantStandingResponse, INFO_GATEWAY_CREDENTIAL,
    INFO_GATEWAY_ROTATION, RotationOrder, RotationReport, RotationTickets, SessionAuthorizationRequest, SessionTicket,
    UploadAck, UploadBatch,
};

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

/// A rotation to carry out: the order, the current password, the new one.
pub type Rotation = (RotationOrder, SecretBytes, SecretBytes);

/// What a call to the control plane returns.
pub type ControlFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ControlError>> + Send + 'a>>;

/// Everything a gateway asks of the control server. Implementations decide nothing themselves:
/// the control server does; they carry the question and its answer.
pub trait ControlPlane: Send + Sync + 'static {
    /// May this connection open a session? If so, the target's credential for it.
    fn authorize<'a>(&'a self, req: &'a SessionAuthorizationRequest) -> ControlFuture<'a, (Authorized, SecretBytes)>;
    /// One batch of the record log; the answer says how far it is stored.
    fn upload<'a>(&'a self, batch: &'a UploadBatch) -> ControlFuture<'a, UploadAck>;
    /// Which grants behind running sessions no longer hold.
    fn grant_standing<'a>(&'a self, req: &'a GrantStandingRequest) -> ControlFuture<'a, GrantStandingResponse>;
    /// Where the gateway listens and how far behind its uploads are.
    fn heartbeat<'a>(&'a self, beat: &'a GatewayHeartbeat) -> ControlFuture<'a, ()>;
    /// A signal raised the moment a grant may have been revoked, when the control plane can
    /// give one (in-process); otherwise grants are polled.
    fn revocations(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// Rotations of bound passwords on this gateway's targets, waiting to be carried out.
    fn rotations(&self) -> ControlFuture<'_, Vec<Rotation>>;
    /// How rotation `id` ended on its target.
    fn rotation_done<'a>(&'a self, id: &'a str, report: &'a RotationReport) -> ControlFuture<'a, ()>;
    /// A signal raised when a rotation is started, when the control plane can give one.
    fn rotation_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// Waits `every`, or less when `wake` (the embedded server's signal) is raised first: the
/// pace of the gateway's polls of the control server.
pub(crate) async fn pause(every: std::time::Duration, wake: Option<&tokio::sync::Notify>) {
    let sleep = tokio::time::sleep(every);
    match wake {
        Some(wake) => {
            tokio::select! {
                _ = sleep => {}
                _ = wake.notified() => {}
            }
        }
        None => sleep.await,
    }
}

/// A gateway process: signed calls with its key; credentials arrive sealed to `sealing`.
pub struct RemoteControl {
    pub link: Link,
    pub sealing: SealingIdentity,
}

fn from_link(e: LinkError) -> ControlError {
    match e {
        LinkError::Unreachable { detail, .. } => ControlError::Unreachable(detail),
        LinkError::Api { status: 403 | 404 | 503, message, .. } => ControlError::Refused(message),
        LinkError::Api { status: 401, message, .. } if message.contains(portcullis_proto::GATEWAY_REVOKED) => {
            ControlError::NotTrusted(message)
        }
        other => ControlError::Failed(other.to_string()),
    }
}

impl ControlPlane for RemoteControl {
    fn authorize<'a>(&'a self, req: &'a SessionAuthorizationRequest) -> ControlFuture<'a, (Authorized, SecretBytes)> {
        Box::pin(async move {
            let t: SessionTicket = self.link.post("/v1/gateway/sessions", req).await.map_err(from_link)?;
            let credential = self
                .sealing
                .open(&t.credential, INFO_GATEWAY_CREDENTIAL, t.session.ticket_id.as_bytes())
                .map_err(|_| ControlError::Failed("the credential was not sealed to this gateway".into()))?;
            Ok((t.session, credential))
        })
    }

    fn upload<'a>(&'a self, batch: &'a UploadBatch) -> ControlFuture<'a, UploadAck> {
        Box::pin(async move { self.link.post("/v1/gateway/records", batch).await.map_err(from_link) })
    }

    fn grant_standing<'a>(&'a self, req: &'a GrantStandingRequest) -> ControlFuture<'a, GrantStandingResponse> {
        Box::pin(async move { self.link.post("/v1/gateway/standing", req).await.map_err(from_link) })
    }

    fn heartbeat<'a>(&'a self, beat: &'a GatewayHeartbeat) -> ControlFuture<'a, ()> {
        Box::pin(async move {
            self.link.post::<_, serde_json::Value>("/v1/gateway/heartbeat", beat).await.map(|_| ()).map_err(from_link)
        })
    }

    fn rotations(&self) -> ControlFuture<'_, Vec<Rotation>> {
        Box::pin(async move {
            let tickets: RotationTickets =
                self.link.post("/v1/gateway/rotations", &serde_json::json!({})).await.map_err(from_link)?;
            let not_ours = |_| ControlError::Failed("a rotation's password was not sealed to this gateway".into());
            let mut out = Vec::with_capacity(tickets.rotations.len());
            for t in tickets.rotations {
                let id = t.order.id.clone();
                let current = self
                    .sealing
                    .open(&t.current, INFO_GATEWAY_ROTATION, format!("current/{id}").as_bytes())
                    .map_err(not_ours)?;
                let candidate = self
                    .sealing
                    .open(&t.candidate, INFO_GATEWAY_ROTATION, format!("candidate/{id}").as_bytes())
                    .map_err(not_ours)?;
                out.push((t.order, current, candidate));
            }
            Ok(out)
        })
    }

    fn rotation_done<'a>(&'a self, id: &'a str, report: &'a RotationReport) -> ControlFuture<'a, ()> {
        Box::pin(async move {
            self.link
                .post::<_, serde_json::Value>(&format!("/v1/gateway/rotations/{id}"), report)
                .await
                .map(|_| ())
                .map_err(from_link)
        })
    }
}
