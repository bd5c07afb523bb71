//! A session through the gateway, as `portcullis ssh` and the desktop's terminal tabs run it.
//!
//! The device makes an ephemeral Ed25519 key, the control server certifies it for the live
//! grant (and names the gateway, whose host key is pinned from that answer), and the session
//! runs over SSH to the gateway with that certificate. No credential ever reaches this process:
//! the gateway holds it, and records everything.

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::CertificateRequest;
pub use portcullis_proto::EndReason;
use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{Algorithm, Certificate, PrivateKey, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred, cipher};
use tokio::sync::mpsc;

use crate::{ClientError, Device};

/// What the person's side sends into the session.
#[derive(Debug)]
pub enum Input {
    Data(Vec<u8>),
    Resize {
        cols: u16,
        rows: u16,
    },
    Eof,
    /// Hang up now (the window's terminal tab was closed): the session ends whatever runs.
    Close,
}

/// What the session sends back.
#[derive(Debug)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Pty {
    pub term: String,
    pub cols: u16,
    pub rows: u16,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub exit_status: Option<u32>,
    pub reason: EndReason,
}

pub struct SessionOptions {
    /// `None` runs the login shell.
    pub command: Option<String>,
    /// A terminal for the session; `None` for a plain command with piped input and output.
    pub pty: Option<Pty>,
}

/// An ephemeral key, certified for one grant, and where to use it.
pub struct CertifiedKey {
    pub key: PrivateKey,
    pub certificate: Certificate,
    pub response: portcullis_proto::CertificateResponse,
    /// The gateway's host (the control server's host when the gateway did not name one).
    pub gateway_host: String,
}

/// A new Ed25519 key from the OS RNG.
pub fn ephemeral_key() -> PrivateKey {
    let seed = portcullis_crypto::random_bytes::<32>(&mut portcullis_crypto::OsRng);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

impl Device {
    /// Makes an ephemeral key and has the control server certify it under this device's live
    /// grant for `target`.
    pub async fn certified_key(&self, target: &str) -> Result<CertifiedKey, ClientError> {
        let key = ephemeral_key();
        let public_key = key.public_key().to_openssh().map_err(|e| ClientError::Local(e.to_string()))?;
        let response = self.api().certificate(&CertificateRequest { target: target.into(), public_key }).await?;
        let certificate = Certificate::from_openssh(&response.certificate)
            .map_err(|e| ClientError::ServerIdentity(format!("the server sent a malformed certificate: {e}")))?;
        if certificate.public_key() != key.public_key().key_data() {
            return Err(ClientError::ServerIdentity("the certificate is not for the key this device made".into()));
        }
        let gateway_host = if response.gateway.host.is_empty() || response.gateway.host == "0.0.0.0" {
            self.server_host()
        } else {
            response.gateway.host.clone()
        };
        Ok(CertifiedKey { key, certificate, response, gateway_host })
    }

    /// The host part of the control server's URL.
    fn server_host(&self) -> String {
        url::Url::parse(&self.config().server_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()))
            .unwrap_or_else(|| "127.0.0.1".into())
    }
}

/// Accepts only the gateway host key the control server named.
struct PinnedGateway {
    expected: PublicKey,
}

impl client::Handler for PinnedGateway {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.expected.key_data()))
    }
}

fn gateway_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Gateway(e.to_string())
}

/// Connects and authenticates to the gateway with the certificate; a refusal carries the
/// gateway's reason.
async fn connect(certified: CertifiedKey) -> Result<client::Handle<PinnedGateway>, ClientError> {
    let gateway = &certified.response.gateway;
    let expected = PublicKey::from_openssh(&gateway.host_key)
        .map_err(|_| ClientError::ServerIdentity(format!("gateway {} has a malformed host key", gateway.name)))?;
    let config = client::Config {
        preferred: Preferred {
            key: vec![Algorithm::Ed25519].into(),
            cipher: vec![cipher::AES_256_GCM, cipher::CHACHA20_POLY1305].into(),
            ..Preferred::DEFAULT
        },
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    };
    let addr = format!("{}:{}", certified.gateway_host, gateway.port);
    let unreachable =
        |detail: String| ClientError::Gateway(format!("cannot reach gateway {} at {addr}: {detail}", gateway.name));
    let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let mut handle =
        client::connect_stream(Arc::new(config), tcp, PinnedGateway { expected }).await.map_err(|e| match e {
            russh::Error::UnknownKey => ClientError::ServerIdentity(format!(
                "gateway {} at {addr} presented another host key than the server named; refusing to connect",
                gateway.name
            )),
            other => unreachable(other.to_string()),
        })?;
    let user = certified.response.target.clone();
    let auth = handle
        .authenticate_openssh_cert(user.clone(), Arc::new(certified.key), certified.certificate)
        .await
        .map_err(gateway_error)?;
    if let AuthResult::Failure { .. } = auth {
        // The gateway explains a refusal in a keyboard-interactive message.
        let reason = match handle.authenticate_keyboard_interactive_start(user, None).await {
            Ok(KeyboardInteractiveAuthResponse::InfoRequest { instructions, .. }) if !instructions.is_empty() => {
                instructions
            }
            _ => "the gateway refused the certificate".to_string(),
        };
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
        return Err(ClientError::Gateway(reason));
    }
    Ok(handle)
}

/// Runs one session on `target` through its gateway, bridging `input` and `output`, until the
/// remote side closes, the input is done, or the gateway ends it (grant expiry).
pub async fn run(
    device: &Device,
    target: &str,
    options: SessionOptions,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> Result<Outcome, ClientError> {
    let certified = device.certified_key(target).await?;
    let not_after = certified.response.not_after;
    let handle = connect(certified).await?;
    let channel = handle.channel_open_session().await.map_err(gateway_error)?;
    if let Some(pty) = &options.pty {
        channel
            .request_pty(true, &pty.term, u32::from(pty.cols), u32::from(pty.rows), 0, 0, &[])
            .await
            .map_err(gateway_error)?;
    }
    match &options.command {
        Some(cmd) => channel.exec(true, cmd.as_bytes()).await.map_err(gateway_error)?,
        None => channel.request_shell(true).await.map_err(gateway_error)?,
    }
    let (mut reader, writer) = channel.split();

    // Input goes out from its own task, so a full SSH window on the way out never stops us
    // from draining what comes back.
    let (hangup_tx, mut hangup_rx) = mpsc::channel::<()>(1);
    let pump = tokio::spawn(async move {
        while let Some(event) = input.recv().await {
            let sent = match event {
                Input::Data(data) => writer.data_bytes(data).await,
                Input::Resize { cols, rows } => writer.window_change(u32::from(cols), u32::from(rows), 0, 0).await,
                Input::Eof => break,
                Input::Close => {
                    // Closing the channel (not just the connection) tells the gateway the user
                    // ended it, which it records as `closed`.
                    let _ = writer.close().await;
                    let _ = hangup_tx.send(()).await;
                    break;
                }
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = writer.eof().await;
        // Keep the write half alive until the session ends; dropping it would close the channel.
        writer
    });

    let mut exit_status = None;
    let reason = loop {
        tokio::select! {
            msg = reader.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if output.send(Output::Stdout(data.to_vec())).await.is_err() {
                        break EndReason::Disconnected;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    if output.send(Output::Stderr(data.to_vec())).await.is_err() {
                        break EndReason::Disconnected;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status: status }) => exit_status = Some(status),
                Some(ChannelMsg::ExitSignal { .. }) => exit_status = exit_status.or(Some(255)),
                Some(ChannelMsg::Failure) => {
                    let _ = output.send(Output::Stderr(b"[portcullis] the target refused to run the session\r\n".to_vec())).await;
                }
                Some(ChannelMsg::Close) | None => {
                    break if exit_status.is_some() {
                        EndReason::Exit
                    } else if crate::now_secs() >= not_after {
                        EndReason::GrantExpired
                    } else {
                        EndReason::Disconnected
                    };
                }
                Some(_) => {}
            },
            Some(()) = hangup_rx.recv() => break EndReason::Closed,
        }
    };
    pump.abort();
    let _ = handle.disconnect(Disconnect::ByApplication, reason.as_str(), "en").await;
    Ok(Outcome { exit_status, reason })
}
