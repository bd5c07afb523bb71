//! The Portcullis client core: one enrolled device.
//!
//! * [`Device::enroll`] generates the device's Ed25519 and X25519 keys, enrols them with a
//!   one-time code, pins the server (TLS fingerprint, signing and sealing keys) and stores the
//!   private keys encrypted under the device's local key (OS keyring or passphrase).
//! * [`Device::open`] unlocks an enrolled device; [`Device::api`] is the signed API client.
//! * The local database (`portcullis-localdb`, without its record log) holds the device's
//!   private keys encrypted.
//! * [`ssh`] runs a session through the gateway with a short-lived certificate the server
//!   issues for an ephemeral key; [`sshconfig`] writes an OpenSSH config so the user's own
//!   `ssh`, `scp`, `sftp` and `rsync` do the same.
//!
//! Contract: no Tauri, no GUI, no terminal handling. Depends on crypto, proto, keystore, localdb,
//! link (signed HTTPS), russh (the client side only). **Architecture Invariant:** no credential
//! ever reaches this crate: no API answers a device with one, and nothing here could use one
//! (it has no code that talks to a target).

pub mod api;
mod config;
mod identity;
pub mod security_key;
pub mod ssh;
pub mod sshconfig;

pub use api::{ApiClient, ClientError, LiveUpdate};
pub use config::DeviceConfig;

use std::path::{Path, PathBuf};

use base64::Engine;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity, seal_to};
use portcullis_crypto::{OsRng, SecretBytes, SecretString, SymmetricKey};
use portcullis_keystore::{PassphraseSource, Preference, StoreKind};
use portcullis_proto::{
    AddTargetRequest, CredentialKind, EnrollRequest, EnrolmentCode, INFO_TARGET_CREDENTIAL, Sealed, TargetFilter,
    TargetSummary, UpdateTargetRequest,
};

pub(crate) mod paths {
    pub const CONFIG: &str = "device.json";
    pub const LOCAL_KEY: &str = "local.key.json";
    pub const DATABASE: &str = "client.db";
}

/// The default home of this device's state: `$PORTCULLIS_HOME`, else the platform data dir.
pub fn default_home() -> PathBuf {
    std::env::var_os("PORTCULLIS_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("portcullis")))
        .unwrap_or_else(|| PathBuf::from(".portcullis"))
}

pub struct Device {
    home: PathBuf,
    config: DeviceConfig,
    key_store: StoreKind,
    signing: SigningIdentity,
    /// Opens what the server releases to this device (a checked-out or used secret).
    sealing: SealingIdentity,
    api: ApiClient,
}

/// A target to add; the credential travels separately, as a secret.
#[derive(Clone, Debug)]
pub struct NewTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    /// OpenSSH public key line of the target host.
    pub host_key: String,
    pub kind: CredentialKind,
    pub environment: String,
    pub tags: Vec<String>,
    pub description: String,
    /// The gateway that reaches it; `None`: the embedded one (on add) or unchanged (on edit).
    pub gateway: Option<String>,
}

impl Device {
    /// Enrols with the server: fresh keys, the one-time code, the server pinned from it.
    async fn register(
        server_url: &str,
        code: &str,
        device_name: &str,
    ) -> Result<(DeviceConfig, SigningIdentity, SealingIdentity), ClientError> {
        let code = EnrolmentCode::parse(code).map_err(ClientError::Input)?;
        let unauthenticated = ApiClient::new(server_url, api::Pin::Prefix(code.pin.clone()))?;
        let signing = SigningIdentity::generate(&mut OsRng);
        let sealing = SealingIdentity::generate(&mut OsRng);
        let b64 = base64::engine::general_purpose::STANDARD;
        let response = unauthenticated
            .enroll(&EnrollRequest {
                code: code.render(),
                device_name: device_name.to_string(),
                sign_public_key: b64.encode(signing.public_key()),
                seal_public_key: b64.encode(sealing.public_key()),
            })
            .await?;
        if !code.pins(&response.server.tls_fingerprint) {
            return Err(ClientError::ServerIdentity(
                "the server's certificate does not match the enrolment code; this is not the server that issued it"
                    .into(),
            ));
        }
        let config = DeviceConfig {
            server_url: api::server_urls(server_url).collect::<Vec<_>>().join(","),
            server: response.server,
            user_id: response.user_id,
            user_name: response.user_name,
            roles: response.roles,
            device_id: response.device_id,
            device_name: device_name.to_string(),
        };
        Ok((config, signing, sealing))
    }

    fn assemble(
        home: &Path,
        config: DeviceConfig,
        key_store: StoreKind,
        signing: SigningIdentity,
        sealing: SealingIdentity,
    ) -> Result<Device, ClientError> {
        let api = ApiClient::new(&config.server_url, api::Pin::Full(config.server.tls_fingerprint.clone()))?.signed_by(
            config.device_id.clone(),
            SigningIdentity::from_secret_bytes(signing.to_secret_bytes().expose_secret())?,
        );
        Ok(Device { home: home.to_path_buf(), config, key_store, signing, sealing, api })
    }

    pub async fn enroll(
        home: &Path,
        server_url: &str,
        code: &str,
        device_name: &str,
        preference: Preference,
        passphrases: &dyn PassphraseSource,
    ) -> Result<Device, ClientError> {
        if home.join(paths::CONFIG).exists() {
            return Err(ClientError::Local(format!(
                "{} already holds an enrolled device; use another PORTCULLIS_HOME",
                home.display()
            )));
        }
        let (config, signing, sealing) = Self::register(server_url, code, device_name).await?;
        portcullis_keystore::create_private_dir(home)
            .map_err(|e| ClientError::Local(format!("creating {}: {e}", home.display())))?;
        let local_key = SymmetricKey::generate(&mut OsRng);
        let key_store = portcullis_keystore::create(
            &home.join(paths::LOCAL_KEY),
            "device-local",
            preference,
            &local_key,
            passphrases,
            &mut OsRng,
        )?;
        let db = portcullis_localdb::LocalDb::open(&home.join(paths::DATABASE)).await?;
        db.put_secret(&local_key, "signing_key", signing.to_secret_bytes().expose_secret()).await?;
        db.put_secret(&local_key, "sealing_key", sealing.to_secret_bytes().expose_secret()).await?;
        config.save(&home.join(paths::CONFIG))?;
        Self::assemble(home, config, key_store, signing, sealing)
    }

    /// Enrols a pipeline's device that keeps nothing on disk: its whole identity (which server,
    /// who, and its private keys) as one line to keep in a CI system's secret store and hand to
    /// the job as `PORTCULLIS_IDENTITY`. Whoever holds the line is this device.
    pub async fn enroll_identity(server_url: &str, code: &str, device_name: &str) -> Result<SecretString, ClientError> {
        let (config, signing, sealing) = Self::register(server_url, code, device_name).await?;
        identity::encode(&config, &signing, &sealing)
    }

    /// The device `PORTCULLIS_IDENTITY` holds, when it is set.
    pub fn from_environment() -> Result<Option<Device>, ClientError> {
        let Some(line) = std::env::var_os(identity::ENV) else { return Ok(None) };
        let line = SecretString::from(
            line.into_string().map_err(|_| ClientError::Input(format!("{} is not text", identity::ENV)))?,
        );
        let (config, signing, sealing) = identity::decode(line.expose_secret())?;
        Ok(Some(Self::assemble(Path::new(""), config, StoreKind::Environment, signing, sealing)?))
    }

    pub async fn open(home: &Path, passphrases: &dyn PassphraseSource) -> Result<Device, ClientError> {
        Self::open_with_server(home, passphrases, None).await
    }

    pub fn is_enrolled(home: &Path) -> bool {
        home.join(paths::CONFIG).exists()
    }

    /// Opens the device, talking to `server_url` instead of the enrolled URL (an embedded
    /// server listens on a new loopback port each run; its identity stays pinned).
    pub async fn open_with_server(
        home: &Path,
        passphrases: &dyn PassphraseSource,
        server_url: Option<&str>,
    ) -> Result<Device, ClientError> {
        let config_path = home.join(paths::CONFIG);
        if !config_path.exists() {
            return Err(ClientError::NotEnrolled(home.display().to_string()));
        }
        let mut config = DeviceConfig::load(&config_path)?;
        if let Some(url) = server_url {
            config.server_url = url.trim_end_matches('/').to_string();
        }
        let (local_key, key_store) =
            portcullis_keystore::unlock(&home.join(paths::LOCAL_KEY), "device-local", passphrases)?;
        let db = portcullis_localdb::LocalDb::open(&home.join(paths::DATABASE)).await?;
        let signing = SigningIdentity::from_secret_bytes(db.secret(&local_key, "signing_key").await?.expose_secret())?;
        let sealing = SealingIdentity::from_secret_bytes(db.secret(&local_key, "sealing_key").await?.expose_secret())?;
        drop(db);
        Self::assemble(home, config, key_store, signing, sealing)
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn key_store(&self) -> StoreKind {
        self.key_store
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    pub fn signing_public_key(&self) -> [u8; 32] {
        self.signing.public_key()
    }

    /// Seals `credential` to the pinned server key for target `name`: it leaves this process
    /// only in that form.
    fn seal_credential(&self, name: &str, credential: &SecretBytes) -> Result<Sealed, ClientError> {
        self.seal_to_server(INFO_TARGET_CREDENTIAL, name, credential.expose_secret())
    }

    /// `plaintext` sealed to the pinned server key, bound to `info` and `name`.
    fn seal_to_server(&self, info: &[u8], name: &str, plaintext: &[u8]) -> Result<Sealed, ClientError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let server_key = b64
            .decode(&self.config.server.seal_public_key)
            .map_err(|_| ClientError::ServerIdentity("pinned sealing key is malformed".into()))?;
        Ok(seal_to(&server_key, plaintext, info, name.as_bytes(), &mut OsRng)?)
    }

    /// A secret value's fields sealed to the server for secret `name` (nothing else can open it).
    pub fn seal_secret(&self, name: &str, fields: &[(String, SecretBytes)]) -> Result<Sealed, ClientError> {
        let encoded = portcullis_vault::wire::encode_fields(fields.iter().map(|(n, v)| (n.as_str(), v)));
        self.seal_to_server(portcullis_vault::wire::INFO_SECRET_VALUE, name, encoded.expose_secret())
    }

    /// Opens a value the server released to this device: its fields.
    pub fn open_released(
        &self,
        released: &portcullis_vault::wire::Released,
    ) -> Result<Vec<(String, SecretBytes)>, ClientError> {
        let plain = self
            .sealing
            .open(&released.value, portcullis_vault::wire::INFO_SECRET_RELEASE, released.id.as_bytes())
            .map_err(|_| ClientError::ServerIdentity("a released secret did not open with this device's key".into()))?;
        portcullis_vault::wire::decode_fields(plain.expose_secret()).map_err(|e| ClientError::Input(e.to_string()))
    }

    /// Checks `name` out (or reveals it again under the same check-out): its release and fields.
    pub async fn checkout(
        &self,
        name: &str,
        purpose: portcullis_vault::wire::RevealPurpose,
        to: &str,
    ) -> Result<(portcullis_vault::wire::Released, Vec<(String, SecretBytes)>), ClientError> {
        let released =
            self.api.checkout_secret(name, &portcullis_vault::wire::CheckoutRequest { purpose, to: to.into() }).await?;
        let fields = self.open_released(&released)?;
        Ok((released, fields))
    }

    /// Fetches `name` for a process running `command` (under a grant to use it).
    pub async fn use_secret(
        &self,
        name: &str,
        command: &str,
    ) -> Result<(portcullis_vault::wire::Released, Vec<(String, SecretBytes)>), ClientError> {
        let released =
            self.api.use_secret(name, &portcullis_vault::wire::UseRequest { command: command.into() }).await?;
        let fields = self.open_released(&released)?;
        Ok((released, fields))
    }

    /// Edits `target` (by name); with `credential`, rotates the credential too.
    pub async fn update_target(
        &self,
        target: NewTarget,
        credential: Option<&SecretBytes>,
    ) -> Result<TargetSummary, ClientError> {
        let credential = credential.map(|c| self.seal_credential(&target.name, c)).transpose()?;
        let req = UpdateTargetRequest {
            host: target.host,
            port: target.port,
            login: target.login,
            host_key: target.host_key,
            credential_kind: target.kind,
            environment: target.environment,
            tags: target.tags,
            description: target.description,
            gateway: target.gateway,
            credential,
        };
        self.api.update_target(&target.name, &req).await
    }

    pub async fn add_target(&self, target: NewTarget, credential: &SecretBytes) -> Result<TargetSummary, ClientError> {
        let sealed = self.seal_credential(&target.name, credential)?;
        self.api
            .add_target(&AddTargetRequest {
                name: target.name,
                host: target.host,
                port: target.port,
                login: target.login,
                host_key: target.host_key,
                credential_kind: target.kind,
                environment: target.environment,
                tags: target.tags,
                description: target.description,
                gateway: target.gateway,
                credential: sealed,
            })
            .await
    }

    /// Targets matching `filter`, for browsing.
    pub async fn targets(&self, filter: &TargetFilter) -> Result<Vec<TargetSummary>, ClientError> {
        Ok(self.api.targets().await?.into_iter().filter(|t| filter.matches(t)).collect())
    }
}

pub fn now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn now_secs() -> i64 {
    now_f64() as i64
}
