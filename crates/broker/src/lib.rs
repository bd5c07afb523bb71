//! Brokered SSH: the Rust core holds the credential, the person holds only a terminal.
//!
//! [`connect`] opens an SSH connection (russh) to a target, checks the target's host key
//! against the pinned one (a mismatch is refused before any credential is used and reported
//! as [`BrokerError::HostKeyMismatch`] so the caller can audit it), authenticates with the
//! released password or private key, and drops the credential. [`Connected::run`] then
//! bridges one shell or command between an [`Input`]/[`Output`] pair of channels (a terminal,
//! a pipe, or the desktop's xterm.js) while the [`recorder`] writes an asciicast v2 recording
//! through a [`recorder::RecordSink`]. The session is closed when the grant's deadline passes.
//!
//! Contract: depends on russh, tokio, proto and crypto; knows nothing of HTTP, databases or
//! terminals. **Architecture Invariant:** if a recording record cannot be written, the session
//! stops (fail closed).

pub mod recorder;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use portcullis_crypto::SecretString;
use russh::client::{self, AuthResult};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect, Preferred, cipher};
use tokio::sync::mpsc;

pub use recorder::{RecordSink, Recorder};

/// Where to connect and which host key to expect.
#[derive(Clone, Debug)]
pub struct TargetAddress {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    /// OpenSSH public key line.
    pub host_key: String,
}

/// A released credential; dropped (and zeroized) right after authentication.
pub enum Credential {
    Password(SecretString),
    /// OpenSSH private key text.
    PrivateKey(SecretString),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Password(_) => "Credential::Password(<secret>)",
            Credential::PrivateKey(_) => "Credential::PrivateKey(<secret>)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach {target} at {addr}: {detail}")]
    Unreachable { target: String, addr: String, detail: String },
    #[error(
        "host key mismatch for {target}: expected {expected}, the server presented {presented}; refusing to connect"
    )]
    HostKeyMismatch { target: String, expected: String, presented: String },
    #[error("the target {target} rejected the stored credential for login {login}")]
    AuthenticationFailed { target: String, login: String },
    #[error("the pinned host key or stored credential of {0} is unusable: {1}")]
    BadKeyMaterial(String, String),
    #[error("SSH error with {target}: {detail}")]
    Ssh { target: String, detail: String },
    #[error("recording failed, session stopped: {0}")]
    Recording(String),
}

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    Exit,
    GrantExpired,
    Disconnected,
    /// The person closed the terminal.
    Closed,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::GrantExpired => "grant_expired",
            EndReason::Disconnected => "disconnected",
            EndReason::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub exit_status: Option<u32>,
    pub reason: EndReason,
}

/// Input as the recorder sees it.
enum Seen {
    Input(Vec<u8>),
    Bytes(usize),
    Resize { cols: u16, rows: u16 },
    HangUp,
}

struct PinnedHostKey {
    expected: PublicKey,
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(key.clone());
        }
        Ok(key.key_data() == self.expected.key_data())
    }
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Host key algorithms to offer: only those of the pinned key, so a server that also has other
/// key types is asked for the one we can check.
fn host_key_algorithms(key: &PublicKey) -> Vec<Algorithm> {
    match key.algorithm() {
        Algorithm::Rsa { .. } => {
            vec![Algorithm::Rsa { hash: Some(HashAlg::Sha512) }, Algorithm::Rsa { hash: Some(HashAlg::Sha256) }]
        }
        other => vec![other],
    }
}

pub struct Connected {
    handle: client::Handle<PinnedHostKey>,
    target: TargetAddress,
}

/// Connects, verifies the host key, authenticates; the credential is consumed and dropped.
pub async fn connect(target: &TargetAddress, credential: Credential) -> Result<Connected, BrokerError> {
    let expected = PublicKey::from_openssh(target.host_key.trim())
        .map_err(|e| BrokerError::BadKeyMaterial(target.name.clone(), format!("host key: {e}")))?;
    let presented = Arc::new(Mutex::new(None));
    let handler = PinnedHostKey { expected: expected.clone(), presented: presented.clone() };
    let config = client::Config {
        preferred: Preferred {
            key: host_key_algorithms(&expected).into(),
            // AES-GCM first: hardware-accelerated where it matters for bulk copies.
            cipher: vec![cipher::AES_256_GCM, cipher::CHACHA20_POLY1305, cipher::AES_256_CTR].into(),
            ..Preferred::DEFAULT
        },
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    };
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| BrokerError::Unreachable {
            target: target.name.clone(),
            addr: addr.clone(),
            detail: "timed out".into(),
        })?
        .map_err(|e| BrokerError::Unreachable {
            target: target.name.clone(),
            addr: addr.clone(),
            detail: e.to_string(),
        })?;
    let connected = client::connect_stream(Arc::new(config), tcp, handler).await;
    let mut handle = match connected {
        Ok(handle) => handle,
        Err(e) => {
            let seen = presented.lock().ok().and_then(|slot| slot.clone());
            return Err(match seen {
                Some(key) if key.key_data() != expected.key_data() => BrokerError::HostKeyMismatch {
                    target: target.name.clone(),
                    expected: fingerprint(&expected),
                    presented: fingerprint(&key),
                },
                _ => BrokerError::Ssh { target: target.name.clone(), detail: e.to_string() },
            });
        }
    };
    let ssh_err = |e: russh::Error| BrokerError::Ssh { target: target.name.clone(), detail: e.to_string() };
    let result = match credential {
        Credential::Password(password) => handle
            .authenticate_password(target.login.clone(), password.expose_secret().clone())
            .await
            .map_err(ssh_err)?,
        Credential::PrivateKey(text) => {
            let key = PrivateKey::from_openssh(text.expose_secret())
                .map_err(|e| BrokerError::BadKeyMaterial(target.name.clone(), format!("private key: {e}")))?;
            drop(text);
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await.map_err(ssh_err)?.flatten()
            } else {
                None
            };
            handle
                .authenticate_publickey(target.login.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(ssh_err)?
        }
    };
    match result {
        AuthResult::Success => Ok(Connected { handle, target: target.clone() }),
        AuthResult::Failure { .. } => {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            Err(BrokerError::AuthenticationFailed { target: target.name.clone(), login: target.login.clone() })
        }
    }
}

impl Connected {
    /// Runs a shell (`command == None`) or a command, bridging `input`/`output`, until the
    /// remote side closes, the input and output are done, or `deadline` passes.
    pub async fn run<S: RecordSink>(
        self,
        command: Option<String>,
        pty: Option<Pty>,
        deadline: SystemTime,
        mut input: mpsc::Receiver<Input>,
        output: mpsc::Sender<Output>,
        recorder: &mut Recorder<S>,
    ) -> Result<Outcome, BrokerError> {
        let target = self.target.name.clone();
        let ssh_err = |e: russh::Error| BrokerError::Ssh { target: target.clone(), detail: e.to_string() };
        let channel = self.handle.channel_open_session().await.map_err(ssh_err)?;
        if let Some(pty) = &pty {
            channel
                .request_pty(true, &pty.term, u32::from(pty.cols), u32::from(pty.rows), 0, 0, &[])
                .await
                .map_err(ssh_err)?;
        }
        match &command {
            Some(cmd) => channel.exec(true, cmd.as_bytes()).await.map_err(ssh_err)?,
            None => channel.request_shell(true).await.map_err(ssh_err)?,
        }
        let (mut reader, writer) = channel.split();

        // Input goes to the target from its own task, so a full SSH window on the way out never
        // stops us from draining what the target sends back.
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
        let record_input = pty.is_some();
        let pump = tokio::spawn(async move {
            while let Some(event) = input.recv().await {
                match event {
                    Input::Data(data) => {
                        // Keystrokes of a terminal are recorded; bulk stdin of a command is only counted.
                        let _ = seen_tx.send(if record_input {
                            Seen::Input(data.clone())
                        } else {
                            Seen::Bytes(data.len())
                        });
                        if writer.data(&data[..]).await.is_err() {
                            break;
                        }
                    }
                    Input::Resize { cols, rows } => {
                        let _ = seen_tx.send(Seen::Resize { cols, rows });
                        if writer.window_change(u32::from(cols), u32::from(rows), 0, 0).await.is_err() {
                            break;
                        }
                    }
                    Input::Eof => break,
                    Input::Close => {
                        let _ = seen_tx.send(Seen::HangUp);
                        break;
                    }
                }
            }
            let _ = writer.eof().await;
            // Keep the write half alive until the session ends; dropping it would close the channel.
            writer
        });

        let until_deadline = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        let expiry = tokio::time::sleep(until_deadline);
        tokio::pin!(expiry);
        let mut exit_status = None;
        let reason = loop {
            tokio::select! {
                msg = reader.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        recorder.output(&data).await?;
                        if output.send(Output::Stdout(data.to_vec())).await.is_err() {
                            break EndReason::Disconnected;
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        recorder.output(&data).await?;
                        if output.send(Output::Stderr(data.to_vec())).await.is_err() {
                            break EndReason::Disconnected;
                        }
                    }
                    Some(ChannelMsg::ExitStatus { exit_status: status }) => exit_status = Some(status),
                    Some(ChannelMsg::ExitSignal { .. }) => exit_status = exit_status.or(Some(255)),
                    Some(ChannelMsg::Close) | None => break if exit_status.is_some() { EndReason::Exit } else { EndReason::Disconnected },
                    Some(_) => {}
                },
                Some(seen) = seen_rx.recv() => match seen {
                    Seen::Input(data) => recorder.input(&data).await?,
                    Seen::Bytes(n) => recorder.count_input(n),
                    Seen::Resize { cols, rows } => recorder.resize(cols, rows).await?,
                    Seen::HangUp => break EndReason::Closed,
                },
                _ = &mut expiry => {
                    let _ = output
                        .send(Output::Stderr(b"\r\n[portcullis] access grant expired; the session was closed.\r\n".to_vec()))
                        .await;
                    break EndReason::GrantExpired;
                }
            }
        };
        pump.abort();
        let _ = self.handle.disconnect(Disconnect::ByApplication, reason.as_str(), "en").await;
        Ok(Outcome { exit_status, reason })
    }
}
