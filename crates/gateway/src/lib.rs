//! The Portcullis gateway: the only place a target credential is ever used.
//!
//! * Users connect with SSH ([`session`]): an OpenSSH user certificate from the control
//!   server's user CA opens one target for one grant; the SSH user name names the target.
//!   The gateway checks the certificate itself and asks the control server ([`control`]) whether
//!   it may open a session — only then does it receive the target's credential, for that
//!   connection (in-process when embedded, sealed to its key when it runs near the targets).
//! * Each user channel is bridged to a channel on the target ([`bridge`], [`target`]): shell,
//!   exec and the sftp subsystem, `want_reply` answered from the target, order kept, early data
//!   buffered, bounded buffers; no forwarding, agent or X11.
//! * A bound password whose check-out ended is rotated on its target ([`rotation`]): set with
//!   `passwd`, proved by a fresh login, and only then committed by the control server.
//! * Everything bridged is recorded ([`recorder`], [`transfer`]) into the gateway's own
//!   encrypted record log ([`log`]) before it reaches the target, and uploaded continuously. A
//!   session that cannot be recorded does not run.
//!
//! Contract: depends on crypto, proto, tlog, sshcert (the user-certificate checks), guard
//! (listener limits), link (signed HTTPS to the control server), localdb (the encrypted record
//! log), russh and russh-sftp — never on the server or the client: it owns its control-plane
//! interface ([`ControlPlane`]), and the embedded gateway's in-process implementation is glue
//! (`portcullis-embedded`). Nothing here prints, logs or serialises a credential.
//! **Architecture Invariant:** the client crate never depends on this one: a user's device has
//! no code path that could use a target credential.

pub mod bridge;
pub mod command;
pub mod control;
pub mod identity;
pub mod log;
pub mod recorder;
pub mod rotation;
pub mod session;
pub mod sftp;
#[cfg(feature = "soak")]
pub mod soak;
pub mod standing;
pub mod target;
pub mod transfer;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::Fingerprint;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::{MethodKind, MethodSet, Preferred, SshId, cipher, compression, kex};

pub use control::{Authorized, ControlError, ControlFuture, ControlPlane, RemoteControl};
pub use log::RecordLog;

/// Who the gateway is.
pub struct GatewayConfig {
    pub id: String,
    pub name: String,
    /// Its SSH host key (Ed25519); clients pin the public half.
    pub host_key: PrivateKey,
    /// The control server's user CA: the only issuer of certificates it accepts.
    pub user_ca: PublicKey,
}

/// What a gateway accepts from the network before anyone authenticated (strangers included).
#[derive(Debug, Clone, Copy)]
pub struct SshLimits {
    /// Open connections in all.
    pub total: usize,
    /// Open connections from one address (one /64 for IPv6).
    pub per_source: usize,
    /// From connecting to authenticated (OpenSSH's LoginGraceTime); then it is closed.
    pub login_grace: Duration,
}

impl Default for SshLimits {
    fn default() -> Self {
        Self { total: 2048, per_source: 128, login_grace: Duration::from_secs(30) }
    }
}

pub struct Inner {
    pub(crate) config: GatewayConfig,
    pub(crate) control: Arc<dyn ControlPlane>,
    pub(crate) log: Arc<RecordLog>,
    pub(crate) ca_fingerprint: Fingerprint,
    /// Whether the grants behind running sessions still hold.
    pub(crate) standing: Arc<standing::Standing>,
    /// Refusals before authentication, counted per source: recorded in aggregate.
    pub(crate) refusals: portcullis_guard::failures::FailureLimiter,
}

/// The algorithms offered to users: the post-quantum hybrid ML-KEM-768 + X25519 key exchange
/// OpenSSH prefers, then curve25519 under both its names (paramiko offers only the older
/// `@libssh.org` one), with strict key exchange (the Terrapin countermeasure);
/// chacha20-poly1305 or AES-256-GCM (AEAD: no separate MAC is used, and only ETM MACs are
/// listed); an Ed25519 host key; no compression.
pub fn user_facing_algorithms() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        mac: Cow::Borrowed(&[russh::mac::HMAC_SHA512_ETM, russh::mac::HMAC_SHA256_ETM]),
        key: Cow::Borrowed(&[Algorithm::Ed25519]),
        cipher: Cow::Borrowed(&[cipher::CHACHA20_POLY1305, cipher::AES_256_GCM]),
        compression: Cow::Borrowed(&[compression::NONE]),
        ..Preferred::DEFAULT
    }
}

pub struct Gateway {
    inner: Arc<Inner>,
    ssh: Arc<russh::server::Config>,
    limits: SshLimits,
}

/// A gateway serving in the background; stops when dropped.
pub struct RunningGateway {
    pub address: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Gateway {
    /// A gateway asking `control`, recording into `log`.
    pub fn new(config: GatewayConfig, control: impl ControlPlane, log: RecordLog) -> Self {
        let ssh = russh::server::Config {
            server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-Portcullis_gateway")),
            methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![config.host_key.clone()],
            preferred: user_facing_algorithms(),
            window_size: 8 * 1024 * 1024,
            maximum_packet_size: 65535,
            max_auth_attempts: 6,
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            nodelay: true,
            ..Default::default()
        };
        let ca_fingerprint = config.user_ca.fingerprint(HashAlg::Sha256);
        Self {
            inner: Arc::new(Inner {
                config,
                control: Arc::new(control),
                log: Arc::new(log),
                ca_fingerprint,
                standing: Arc::default(),
                refusals: Default::default(),
            }),
            ssh: Arc::new(ssh),
            limits: SshLimits::default(),
        }
    }

    /// Connection caps and the login grace time (defaults: [`SshLimits::default`]).
    pub fn with_limits(mut self, limits: SshLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn host_key_openssh(&self) -> String {
        self.inner.config.host_key.public_key().to_openssh().unwrap_or_default()
    }

    pub fn log(&self) -> Arc<RecordLog> {
        self.inner.log.clone()
    }

    /// Serves users on `listener` and keeps the record log synced; `advertise` is the
    /// `host:port` users are told to connect to (an empty host: the control server's host).
    pub fn spawn(self, listener: tokio::net::TcpListener, advertise: String) -> Result<RunningGateway, String> {
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let sync = tokio::spawn(log::sync_forever(
            self.inner.log.clone(),
            self.inner.control.clone(),
            advertise,
            self.host_key_openssh(),
        ));
        let wake = self.inner.control.revocations();
        let standing =
            tokio::spawn(standing::check_forever(self.inner.standing.clone(), self.inner.control.clone(), wake));
        let rotation = tokio::spawn(rotation::rotate_forever(self.inner.control.clone()));
        let inner = self.inner.clone();
        let ssh = self.ssh.clone();
        let limits = self.limits;
        let serve = tokio::spawn(async move {
            let connections = portcullis_guard::connections::Connections::default();
            let total = portcullis_guard::connection_budget(limits.total);
            let mut refusals = portcullis_guard::connections::RefusalLog::default();
            let mut backoff = Duration::ZERO;
            loop {
                let (stream, peer) = portcullis_guard::connections::accept(&listener, &mut backoff).await;
                let slot = match connections.admit(peer.ip(), total, limits.per_source) {
                    Ok(slot) => slot,
                    Err(why) => {
                        refusals.note(peer, why);
                        continue; // dropped: closed before the SSH banner
                    }
                };
                let _ = stream.set_nodelay(true);
                let admitted = session::Admitted::new(tokio::sync::watch::channel(None).0);
                let handler = session::Connection::new(inner.clone(), Some(peer), admitted.clone());
                let ssh = ssh.clone();
                tokio::spawn(serve_connection(ssh, stream, handler, peer, admitted, limits.login_grace, slot));
            }
        });
        Ok(RunningGateway { address, tasks: vec![serve, sync, standing, rotation] })
    }
}

/// One user connection: the SSH handshake and authentication must finish within `grace`, or
/// the connection is closed (a stranger holding it open idle, or trickling, gets nothing);
/// until it authenticates, it is also closed when its slot goes to a newcomer (at the cap).
/// Once admitted, the connection lives only as long as its grant: when it is revoked or runs
/// out the connection itself is closed — not only its channels (an idle OpenSSH ControlMaster
/// would otherwise stay up).
async fn serve_connection(
    ssh: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    handler: session::Connection,
    peer: std::net::SocketAddr,
    admitted: session::Admitted,
    grace: Duration,
    slot: portcullis_guard::connections::Slot,
) {
    let deadline = tokio::time::Instant::now() + grace;
    let started = tokio::select! {
        started = tokio::time::timeout_at(deadline, russh::server::run_stream(ssh, stream, handler)) => started,
        _ = slot.evicted() => return tracing::debug!(%peer, "closed for a newcomer before its SSH handshake"),
    };
    let mut running = match started {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "gateway handshake failed"),
        Err(_) => return tracing::debug!(%peer, "no SSH identification within the login grace time"),
    };
    let handle = running.handle();
    let mut waiting = admitted.subscribe();
    tokio::select! {
        ended = &mut running => {
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "gateway connection ended");
            }
            return;
        }
        _ = tokio::time::sleep_until(deadline) => {}
        _ = waiting.wait_for(Option::is_some) => {}
        _ = slot.evicted() => {}
    }
    let admission = admitted.borrow().clone();
    let Some((mut verdict, not_after)) = admission else {
        tracing::debug!(%peer, "not authenticated within the login grace time (or its slot went to a newcomer); closing");
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "authentication took too long".into(), "en".into())
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
        return;
    };
    slot.settle();
    let until = std::time::UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64);
    let expiry = tokio::time::sleep(until.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO));
    let goodbye = tokio::select! {
        ended = &mut running => {
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "gateway connection ended");
            }
            return;
        }
        _ = expiry => "access grant expired",
        _ = verdict.wait_for(Option::is_some) => "access revoked",
    };
    // Channels are ended (and recorded) by their own watchers; give them a moment, then close.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = handle.disconnect(russh::Disconnect::ByApplication, goodbye.into(), "en".into()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
}

pub fn now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
