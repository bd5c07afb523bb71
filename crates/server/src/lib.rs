//! The Portcullis server: the source of truth for users, devices, the vault, access requests,
//! grants and the audit store.
//!
//! A library with a thin binary: [`init`] creates a data directory, [`Server::open`] unlocks it,
//! [`Server::router`] is the HTTP API (axum) and [`Server::serve`] runs it on plain HTTP
//! (loopback) or TLS (rustls, self-signed certificate generated at init). The desktop app can
//! run the same server in-process.
//!
//! Contract: depends on crypto, proto, keystore, store (all SQL is there), axum, rustls. No state lives only in
//! memory that another replica would need (nonces, grants, requests are all in the database).
//!
//! The server also holds the **user CA** ([`user_ca`]): it signs short-lived certificates that
//! open a gateway for one grant. Gateways ask it, per connection, whether a certificate may open
//! a session and for the target's credential ([`Server::authorize_session`] in-process for the
//! embedded gateway, `POST /v1/gateway/sessions` sealed to a remote gateway's key).
//!
//! **Architecture Invariant:** no response to a user's device, log line or error message
//! contains a credential. Credentials are opened only inside [`api::add_target`] /
//! `update_target` (to validate and envelope-encrypt them) and [`api::authorize_session`] (for
//! the gateway brokering one session).

pub mod api;
mod auth;
pub mod client_addr;
pub mod clock;
mod duties;
mod error;
pub mod init;
pub use portcullis_guard::failures as limits;
pub mod listen;
pub mod live;
pub mod metrics;
mod policy;
pub mod tls;
pub use portcullis_sshcert as user_ca;
pub mod webauthn;

pub(crate) use portcullis_store as store;
pub(crate) use portcullis_store::{audit, rows};

pub use clock::{Clock, SystemClock};
pub use error::ServerError;
pub use init::{InitOptions, InitOutcome, init};
pub use portcullis_store::Kind as DatabaseKind;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use portcullis_crypto::{OsRng, SymmetricKey};
use portcullis_keystore::PassphraseSource;
use portcullis_proto::{
    GatewayHeartbeat, GrantStandingRequest, GrantStandingResponse, SessionAuthorizationRequest, UploadAck, UploadBatch,
};
use russh::keys::{PrivateKey, PublicKey};

/// Files in a server data directory.
pub(crate) mod paths {
    pub const ROOT_KEY: &str = "root.key.json";
    pub const DATABASE: &str = "server.db";
    /// The PostgreSQL database a data directory was initialised with (its URL without a
    /// password); absent for SQLite.
    pub const DATABASE_URL: &str = "database.url";
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
    pub(crate) user_ca: user_ca::UserCa,
    pub(crate) embedded_gateway_id: String,
    /// Exec sessions: stdin and stdout are recorded in full up to this many bytes each.
    pub(crate) exec_record_limit: AtomicU64,
    pub(crate) policies: policy::Policies,
    pub(crate) relying_party: webauthn::RelyingParty,
    /// Wakes the embedded gateway's standing check at once after a revocation.
    pub(crate) revocations: Arc<tokio::sync::Notify>,
    /// Wakes the embedded gateway when a rotation is started.
    pub(crate) rotations: Arc<tokio::sync::Notify>,
    /// Authenticates the rows decisions read.
    pub(crate) rows: rows::RowKey,
    /// Failed enrolments per source: rate limit and aggregation.
    pub(crate) failures: limits::FailureLimiter,
    /// Proxies whose `X-Forwarded-For` is believed (see [`client_addr`]); none by default.
    pub(crate) trusted_proxies: std::sync::RwLock<Vec<ipnet::IpNet>>,
}

impl ServerState {
    pub(crate) fn audit_keys(&self) -> audit::Keys<'_> {
        audit::Keys { root: &self.root_key, signing: &self.signing }
    }

    /// Refuses `source` before it tries another code when it failed too often this hour.
    /// (Known here first: a source this replica limited costs no database read.)
    pub(crate) async fn check_failures(&self, what: &'static str, source: std::net::IpAddr) -> Result<(), ServerError> {
        let now = self.clock.now();
        let wait = match self.failures.blocked(what, source, now) {
            Some(wait) => Some(wait),
            None => self
                .db
                .failure_window(what, &limits::source_name(source))
                .await?
                .and_then(|(failures, start)| limits::wait_for(failures, start, now)),
        };
        match wait {
            Some(wait) => Err(ServerError::TooMany(format!(
                "too many failed attempts from {source}; try again in {} minutes",
                (wait + 59) / 60
            ))),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt of `source` and records it in aggregate (see [`limits`]).
    pub(crate) async fn record_failure(
        &self,
        what: &'static str,
        kind: &str,
        source: std::net::IpAddr,
    ) -> Result<(), ServerError> {
        let now = self.clock.now();
        let shared = self
            .db
            .count_failure(what, &limits::source_name(source), now, limits::WINDOW_SECS, limits::MAX_SOURCES as i64)
            .await?;
        if let limits::Failure::Record { attempts, since, limited } = self.failures.counted(what, source, now, shared) {
            let mut tx = self.db.begin().await?;
            let detail = serde_json::json!({ "source": source.to_string(), "attempts": attempts, "since": since,
                "rate_limited": limited });
            self.record_event(&mut tx, now, None, None, kind, detail).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Refuses `row` if it was added or changed behind the server's back (see [`rows`]).
    pub(crate) async fn check_row(&self, row: rows::Row<'_>) -> Result<(), ServerError> {
        Ok(self.rows.check(&mut self.db.conn().await?, row).await?)
    }

    /// Records a security event in the server's own audit log (in the caller's transaction).
    pub(crate) async fn record_event(
        &self,
        tx: &mut store::Tx<'_>,
        now: i64,
        actor: Option<&str>,
        device_id: Option<&str>,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), ServerError> {
        Ok(audit::record_event(tx, &self.audit_keys(), now, actor, device_id, kind, detail).await?)
    }
}

/// What the embedded gateway needs from the server it runs in: its identity, its SSH host key,
/// the key of its local record log, the key that signs its log's checkpoints, the server's key
/// (countersignatures) and the user CA to check certificates against.
pub struct EmbeddedGatewayIdentity {
    pub id: String,
    pub name: String,
    pub host_key: PrivateKey,
    pub local_key: SymmetricKey,
    pub signing: SigningIdentity,
    pub server_key: [u8; 32],
    pub user_ca: PublicKey,
}

#[derive(Clone)]
pub struct Server {
    state: Arc<ServerState>,
    data_dir: PathBuf,
}

impl Server {
    /// Unlocks the root key and opens (and migrates) the database the data directory names.
    pub async fn open(
        data_dir: &Path,
        passphrases: &dyn PassphraseSource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        Self::open_at(data_dir, None, passphrases, clock).await
    }

    /// [`Server::open`] on the database `database` names (`postgres://...`), or else the one the
    /// data directory was initialised with.
    pub async fn open_at(
        data_dir: &Path,
        database: Option<&str>,
        passphrases: &dyn PassphraseSource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        if !data_dir.join(paths::ROOT_KEY).exists() {
            return Err(ServerError::BadRequest(format!(
                "{} is not a Portcullis data directory; run `portcullis server init --data {}` first",
                data_dir.display(),
                data_dir.display()
            )));
        }
        let location = init::database_location(data_dir, database)?;
        let (root_key, _) = portcullis_keystore::unlock(&data_dir.join(paths::ROOT_KEY), "server-root", passphrases)?;
        let db = store::Store::open(&location).await?;
        let signing = SigningIdentity::from_secret_bytes(
            db.server_secret(&root_key, store::SECRET_SIGNING).await?.expose_secret(),
        )?;
        let sealing = SealingIdentity::from_secret_bytes(
            db.server_secret(&root_key, store::SECRET_SEALING).await?.expose_secret(),
        )?;
        let tls = tls::TlsMaterial::load(data_dir, &db, &root_key).await?;
        let rows = rows::RowKey::new(&root_key);
        if db.newly_applied.contains(&store::MIGRATION_ROW_LEDGER) {
            // Settings and separation-of-duty changes got their MAC column in this start: seal
            // them as they are, before anything reads a setting.
            let mut tx = db.begin().await?;
            rows.seal_unsealed(&mut tx, &["user_admin_changes", "server_settings"]).await?;
            tx.commit().await?;
        }
        let ledgered = rows::ledger_len(&mut db.conn().await?).await?;
        if db.setting(&rows, store::SETTING_ROWS_AUTHENTICATED).await?.is_none() && ledgered > 0 {
            // The marker of the one-time sealing is gone but the ledger shows rows were sealed
            // long ago: someone wants unsealed rows sealed now. Refuse rather than launder them.
            return Err(ServerError::Internal(
                "the data directory's marker of row authentication was removed while its row ledger holds \
                 entries (edited behind the server's back); refusing to seal rows again"
                    .into(),
            ));
        }
        if db.setting(&rows, store::SETTING_ROWS_AUTHENTICATED).await?.is_none() {
            // Once, for data directories from before row authentication: the rows as they are.
            let mut tx = db.begin().await?;
            let sealed =
                rows.seal_unsealed(&mut tx, &["users", "devices", "gateways", "policy_sets", "security_keys"]).await?;
            store::Store::put_setting(&mut tx, &rows, store::SETTING_ROWS_AUTHENTICATED, "1").await?;
            tx.commit().await?;
            tracing::info!(rows = sealed, "rows the server decides with are now authenticated");
        }
        if db.newly_applied.contains(&store::MIGRATION_CONFIRMATIONS) {
            // Gateways enrolled before confirmations existed, carried over by that migration in
            // this very start (a row inserted later, behind the server's back, stays unsealed).
            let mut tx = db.begin().await?;
            let carried = store::Store::carried_over_gateway_confirmations(&mut tx).await?;
            for id in &carried {
                rows.seal(&mut tx, rows::Row::GatewayConfirmation(id)).await?;
            }
            tx.commit().await?;
        }
        if db.newly_applied.contains(&store::MIGRATION_ROW_LEDGER) {
            let mut tx = db.begin().await?;
            let entered = rows.anchor_unledgered(&mut tx).await?;
            tx.commit().await?;
            tracing::info!(rows = entered, "sealed rows entered in the new row ledger");
        }
        // Data directories made before gateways existed get their user CA and embedded gateway now.
        let user_ca = Self::ensure_user_ca(&db, &root_key).await?;
        let embedded_gateway_id = Self::ensure_embedded_gateway(&db, &root_key, &rows, clock.now()).await?;
        if db.newly_applied.contains(&store::MIGRATION_ROW_MACS) {
            // Grants, targets and enrolment codes from before their MAC, as they are now (a row
            // inserted later, behind the server's back, stays unsealed and is refused).
            let mut tx = db.begin().await?;
            let sealed = rows
                .seal_unsealed(&mut tx, &["grants", "targets", "enrolment_codes", "reviews", "webauthn_challenges"])
                .await?;
            tx.commit().await?;
            tracing::info!(rows = sealed, "grants, targets and enrolment codes are now authenticated");
        }
        let policies = policy::Policies::load(&db, &rows, clock.now()).await?;
        let relying_party = Self::ensure_relying_party(&db, &rows, &tls.fingerprint).await?;
        let upgraded = audit::migrate(&db, &audit::Keys { root: &root_key, signing: &signing }, clock.now()).await?;
        if upgraded > 0 {
            tracing::info!(rows = upgraded, "the audit store now keeps Merkle logs and per-writer data keys");
        }
        let live = live::Bus::start(db.clone()).await?;
        Ok(Self {
            state: Arc::new(ServerState {
                db,
                root_key,
                signing,
                sealing,
                tls,
                clock,
                live,
                user_ca,
                embedded_gateway_id,
                exec_record_limit: AtomicU64::new(portcullis_proto::DEFAULT_EXEC_RECORD_LIMIT),
                policies,
                relying_party,
                revocations: Arc::new(tokio::sync::Notify::new()),
                rotations: Arc::new(tokio::sync::Notify::new()),
                rows,
                failures: limits::FailureLimiter::default(),
                trusted_proxies: std::sync::RwLock::new(Vec::new()),
            }),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Checks a data directory's audit store end to end, offline, without serving or changing
    /// it (`portcullis server verify --data DIR`): the same checks as `GET /v1/audit/verify`.
    pub async fn verify_data(
        data_dir: &Path,
        database: Option<&str>,
        passphrases: &dyn PassphraseSource,
    ) -> Result<portcullis_proto::AuditVerifyReport, ServerError> {
        if !data_dir.join(paths::ROOT_KEY).exists() {
            return Err(ServerError::BadRequest(format!("{} is not a Portcullis data directory", data_dir.display())));
        }
        let location = init::database_location(data_dir, database)?;
        let (root_key, _) = portcullis_keystore::unlock(&data_dir.join(paths::ROOT_KEY), "server-root", passphrases)?;
        let db = store::Store::open_read_only(&location).await?;
        let signing = SigningIdentity::from_secret_bytes(
            db.server_secret(&root_key, store::SECRET_SIGNING).await?.expose_secret(),
        )?;
        let report = audit::verify_all(&db, &root_key, &signing.public_key()).await;
        db.close().await;
        Ok(report?)
    }

    /// The WebAuthn relying party; data directories made before step-up get a synthetic id.
    async fn ensure_relying_party(
        db: &store::Store,
        rows: &rows::RowKey,
        tls_fingerprint: &str,
    ) -> Result<webauthn::RelyingParty, ServerError> {
        let rp_id = match db.setting(rows, store::SETTING_WEBAUTHN_RP_ID).await? {
            Some(id) => id,
            None => {
                let id = webauthn::choose_rp_id(&[], &portcullis_crypto::sha256_hex(tls_fingerprint.as_bytes()));
                let mut tx = db.begin().await?;
                store::Store::put_setting(&mut tx, rows, store::SETTING_WEBAUTHN_RP_ID, &id).await?;
                tx.commit().await?;
                id
            }
        };
        webauthn::RelyingParty::new(&rp_id)
    }

    /// The WebAuthn relying-party id security keys are registered for.
    pub fn webauthn_rp_id(&self) -> &str {
        &self.state.relying_party.rp_id
    }

    async fn ensure_user_ca(db: &store::Store, root_key: &SymmetricKey) -> Result<user_ca::UserCa, ServerError> {
        if db.server_secret_opt(root_key, store::SECRET_USER_CA).await?.is_none() {
            let text = user_ca::to_openssh_secret(&user_ca::random_ed25519()).map_err(ServerError::Internal)?;
            db.put_server_secret(root_key, store::SECRET_USER_CA, text.expose_secret().as_bytes()).await?;
        }
        let text = db.server_secret(root_key, store::SECRET_USER_CA).await?;
        let text = std::str::from_utf8(text.expose_secret()).map_err(|e| ServerError::Internal(e.to_string()))?;
        user_ca::UserCa::from_openssh(text).map_err(ServerError::Internal)
    }

    async fn ensure_embedded_gateway(
        db: &store::Store,
        root_key: &SymmetricKey,
        rows: &rows::RowKey,
        now: i64,
    ) -> Result<String, ServerError> {
        let id = match db.embedded_gateway().await? {
            Some(gateway) => gateway.id,
            None => {
                let host_key = user_ca::random_ed25519();
                let text = user_ca::to_openssh_secret(&host_key).map_err(ServerError::Internal)?;
                db.put_server_secret(
                    root_key,
                    store::SECRET_EMBEDDED_GATEWAY_HOST_KEY,
                    text.expose_secret().as_bytes(),
                )
                .await?;
                let local = SymmetricKey::generate(&mut OsRng);
                db.put_server_secret(root_key, store::SECRET_EMBEDDED_GATEWAY_LOCAL_KEY, local.expose_bytes()).await?;
                let id = uuid::Uuid::new_v4().to_string();
                let mut tx = db.begin().await?;
                store::Store::insert_gateway(&mut tx, &id, portcullis_proto::EMBEDDED_GATEWAY, true, None, now).await?;
                rows.seal(&mut tx, rows::Row::Gateway(&id)).await?;
                tx.commit().await?;
                let host_key_line = user_ca::public_openssh(host_key.public_key());
                db.gateway_contact(&id, None, Some(&host_key_line), None, now).await?;
                // The MAC and its ledger entry in one transaction.
                let mut tx = db.begin().await?;
                rows.seal(&mut tx, rows::Row::Gateway(&id)).await?;
                tx.commit().await?;
                id
            }
        };
        // Its log's checkpoints are signed with a key of its own (data directories from before
        // Merkle logs get one now).
        if db.server_secret_opt(root_key, store::SECRET_EMBEDDED_GATEWAY_SIGNING_KEY).await?.is_none() {
            let signing = SigningIdentity::generate(&mut OsRng);
            db.put_server_secret(
                root_key,
                store::SECRET_EMBEDDED_GATEWAY_SIGNING_KEY,
                signing.to_secret_bytes().expose_secret(),
            )
            .await?;
            db.set_gateway_sign_key(&id, &signing.public_key()).await?;
            let mut tx = db.begin().await?;
            rows.seal(&mut tx, rows::Row::Gateway(&id)).await?;
            tx.commit().await?;
        }
        let mut tx = db.begin().await?;
        store::Store::adopt_orphan_targets(&mut tx, rows, &id).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The embedded gateway's identity and keys (for `portcullis_gateway` in this process).
    pub async fn embedded_gateway(&self) -> Result<EmbeddedGatewayIdentity, ServerError> {
        let s = &self.state;
        let gateway =
            s.db.gateway(&s.embedded_gateway_id)
                .await?
                .ok_or_else(|| ServerError::Internal("the embedded gateway is missing".into()))?;
        let host_key = s.db.server_secret(&s.root_key, store::SECRET_EMBEDDED_GATEWAY_HOST_KEY).await?;
        let host_key = std::str::from_utf8(host_key.expose_secret())
            .ok()
            .and_then(|t| PrivateKey::from_openssh(t).ok())
            .ok_or_else(|| ServerError::Internal("the embedded gateway's host key is unreadable".into()))?;
        let local = s.db.server_secret(&s.root_key, store::SECRET_EMBEDDED_GATEWAY_LOCAL_KEY).await?;
        let signing = s.db.server_secret(&s.root_key, store::SECRET_EMBEDDED_GATEWAY_SIGNING_KEY).await?;
        Ok(EmbeddedGatewayIdentity {
            id: gateway.id,
            name: gateway.name,
            host_key,
            local_key: SymmetricKey::from_slice(local.expose_secret())?,
            signing: SigningIdentity::from_secret_bytes(signing.expose_secret())?,
            server_key: s.signing.public_key(),
            user_ca: s.user_ca.public_key().clone(),
        })
    }

    /// How much of an exec session's stdin and stdout gateways record in full (each).
    /// The proxies (addresses or networks) whose `X-Forwarded-For` names the client: rate
    /// limits, request records and policies then see the client, not the proxy.
    pub fn set_trusted_proxies(&self, proxies: Vec<ipnet::IpNet>) {
        if let Ok(mut trusted) = self.state.trusted_proxies.write() {
            *trusted = proxies;
        }
    }

    pub fn set_exec_record_limit(&self, bytes: u64) {
        self.state.exec_record_limit.store(bytes, Ordering::Relaxed);
    }

    /// May this certificate open a session through `gateway_id`? The embedded gateway's
    /// in-process path; remote gateways reach the same check over `POST /v1/gateway/sessions`.
    pub async fn authorize_session(
        &self,
        gateway_id: &str,
        req: &SessionAuthorizationRequest,
    ) -> Result<api::Authorization, ServerError> {
        api::authorize_session(&self.state, gateway_id, req).await
    }

    /// Stores a batch of a gateway's records (in-process path of `POST /v1/gateway/records`).
    pub async fn ingest_records(&self, gateway_id: &str, batch: &UploadBatch) -> Result<UploadAck, ServerError> {
        api::ingest_records(&self.state, gateway_id, batch).await
    }

    /// Where a gateway listens and how far behind its sync is.
    pub async fn gateway_heartbeat(&self, gateway_id: &str, beat: &GatewayHeartbeat) -> Result<(), ServerError> {
        api::gateway_heartbeat(&self.state, gateway_id, beat).await
    }

    /// Which grants behind running sessions no longer hold (in-process path of
    /// `POST /v1/gateway/standing`).
    pub async fn grant_standing(&self, req: &GrantStandingRequest) -> Result<GrantStandingResponse, ServerError> {
        api::grant_standing(&self.state, req).await
    }

    /// Pending rotations of `gateway_id`'s targets with both passwords (in-process path of
    /// `POST /v1/gateway/rotations`).
    pub async fn rotation_orders(
        &self,
        gateway_id: &str,
    ) -> Result<
        Vec<(portcullis_proto::RotationOrder, portcullis_crypto::SecretBytes, portcullis_crypto::SecretBytes)>,
        ServerError,
    > {
        api::rotation_orders(&self.state, gateway_id).await
    }

    /// How a rotation went on its target (in-process path of `POST /v1/gateway/rotations/{id}`).
    pub async fn rotation_reported(
        &self,
        gateway_id: &str,
        id: &str,
        report: &portcullis_proto::RotationReport,
    ) -> Result<(), ServerError> {
        api::rotation_reported(&self.state, gateway_id, id, report).await
    }

    /// Ends the check-outs whose grant ran out or was revoked (the background duty, at once).
    pub async fn end_lapsed_checkouts(&self) -> Result<usize, ServerError> {
        api::end_lapsed_checkouts(&self.state).await
    }

    /// Notified when a rotation starts, so the embedded gateway carries it out at once.
    pub fn rotations(&self) -> Arc<tokio::sync::Notify> {
        self.state.rotations.clone()
    }

    /// Notified after every revocation, so the embedded gateway checks at once.
    pub fn revocations(&self) -> Arc<tokio::sync::Notify> {
        self.state.revocations.clone()
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serves `GET /metrics` (Prometheus) on `listener`, which must be on loopback, until
    /// `shutdown`; `handle` is this process's exporter ([`metrics::install`]).
    pub async fn serve_metrics(
        &self,
        listener: tokio::net::TcpListener,
        handle: metrics_exporter_prometheus::PrometheusHandle,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let local = listener.local_addr().map_err(|e| ServerError::Internal(e.to_string()))?;
        if !local.ip().is_loopback() {
            return Err(ServerError::BadRequest(format!(
                "refusing to serve metrics on {local}: --metrics-listen takes a loopback address (scrape it \
                 through an agent or a tunnel on this host)"
            )));
        }
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(metrics::scrape))
            .with_state((self.state.clone(), handle));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServerError::Internal(format!("metrics listener: {e}")))
    }

    /// Which database the store is on.
    pub fn database_kind(&self) -> DatabaseKind {
        self.state.db.kind()
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
        let tls = if use_tls { Some(self.state.tls.server_config()?) } else { None };
        let duties = tokio::spawn(checkout_duty(self.state.clone()));
        let served = listen::serve(listener, tls, self.router(), listen::ConnectionLimits::default(), shutdown).await;
        duties.abort();
        served
    }
}

/// How often the server ends check-outs whose grant ended (and starts their rotations).
const CHECKOUT_DUTY_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

async fn checkout_duty(state: Arc<ServerState>) {
    loop {
        tokio::time::sleep(CHECKOUT_DUTY_EVERY).await;
        match api::end_lapsed_checkouts(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "check-outs whose access ended were checked in"),
            Err(e) => tracing::warn!(error = %e, "cannot end lapsed check-outs"),
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
