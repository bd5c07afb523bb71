//! The target side: an SSH client (russh) to the target with its host key pinned. A mismatch is
//! refused before any credential is used ([`TargetError::HostKeyMismatch`], which the caller
//! audits); the credential authenticates and is dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_crypto::SecretString;
use russh::client::{self, AuthResult, Session};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelId, Disconnect, Preferred, Sig, cipher, mac};

use crate::bridge::{Route, Routes};

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

/// The target's credential, from the control server for this one connection; dropped (and
/// zeroized) right after authentication.
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
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
}

/// The target connection's handler: accepts only the pinned host key (remembering what the
/// target presented, for the audit), then hands what each channel receives to its [`Route`].
pub struct PinnedHostKey {
    expected: PublicKey,
    presented: Arc<Mutex<Option<PublicKey>>>,
    routes: Routes,
}

impl PinnedHostKey {
    fn route(&self, channel: ChannelId) -> Option<Arc<Route>> {
        self.routes.lock().ok().and_then(|routes| routes.get(&channel).cloned())
    }

    fn close_all(&self) -> Vec<Arc<Route>> {
        self.routes.lock().map(|mut routes| routes.drain().map(|(_, r)| r).collect()).unwrap_or_default()
    }
}

impl Drop for PinnedHostKey {
    /// The target connection is gone: every channel on it is over.
    fn drop(&mut self) {
        // Dropped in the connection's task; outside a runtime (process exit) nothing is left to tell.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        for route in self.close_all() {
            runtime.spawn(async move { route.target_closed().await });
        }
    }
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else { return Ok(false) };
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(key.clone());
        }
        Ok(key.key_data() == self.expected.key_data())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _: &mut Session) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.data(None, data).await;
        }
        Ok(())
    }

    async fn extended_data(
        &mut self,
        channel: ChannelId,
        ext: u32,
        data: &[u8],
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.data(Some(ext), data).await;
        }
        Ok(())
    }

    async fn exit_status(&mut self, channel: ChannelId, status: u32, _: &mut Session) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.exit_status(status).await;
        }
        Ok(())
    }

    async fn exit_signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        core_dumped: bool,
        message: &str,
        lang: &str,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.exit_signal(signal, core_dumped, message, lang).await;
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.eof().await;
        }
        Ok(())
    }

    async fn channel_success(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.reply(true).await;
        }
        Ok(())
    }

    async fn channel_failure(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        if let Some(route) = self.route(channel) {
            route.reply(false).await;
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        let route = self.routes.lock().ok().and_then(|mut routes| routes.remove(&channel));
        if let Some(route) = route {
            route.target_closed().await;
        }
        Ok(())
    }
}

enum Handshake {
    NoCommonCipher,
    Failed(TargetError),
}

/// TCP, key exchange with `ciphers` and ETM MACs, the pinned host key checked.
async fn handshake(
    target: &TargetAddress,
    expected: &PublicKey,
    routes: Routes,
    ciphers: &'static [cipher::Name],
) -> Result<Upstream, Handshake> {
    let presented = Arc::new(Mutex::new(None));
    let handler = PinnedHostKey { expected: expected.clone(), presented: presented.clone(), routes };
    let config = client::Config {
        preferred: Preferred {
            key: host_key_algorithms(expected).into(),
            cipher: ciphers.into(),
            mac: ETM_MACS.into(),
            ..Preferred::DEFAULT
        },
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        ..Default::default()
    };
    let addr = format!("{}:{}", target.host, target.port);
    let unreachable = |detail: String| {
        Handshake::Failed(TargetError::Unreachable { target: target.name.clone(), addr: addr.clone(), detail })
    };
    let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    match client::connect_stream(Arc::new(config), tcp, handler).await {
        Ok(handle) => Ok(handle),
        Err(russh::Error::NoCommonAlgo { kind: russh::AlgorithmKind::Cipher, .. }) => Err(Handshake::NoCommonCipher),
        Err(e) => {
            let seen = presented.lock().ok().and_then(|slot| slot.clone());
            Err(Handshake::Failed(match seen {
                Some(key) if key.key_data() != expected.key_data() => TargetError::HostKeyMismatch {
                    target: target.name.clone(),
                    expected: fingerprint(expected),
                    presented: fingerprint(&key),
                },
                _ => TargetError::Ssh { target: target.name.clone(), detail: e.to_string() },
            }))
        }
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

/// An authenticated connection to a target.
pub type Upstream = client::Handle<PinnedHostKey>;

/// Ciphers offered to targets: AEAD only (AES-GCM first: hardware-accelerated where it matters
/// for bulk copies).
const AEAD_CIPHERS: &[cipher::Name] = &[cipher::AES_256_GCM, cipher::CHACHA20_POLY1305];
/// Only for a target that offers no AEAD cipher (an old OpenSSH, an appliance): recorded in the
/// session's start record when used.
const FALLBACK_CIPHERS: &[cipher::Name] = &[cipher::AES_256_CTR];
const ETM_MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];

/// An authenticated connection to a target, and the weaker transport it needed, if any.
pub struct Connected {
    pub upstream: Upstream,
    /// `Some("aes256-ctr + hmac-sha2-…-etm@openssh.com")` when the target offers no AEAD cipher.
    pub fallback: Option<String>,
}

/// Connects (AEAD ciphers only; the fallback only when the target offers none), verifies the
/// host key, authenticates; the credential is consumed and dropped. What arrives on the
/// connection's channels goes to their entries in `routes`.
pub async fn connect(target: &TargetAddress, credential: Credential, routes: Routes) -> Result<Connected, TargetError> {
    let expected = PublicKey::from_openssh(target.host_key.trim())
        .map_err(|e| TargetError::BadKeyMaterial(target.name.clone(), format!("host key: {e}")))?;
    let (mut handle, fallback) = match handshake(target, &expected, routes.clone(), AEAD_CIPHERS).await {
        Ok(handle) => (handle, None),
        Err(Handshake::NoCommonCipher) => {
            tracing::warn!(target = %target.name, "the target offers no AEAD cipher; falling back to aes256-ctr with an ETM MAC");
            match handshake(target, &expected, routes, FALLBACK_CIPHERS).await {
                Ok(handle) => {
                    (handle, Some("aes256-ctr + hmac-sha2-etm (the target offers no AEAD cipher)".to_string()))
                }
                Err(Handshake::NoCommonCipher) => {
                    return Err(TargetError::Ssh {
                        target: target.name.clone(),
                        detail: "the target offers none of the ciphers the gateway uses (AES-GCM, ChaCha20-Poly1305, AES-CTR)".into(),
                    });
                }
                Err(Handshake::Failed(e)) => return Err(e),
            }
        }
        Err(Handshake::Failed(e)) => return Err(e),
    };
    let ssh_err = |e: russh::Error| TargetError::Ssh { target: target.name.clone(), detail: e.to_string() };
    let result = match credential {
        // russh takes the password as a String; ours is zeroized when `password` drops.
        Credential::Password(password) => handle
            .authenticate_password(target.login.clone(), password.expose_secret().clone())
            .await
            .map_err(ssh_err)?,
        Credential::PrivateKey(text) => {
            let key = PrivateKey::from_openssh(text.expose_secret())
                .map_err(|e| TargetError::BadKeyMaterial(target.name.clone(), format!("private key: {e}")))?;
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
        AuthResult::Success => Ok(Connected { upstream: handle, fallback }),
        AuthResult::Failure { .. } => {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            Err(TargetError::AuthenticationFailed { target: target.name.clone(), login: target.login.clone() })
        }
    }
}
