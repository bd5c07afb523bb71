//! The Portcullis server: the source of truth for users, devices, the vault, access requests,
//! grants and the audit store.
//!
//! A library with a thin binary: [`init`] creates a data directory, [`Server::open`] unlocks it,
//! [`Server::router`] is the HTTP API (axum) and [`Server::serve`] runs it on plain HTTP
//! (loopback) or TLS (rustls, self-signed certificate generated at init). The desktop app can
//! run the same server in-process.
//!
//! Contract: depends on crypto, proto, keystore, sqlx, axum, rustls. No state lives only in
//! memory that another replica would need (nonces, grants, requests are all in the database).
//!
//! **Architecture Invariant:** no response, log line or error message contains a credential.
//! Credentials are opened only inside [`api::connect`] (to re-seal them to one device) and
//! inside [`api::add_target`] (to validate and envelope-encrypt them).

pub mod api;
mod auth;
pub mod clock;
mod error;
pub mod init;
pub mod live;
mod store;
pub mod tls;

pub use clock::{Clock, SystemClock};
pub use error::ServerError;
pub use init::{InitOptions, InitOutcome, init};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_crypto::SymmetricKey;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use portcullis_keystore::PassphraseSource;

/// Files in a server data directory.
pub(crate) mod paths {
    pub const ROOT_KEY: &str = "root.key.json";
    pub const DATABASE: &str = "server.db";
    pub const TLS_CERT: &str = "tls-cert.pem";
}

/// Shared state of a running server.
pub struct ServerState {
    pub(crate) db: store::Store,
    pub(crate) root_key: SymmetricKey,
    pub(crate) signing: SigningIdentity,
    pub(crate) sealing: SealingIdentity,
    pub(crate) tls: tls::TlsMaterial,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) live: live::Bus,
}

#[derive(Clone)]
pub struct Server {
    state: Arc<ServerState>,
    data_dir: PathBuf,
}

impl Server {
    /// Unlocks the root key and opens (and migrates) the database.
    pub async fn open(
        data_dir: &Path,
        passphrases: &dyn PassphraseSource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        let db_path = data_dir.join(paths::DATABASE);
        if !db_path.exists() {
            return Err(ServerError::BadRequest(format!(
                "{} is not a Portcullis data directory; run `portcullis server init --data {}` first",
                data_dir.display(),
                data_dir.display()
            )));
        }
        let (root_key, _) = portcullis_keystore::unlock(&data_dir.join(paths::ROOT_KEY), "server-root", passphrases)?;
        let db = store::Store::open(&db_path).await?;
        let signing = SigningIdentity::from_secret_bytes(
            db.server_secret(&root_key, store::SECRET_SIGNING).await?.expose_secret(),
        )?;
        let sealing = SealingIdentity::from_secret_bytes(
            db.server_secret(&root_key, store::SECRET_SEALING).await?.expose_secret(),
        )?;
        let tls = tls::TlsMaterial::load(data_dir, &db, &root_key).await?;
        Ok(Self {
            state: Arc::new(ServerState { db, root_key, signing, sealing, tls, clock, live: live::Bus::default() }),
            data_dir: data_dir.to_path_buf(),
        })
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    pub fn tls_fingerprint(&self) -> &str {
        &self.state.tls.fingerprint
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Serves the API until `shutdown` resolves. With `tls`, on rustls with the data
    /// directory's certificate; otherwise plain HTTP, which [`listen_needs_tls`] allows on
    /// loopback only.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        use_tls: bool,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let local = listener.local_addr().map_err(|e| ServerError::Internal(e.to_string()))?;
        if !use_tls && listen_needs_tls(&local) {
            return Err(ServerError::BadRequest(format!(
                "refusing plain HTTP on non-loopback address {local}; TLS is required"
            )));
        }
        if use_tls {
            tls::serve(listener, self.state.tls.server_config()?, self.router(), shutdown).await
        } else {
            axum::serve(listener, self.router())
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|e| ServerError::Internal(e.to_string()))
        }
    }
}

/// A server running inside this process on a loopback port (the desktop's standalone mode).
/// Stops when dropped.
pub struct Embedded {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Serves on `127.0.0.1:port` (0: any free port) over plain HTTP in a background task.
    pub async fn start_embedded(&self, port: u16) -> Result<Embedded, ServerError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| ServerError::Internal(format!("binding loopback port {port}: {e}")))?;
        let url = format!("http://{}", listener.local_addr().map_err(|e| ServerError::Internal(e.to_string()))?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = self.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = server.serve(listener, false, shutdown).await {
                tracing::error!(error = %e, "embedded server stopped");
            }
        });
        Ok(Embedded { url, stop: Some(stop) })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Plain HTTP is allowed on loopback only.
pub fn listen_needs_tls(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}
