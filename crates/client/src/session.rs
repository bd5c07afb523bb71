//! One brokered session, end to end: release the credential under the grant, connect through
//! the broker with the pinned host key, record into the local log, upload afterwards.

use std::time::{Duration, UNIX_EPOCH};

use portcullis_broker::{Credential, Input, Outcome, Output, Pty, RecordSink, Recorder, TargetAddress};
use portcullis_crypto::SecretString;
use portcullis_proto::{AuditPayload, CredentialKind, HostKeyMismatch, SessionStart};
use tokio::sync::mpsc;

use crate::{ClientError, Device, SyncReport, now_f64, now_secs};

/// The device's encrypted local log as the recorder's sink.
struct LocalLog<'a>(&'a Device);

impl RecordSink for LocalLog<'_> {
    async fn append(&self, payload: AuditPayload) -> Result<(), String> {
        self.0.append_record(&payload).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

pub struct SessionOptions {
    /// `None` runs the login shell.
    pub command: Option<String>,
    /// A terminal for the session; `None` for a plain command with piped input and output.
    pub pty: Option<Pty>,
}

pub struct SessionResult {
    pub session_id: String,
    pub outcome: Outcome,
    /// The upload right after the session; an error here means the recording is safe locally
    /// and waits for the next sync.
    pub upload: Result<SyncReport, ClientError>,
}

/// Runs one brokered session on `target`, bridging `input` and `output`.
pub async fn run(
    device: &Device,
    target: &str,
    options: SessionOptions,
    input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> Result<SessionResult, ClientError> {
    let released = device.release_credential(target, now_secs()).await?;
    let address = TargetAddress {
        name: released.claims.target_name.clone(),
        host: released.host.clone(),
        port: released.port,
        login: released.login.clone(),
        host_key: released.host_key.clone(),
    };
    let text = String::from_utf8(released.secret.expose_secret().clone())
        .map_err(|_| ClientError::Local("the released credential is not text".into()));
    drop(released.secret);
    let text = SecretString::from(text?);
    let credential = match released.kind {
        CredentialKind::Password => Credential::Password(text),
        CredentialKind::PrivateKey => Credential::PrivateKey(text),
    };

    let connected = match portcullis_broker::connect(&address, credential).await {
        Ok(connected) => connected,
        Err(portcullis_broker::BrokerError::HostKeyMismatch { target, expected, presented }) => {
            // Audit first; if even that fails, the refusal still stands.
            let record = AuditPayload::HostKeyMismatch(HostKeyMismatch {
                target: target.clone(),
                host: address.host.clone(),
                port: address.port,
                expected_fingerprint: expected.clone(),
                presented_fingerprint: presented.clone(),
                at: now_f64(),
            });
            device.append_record(&record).await?;
            let _ = device.sync().await;
            return Err(portcullis_broker::BrokerError::HostKeyMismatch { target, expected, presented }.into());
        }
        Err(e) => return Err(e.into()),
    };

    let (cols, rows, term) = match &options.pty {
        Some(p) => (p.cols, p.rows, p.term.clone()),
        None => (80, 24, "dumb".to_string()),
    };
    let session_id = uuid::Uuid::new_v4().to_string();
    let start = SessionStart {
        session_id: session_id.clone(),
        user: device.config().user_name.clone(),
        device_id: device.config().device_id.clone(),
        target: address.name.clone(),
        login: address.login.clone(),
        grant_id: released.claims.grant_id.clone(),
        started_at: now_f64(),
        width: cols,
        height: rows,
        term,
        command: options.command.clone(),
    };
    let mut recorder = Recorder::start(LocalLog(device), start).await?;
    let deadline = UNIX_EPOCH + Duration::from_secs(released.claims.not_after.max(0) as u64);
    let run = connected.run(options.command, options.pty, deadline, input, output, &mut recorder).await;
    let outcome = match run {
        Ok(outcome) => {
            recorder.finish(outcome.exit_status, outcome.reason.as_str(), now_f64()).await?;
            outcome
        }
        Err(e) => {
            let _ = recorder.finish(None, &format!("error: {e}"), now_f64()).await;
            let _ = device.sync().await;
            return Err(e.into());
        }
    };
    let upload = device.sync().await;
    Ok(SessionResult { session_id, outcome, upload })
}
