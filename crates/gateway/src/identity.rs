//! A gateway process near the targets: its enrolment and its state under `$PORTCULLIS_HOME`
//! (like a device). Its Ed25519 signing key, X25519 sealing key and SSH host key live in its
//! local database encrypted under its local key, which the OS keyring or a passphrase keeps.

use std::path::{Path, PathBuf};

use base64::Engine;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use portcullis_crypto::{OsRng, SymmetricKey};
use portcullis_keystore::{PassphraseSource, Preference, StoreKind};
use portcullis_link::{Link, LinkError, Pin};
use portcullis_localdb::LocalDb;
use portcullis_proto::{EnrolmentCode, GatewayEnrollRequest, GatewayEnrollResponse, ServerIdentity};
use russh::keys::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};

use crate::control::RemoteControl;
use crate::log::RecordLog;
use crate::{Gateway, GatewayConfig};

const CONFIG: &str = "gateway.json";
const LOCAL_KEY: &str = "gateway-local.key.json";
const DATABASE: &str = "gateway.db";
const KEY_PURPOSE: &str = "gateway-local";

/// What a gateway remembers in clear: who it is and which server it pinned. No secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayFile {
    pub server_url: String,
    pub server: ServerIdentity,
    pub gateway_id: String,
    pub name: String,
    /// The user CA's public key (OpenSSH line).
    pub user_ca: String,
}

/// Why a gateway could not be enrolled or opened.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("server identity check failed: {0}")]
    ServerIdentity(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Local(String),
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] portcullis_crypto::CryptoError),
    #[error(transparent)]
    Keystore(#[from] portcullis_keystore::KeystoreError),
}

impl From<portcullis_localdb::LocalDbError> for IdentityError {
    fn from(e: portcullis_localdb::LocalDbError) -> Self {
        IdentityError::Local(e.0)
    }
}

fn local(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Local(e.to_string())
}

pub fn is_enrolled(home: &Path) -> bool {
    home.join(CONFIG).exists()
}

/// Enrols this machine as the gateway a one-time code was issued for.
pub async fn enroll(
    home: &Path,
    server_url: &str,
    code: &str,
    preference: Preference,
    passphrases: &dyn PassphraseSource,
) -> Result<(GatewayFile, StoreKind), IdentityError> {
    if is_enrolled(home) {
        return Err(IdentityError::Local(format!(
            "{} already holds an enrolled gateway; use another PORTCULLIS_HOME",
            home.display()
        )));
    }
    let code = EnrolmentCode::parse(code).map_err(IdentityError::Input)?;
    let link = Link::new(server_url, Pin::Prefix(code.pin.clone()))?;
    let signing = SigningIdentity::generate(&mut OsRng);
    let sealing = SealingIdentity::generate(&mut OsRng);
    let host_key = portcullis_sshcert::random_ed25519();
    let b64 = base64::engine::general_purpose::STANDARD;
    let response: GatewayEnrollResponse = link
        .post(
            "/v1/gateway/enroll",
            &GatewayEnrollRequest {
                code: code.render(),
                sign_public_key: b64.encode(signing.public_key()),
                seal_public_key: b64.encode(sealing.public_key()),
                host_key: portcullis_sshcert::public_openssh(host_key.public_key()),
            },
        )
        .await?;
    if !code.pins(&response.server.tls_fingerprint) {
        return Err(IdentityError::ServerIdentity(
            "the server's certificate does not match the enrolment code; this is not the server that issued it".into(),
        ));
    }
    PublicKey::from_openssh(&response.user_ca)
        .map_err(|_| IdentityError::ServerIdentity("the server sent a malformed user CA key".into()))?;
    portcullis_keystore::create_private_dir(home).map_err(local)?;
    let local_key = SymmetricKey::generate(&mut OsRng);
    let kind = portcullis_keystore::create(
        &home.join(LOCAL_KEY),
        KEY_PURPOSE,
        preference,
        &local_key,
        passphrases,
        &mut OsRng,
    )?;
    let db = LocalDb::open(&home.join(DATABASE)).await?;
    db.put_secret(&local_key, "signing_key", signing.to_secret_bytes().expose_secret()).await?;
    db.put_secret(&local_key, "sealing_key", sealing.to_secret_bytes().expose_secret()).await?;
    let host_key_text = portcullis_sshcert::to_openssh_secret(&host_key).map_err(local)?;
    db.put_secret(&local_key, "host_key", host_key_text.expose_secret().as_bytes()).await?;
    let file = GatewayFile {
        server_url: portcullis_link::server_urls(server_url).collect::<Vec<_>>().join(","),
        server: response.server,
        gateway_id: response.gateway_id,
        name: response.name,
        user_ca: response.user_ca,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(local)?;
    portcullis_keystore::write_private(&home.join(CONFIG), &json).map_err(local)?;
    Ok((file, kind))
}

/// Unlocks an enrolled gateway: its identity, the signed link to the control server and its
/// record log.
pub async fn open(
    home: &Path,
    passphrases: &dyn PassphraseSource,
) -> Result<(Gateway, GatewayFile, StoreKind), IdentityError> {
    let path: PathBuf = home.join(CONFIG);
    if !path.exists() {
        return Err(IdentityError::Local(format!(
            "no gateway is enrolled in {}; run `portcullis gateway enroll --server URL --code CODE`",
            home.display()
        )));
    }
    let file: GatewayFile = serde_json::from_slice(&std::fs::read(&path).map_err(local)?).map_err(local)?;
    let (local_key, kind) = portcullis_keystore::unlock(&home.join(LOCAL_KEY), KEY_PURPOSE, passphrases)?;
    let db = LocalDb::open(&home.join(DATABASE)).await?;
    let signing_bytes = db.secret(&local_key, "signing_key").await?;
    let signing = SigningIdentity::from_secret_bytes(signing_bytes.expose_secret())?;
    let sealing = SealingIdentity::from_secret_bytes(db.secret(&local_key, "sealing_key").await?.expose_secret())?;
    let host_key = db.secret(&local_key, "host_key").await?;
    let server_key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(&file.server.sign_public_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| IdentityError::Local(format!("{} holds a malformed server key", path.display())))?;
    let log = RecordLog::open(
        db,
        local_key,
        &file.gateway_id,
        SigningIdentity::from_secret_bytes(signing_bytes.expose_secret())?,
        server_key,
    )
    .await
    .map_err(local)?;
    let host_key = std::str::from_utf8(host_key.expose_secret())
        .ok()
        .and_then(|t| PrivateKey::from_openssh(t).ok())
        .ok_or_else(|| IdentityError::Local("the gateway's host key does not decode".into()))?;
    let user_ca = PublicKey::from_openssh(&file.user_ca).map_err(local)?;
    let link = Link::new(&file.server_url, Pin::Full(file.server.tls_fingerprint.clone()))?
        .signed_by(file.gateway_id.clone(), signing);
    let config = GatewayConfig { id: file.gateway_id.clone(), name: file.name.clone(), host_key, user_ca };
    Ok((Gateway::new(config, RemoteControl { link, sealing }, log), file, kind))
}
