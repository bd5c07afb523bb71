//! The desktop app's core. Every window action is one async method of [`AppCore`]; the Tauri
//! shell (`src-tauri/`) maps its commands 1:1 onto them and holds no logic of its own.
//!
//! * **Standalone** (the embedded default): the server library runs in-process on a loopback
//!   port with SQLite in the app's data dir; the first run creates the first admin and enrols
//!   this device as that admin.
//! * **Remote**: the device enrols against a server URL with a one-time code.
//! * **Unlock**: keys come from the OS keyring, or from a passphrase (Argon2id) when no keyring
//!   is reachable; [`AppStatus::key_store`] says which.
//!
//! Standalone, the app also runs the embedded **gateway** on a loopback port: terminal tabs go
//! through it like every other session (certificate, recording, sync), and the credential never
//! leaves the server library in this process.
//!
//! Contract: depends on client, server, gateway, proto — never on Tauri. **Architecture
//! Invariant:** nothing this crate returns ([`ipc`] types) carries a credential; credentials
//! only come *in* ([`ipc::NewTargetForm`] is `Deserialize` only) and go straight to the core.

mod auditing;
mod governance;
pub mod ipc;
pub mod secrets;
pub mod seed;
mod terminals;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_client::Device;
use portcullis_client::ssh::Input;
use portcullis_crypto::SecretString;
use portcullis_keystore::{KeystoreError, PassphrasePurpose, PassphraseSource, Preference};
use portcullis_proto::{AddGatewayRequest, AddUserRequest, CreateAccessRequest, Role, TargetFilter};
use portcullis_server::{Embedded, InitOptions, Server, SystemClock};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use ipc::*;
pub use secrets::*;
pub use terminals::TerminalEvent;

const MODE_FILE: &str = "app.json";
const EMBEDDED_PORT_FILE: &str = "embedded.port";
const GATEWAY_PORT_FILE: &str = "gateway.port";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Standalone,
    Remote,
}

#[derive(Serialize, Deserialize)]
struct ModeFile {
    mode: Mode,
}

/// A passphrase the window supplied, or a clear "ask the person" error.
struct Supplied(Option<String>);

impl PassphraseSource for Supplied {
    fn passphrase(&self, _: PassphrasePurpose, _: &str) -> Result<SecretString, KeystoreError> {
        match &self.0 {
            Some(p) if !p.is_empty() => Ok(SecretString::from(p.clone())),
            _ => Err(KeystoreError::NoPassphrase("no OS keyring is reachable; a passphrase is required".into())),
        }
    }
}

/// The server and gateway a standalone app runs; both stop when this is dropped.
struct EmbeddedParts {
    _server: Embedded,
    _gateway: portcullis_gateway::RunningGateway,
}

struct Ready {
    device: Arc<Device>,
    /// Kept alive while the app runs (standalone only).
    _embedded: Option<EmbeddedParts>,
    server_url: String,
}

pub struct AppCore {
    dir: PathBuf,
    key_store: Preference,
    ready: Mutex<Option<Ready>>,
    terminals: terminals::Terminals,
    /// A security-key ceremony waiting for the person's PIN from the window.
    key_pin: governance::PinSlot,
    /// Where a copied secret goes, and is cleared from.
    clipboard: Arc<Mutex<secrets::Clipboard>>,
}

impl AppCore {
    /// `dir` is the app's data dir; `key_store` is normally `Auto` (OS keyring when reachable).
    pub fn new(dir: &Path, key_store: Preference) -> Self {
        Self {
            dir: dir.to_path_buf(),
            key_store,
            ready: Mutex::new(None),
            terminals: Default::default(),
            key_pin: Default::default(),
            clipboard: Arc::new(Mutex::new(secrets::Clipboard::new())),
        }
    }

    fn device_home(&self) -> PathBuf {
        self.dir.join("device")
    }

    fn server_dir(&self) -> PathBuf {
        self.dir.join("server")
    }

    /// Starts the embedded server and gateway on the loopback ports they had last time, so
    /// devices enrolled against them (teammates) still reach them after a restart; new ports
    /// only if those stay taken.
    async fn start_embedded(&self, server: &Server) -> Result<(EmbeddedParts, String), AppError> {
        let port_file = self.server_dir().join(EMBEDDED_PORT_FILE);
        let api = reuse_port(&port_file, |port| async move { Ok(server.start_embedded(port).await?) }).await?;
        let url = api.url.clone();
        let gateway_file = self.server_dir().join(GATEWAY_PORT_FILE);
        let listener = reuse_port(&gateway_file, |port| async move {
            tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| AppError::internal(e.to_string()))
        })
        .await?;
        let address = listener.local_addr().map_err(|e| AppError::internal(e.to_string()))?;
        let gateway = portcullis_embedded::gateway(server).await.map_err(AppError::internal)?;
        let running = gateway.spawn(listener, address.to_string()).map_err(AppError::internal)?;
        Ok((EmbeddedParts { _server: api, _gateway: running }, url))
    }

    fn mode(&self) -> Option<Mode> {
        let bytes = std::fs::read(self.dir.join(MODE_FILE)).ok()?;
        serde_json::from_slice::<ModeFile>(&bytes).ok().map(|m| m.mode)
    }

    fn save_mode(&self, mode: Mode) -> Result<(), AppError> {
        let json = serde_json::to_vec(&ModeFile { mode }).map_err(|e| AppError::internal(e.to_string()))?;
        portcullis_keystore::write_private(&self.dir.join(MODE_FILE), &json)
            .map_err(|e| AppError::internal(e.to_string()))
    }

    async fn device(&self) -> Result<Arc<Device>, AppError> {
        match self.ready.lock().await.as_ref() {
            Some(ready) => Ok(ready.device.clone()),
            None => Err(AppError::new("locked", "unlock Portcullis first")),
        }
    }

    pub async fn status(&self) -> AppStatus {
        let ready = self.ready.lock().await;
        let mode = self.mode();
        let key_store =
            portcullis_keystore::kind(&self.device_home().join("local.key.json")).ok().map(|k| k.to_string());
        match ready.as_ref() {
            Some(r) => {
                let c = r.device.config();
                AppStatus {
                    phase: Phase::Ready,
                    standalone: mode == Some(Mode::Standalone),
                    key_store,
                    server_url: Some(r.server_url.clone()),
                    user: Some(UserView {
                        name: c.user_name.clone(),
                        roles: c.roles.iter().map(|r| r.to_string()).collect(),
                    }),
                }
            }
            None => AppStatus {
                phase: if Device::is_enrolled(&self.device_home()) { Phase::Locked } else { Phase::Fresh },
                standalone: mode == Some(Mode::Standalone),
                key_store,
                server_url: None,
                user: None,
            },
        }
    }

    /// First run, standalone: create the embedded server and its first admin, enrol this
    /// device as that admin, and start serving on loopback.
    pub async fn create_standalone(&self, admin_name: &str, passphrase: Option<String>) -> Result<AppStatus, AppError> {
        if Device::is_enrolled(&self.device_home()) {
            return Err(AppError::new("already_set_up", "this app is already set up"));
        }
        portcullis_keystore::create_private_dir(&self.dir).map_err(|e| AppError::internal(e.to_string()))?;
        let pass = Supplied(passphrase);
        let outcome = portcullis_server::init(
            &self.server_dir(),
            InitOptions {
                key_store: self.key_store,
                admin_name: admin_name.to_string(),
                // One person on one laptop approves their teammates' requests and audits them.
                extra_admin_roles: vec![Role::Approver, Role::Auditor, Role::Requester],
                tls_names: vec![],
                standalone: true,
                database: None,
            },
            &pass,
            Arc::new(SystemClock),
        )
        .await?;
        let server = Server::open(&self.server_dir(), &pass, Arc::new(SystemClock)).await?;
        let (embedded, server_url) = self.start_embedded(&server).await?;
        let device =
            Device::enroll(&self.device_home(), &server_url, &outcome.admin_code, "desktop", self.key_store, &pass)
                .await?;
        self.save_mode(Mode::Standalone)?;
        *self.ready.lock().await = Some(Ready { device: Arc::new(device), _embedded: Some(embedded), server_url });
        Ok(self.status().await)
    }

    /// First run, remote: enrol this device with a server URL and a one-time code.
    pub async fn enroll(
        &self,
        server_url: &str,
        code: &str,
        passphrase: Option<String>,
    ) -> Result<AppStatus, AppError> {
        portcullis_keystore::create_private_dir(&self.dir).map_err(|e| AppError::internal(e.to_string()))?;
        let device =
            Device::enroll(&self.device_home(), server_url, code, "desktop", self.key_store, &Supplied(passphrase))
                .await?;
        self.save_mode(Mode::Remote)?;
        *self.ready.lock().await =
            Some(Ready { device: Arc::new(device), _embedded: None, server_url: server_url.to_string() });
        Ok(self.status().await)
    }

    /// Later runs: unlock the keys (keyring, or the passphrase given) and, standalone, start
    /// the embedded server again.
    pub async fn unlock(&self, passphrase: Option<String>) -> Result<AppStatus, AppError> {
        let pass = Supplied(passphrase);
        let (embedded, url) = if self.mode() == Some(Mode::Standalone) {
            let server = Server::open(&self.server_dir(), &pass, Arc::new(SystemClock)).await?;
            let (embedded, url) = self.start_embedded(&server).await?;
            (Some(embedded), Some(url))
        } else {
            (None, None)
        };
        let device = Device::open_with_server(&self.device_home(), &pass, url.as_deref()).await?;
        let server_url = device.config().server_url.clone();
        *self.ready.lock().await = Some(Ready { device: Arc::new(device), _embedded: embedded, server_url });
        Ok(self.status().await)
    }

    pub async fn targets(&self, filter: TargetFilter) -> Result<Vec<TargetView>, AppError> {
        Ok(self.device().await?.targets(&filter).await?.into_iter().map(TargetView::from).collect())
    }

    /// The credential goes from the form straight into a secret and is sealed to the server.
    pub async fn add_target(&self, form: NewTargetForm) -> Result<TargetView, AppError> {
        let (target, credential) = form.into_parts()?;
        Ok(self.device().await?.add_target(target, &credential).await?.into())
    }

    /// Edits a target; an empty credential field keeps the stored credential, a filled one
    /// rotates it.
    pub async fn update_target(&self, form: NewTargetForm) -> Result<TargetView, AppError> {
        let (target, credential) = form.into_parts_optional_credential()?;
        Ok(self.device().await?.update_target(target, credential.as_ref()).await?.into())
    }

    pub async fn add_user(&self, name: &str, roles: Vec<String>, groups: Vec<String>) -> Result<NewUserView, AppError> {
        let roles = roles.iter().map(|r| r.parse()).collect::<Result<Vec<_>, _>>().map_err(AppError::input)?;
        let added =
            self.device().await?.api().add_user(&AddUserRequest { name: name.to_string(), roles, groups }).await?;
        Ok(NewUserView {
            name: added.name,
            enrolment_code: added.enrolment_code,
            confirmation: added.confirmation,
            expires_at: added.code_expires_at,
        })
    }

    /// Confirms, as a second admin, an account someone else created; its new enrolment code
    /// (earlier ones stop working) is for the person vouched for.
    pub async fn confirm_user(&self, name: &str) -> Result<NewUserView, AppError> {
        let confirmed = self.device().await?.api().confirm_user(name).await?;
        Ok(NewUserView {
            name: confirmed.name,
            enrolment_code: Some(confirmed.enrolment_code),
            confirmation: (confirmed.via == "delay")
                .then(|| "confirmed alone (one-admin installation): recorded as an alarm".to_string()),
            expires_at: confirmed.code_expires_at,
        })
    }

    /// Gateways with their address, last contact and unsynced backlog (admins).
    pub async fn gateways(&self) -> Result<Vec<GatewayView>, AppError> {
        Ok(self.device().await?.api().gateways().await?.into_iter().map(GatewayView::from).collect())
    }

    /// Adds a gateway; its one-time code enrols the gateway process near the targets.
    pub async fn add_gateway(&self, name: &str) -> Result<NewGatewayView, AppError> {
        let added = self.device().await?.api().add_gateway(&AddGatewayRequest { name: name.to_string() }).await?;
        Ok(NewGatewayView { name: added.name, enrolment_code: added.enrolment_code, expires_at: added.code_expires_at })
    }

    pub async fn requests(&self, pending_only: bool) -> Result<Vec<RequestView>, AppError> {
        Ok(self.device().await?.api().requests(pending_only).await?.into_iter().map(RequestView::from).collect())
    }

    pub async fn create_request(
        &self,
        target: &str,
        duration_secs: u64,
        reason: &str,
    ) -> Result<RequestView, AppError> {
        let req = CreateAccessRequest { target: target.into(), duration_secs, reason: reason.into(), access: None };
        Ok(self.device().await?.api().create_request(&req).await?.into())
    }

    /// Live requests and decisions for this user; `sink` is called for each until it returns false.
    pub async fn watch(&self, sink: impl Fn(LiveView) -> bool + Send + 'static) -> Result<(), AppError> {
        let mut updates = self.device().await?.api().watch();
        tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                if !sink(LiveView::from(update)) {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Opens a brokered terminal on `target`; output and the end arrive through `sink`.
    pub async fn connect(
        &self,
        target: &str,
        cols: u16,
        rows: u16,
        sink: impl Fn(TerminalEvent) + Send + Sync + 'static,
    ) -> Result<String, AppError> {
        let device = self.device().await?;
        Ok(self.terminals.open(device, target.to_string(), cols, rows, sink))
    }

    pub async fn terminal_input(&self, id: &str, data: String) -> Result<(), AppError> {
        self.terminals.input(id, Input::Data(data.into_bytes())).await
    }

    pub async fn terminal_resize(&self, id: &str, cols: u16, rows: u16) -> Result<(), AppError> {
        self.terminals.input(id, Input::Resize { cols, rows }).await
    }

    pub async fn terminal_close(&self, id: &str) -> Result<(), AppError> {
        self.terminals.close(id).await
    }

    /// This user's sessions, as the gateways recorded them.
    pub async fn my_sessions(&self) -> Result<Vec<SessionView>, AppError> {
        Ok(self.device().await?.api().my_sessions().await?.into_iter().map(SessionView::from).collect())
    }

    pub async fn audit_sessions(&self) -> Result<Vec<SessionView>, AppError> {
        Ok(self.device().await?.api().sessions().await?.into_iter().map(SessionView::from).collect())
    }

    /// The recording as asciicast v2 text, for the in-app player.
    pub async fn session_cast(&self, id: &str) -> Result<String, AppError> {
        Ok(self.device().await?.api().export_cast(id).await?)
    }
}

/// Binds with `start` on the port remembered in `port_file` (retrying a moment: the previous
/// instance may still be letting go of it), else on a new one, which is then remembered.
async fn reuse_port<T, F, Fut>(port_file: &Path, start: F) -> Result<T, AppError>
where
    T: HasPort,
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    if let Some(port) = std::fs::read_to_string(port_file).ok().and_then(|p| p.trim().parse::<u16>().ok()) {
        for _ in 0..30 {
            if let Ok(bound) = start(port).await {
                return Ok(bound);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!(file = %port_file.display(), "the previous port is taken; devices that used it must re-enrol");
    }
    let bound = start(0).await?;
    portcullis_keystore::write_private(port_file, bound.port().to_string().as_bytes())
        .map_err(|e| AppError::internal(e.to_string()))?;
    Ok(bound)
}

/// Something bound to a loopback port.
trait HasPort {
    fn port(&self) -> u16;
}

impl HasPort for Embedded {
    fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }
}

impl HasPort for tokio::net::TcpListener {
    fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
