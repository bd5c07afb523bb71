//! `portcullis server init`: a new data directory with a root key, identities, a TLS
//! certificate and the first admin's enrolment code.

use std::path::Path;
use std::sync::Arc;

use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use portcullis_crypto::{OsRng, SymmetricKey};
use portcullis_keystore::{PassphraseSource, Preference, StoreKind};
use portcullis_proto::Role;

use crate::store::{Location, SECRET_SEALING, SECRET_SIGNING, Store, without_password};
use crate::{Clock, ServerError, paths};

pub struct InitOptions {
    pub key_store: Preference,
    pub admin_name: String,
    /// The first user's roles besides admin (a standalone desktop owner also approves and audits).
    pub extra_admin_roles: Vec<Role>,
    /// Names and addresses the TLS certificate is valid for (besides localhost).
    pub tls_names: Vec<String>,
    /// A desktop's own server: its owner created every other user, so creating a user does
    /// not bar the owner from approving that user's requests (changing roles or groups does).
    pub standalone: bool,
    /// A PostgreSQL database (`postgres://...`) to keep the store in, instead of SQLite in the
    /// data directory. It must hold no Portcullis server yet.
    pub database: Option<String>,
}

pub struct InitOutcome {
    pub key_store: StoreKind,
    pub admin_name: String,
    pub admin_code: String,
    pub tls_fingerprint: String,
}

pub async fn init(
    data_dir: &Path,
    options: InitOptions,
    passphrases: &dyn PassphraseSource,
    clock: Arc<dyn Clock>,
) -> Result<InitOutcome, ServerError> {
    portcullis_proto::check_name("user", &options.admin_name).map_err(ServerError::BadRequest)?;
    let location = match &options.database {
        Some(url) => Location::parse(url)?,
        None => Location::Sqlite(data_dir.join(paths::DATABASE)),
    };
    if data_dir.join(paths::DATABASE).exists() || data_dir.join(paths::ROOT_KEY).exists() {
        return Err(ServerError::Conflict(format!(
            "{} already holds a Portcullis server; refusing to overwrite it (start it with \
             `portcullis server run --data {}`, or choose another --data)",
            data_dir.display(),
            data_dir.display()
        )));
    }
    portcullis_keystore::create_private_dir(data_dir)
        .map_err(|e| ServerError::BadRequest(format!("cannot create {}: {e}", data_dir.display())))?;

    // A PostgreSQL database that already holds a server is never taken over (its secrets stay
    // sealed under another root key): refused before anything is written. (A SQLite store is
    // new: server.db did not exist, checked above.)
    let early = match &location {
        Location::Postgres(_) => Some(Store::open(&location).await?),
        Location::Sqlite(_) => None,
    };
    if let Some(db) = &early
        && db.server_secret_names().await?.next().is_some()
    {
        db.close().await;
        return Err(ServerError::Conflict(format!(
            "{} already holds a Portcullis server; refusing to overwrite it (start a replica with \
             `portcullis server run --data DIR --database URL`, using a copy of that server's data directory)",
            location.describe()
        )));
    }
    if let Location::Postgres(url) = &location {
        // Which database this directory belongs to — without the password (that comes from
        // `--database`, PGPASSWORD or ~/.pgpass at each start).
        std::fs::write(data_dir.join(paths::DATABASE_URL), format!("{}\n", without_password(url)))
            .map_err(|e| ServerError::Internal(format!("cannot write {}: {e}", paths::DATABASE_URL)))?;
    }

    let root = SymmetricKey::generate(&mut OsRng);
    let key_store = portcullis_keystore::create(
        &data_dir.join(paths::ROOT_KEY),
        "server-root",
        options.key_store,
        &root,
        passphrases,
        &mut OsRng,
    )?;

    let db = match early {
        Some(db) => db,
        None => Store::open(&location).await?,
    };
    let signing = SigningIdentity::generate(&mut OsRng);
    db.put_server_secret(&root, SECRET_SIGNING, signing.to_secret_bytes().expose_secret()).await?;
    db.put_server_secret(
        &root,
        SECRET_SEALING,
        SealingIdentity::generate(&mut OsRng).to_secret_bytes().expose_secret(),
    )
    .await?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(options.tls_names.iter().cloned());
    let (tls, pem) = crate::tls::generate(&names)?;
    tls.store(data_dir, &pem, &db, &root).await?;

    let now = clock.now();
    let mut tx = db.begin().await?;
    let admin_id = uuid::Uuid::new_v4().to_string();
    let mut roles = vec![Role::Admin];
    roles.extend(options.extra_admin_roles.iter().copied().filter(|r| *r != Role::Admin));
    let roles = portcullis_proto::roles_to_string(&roles);
    Store::insert_user(&mut tx, &admin_id, &options.admin_name, &roles, now).await?;
    let rows = crate::rows::RowKey::new(&root);
    // What the store's migrations wrote (when session checks began).
    rows.seal_unsealed(&mut tx, &["server_settings"]).await?;
    rows.seal(&mut tx, crate::rows::Row::User(&admin_id)).await?;
    if options.standalone {
        Store::put_setting(&mut tx, &rows, crate::store::SETTING_STANDALONE_OWNER, &admin_id).await?;
    }
    let version = Store::insert_policy(&mut tx, portcullis_policy::DEFAULT_POLICIES, now, None).await?;
    rows.seal(&mut tx, crate::rows::Row::Policy(version)).await?;
    Store::put_setting(&mut tx, &rows, crate::store::SETTING_ROWS_AUTHENTICATED, "1").await?;
    let rp_id =
        crate::webauthn::choose_rp_id(&options.tls_names, &portcullis_crypto::sha256_hex(tls.fingerprint.as_bytes()));
    Store::put_setting(&mut tx, &rows, crate::store::SETTING_WEBAUTHN_RP_ID, &rp_id).await?;
    let code = crate::api::issue_enrolment_code(&mut tx, &rows, &admin_id, &tls.fingerprint, now).await?;
    crate::audit::record_event(
        &mut tx,
        &crate::audit::Keys { root: &root, signing: &signing },
        now,
        None,
        None,
        "server_initialised",
        serde_json::json!({ "admin": options.admin_name, "key_store": key_store.to_string() }),
    )
    .await?;
    tx.commit().await?;
    db.close().await;

    Ok(InitOutcome { key_store, admin_name: options.admin_name, admin_code: code, tls_fingerprint: tls.fingerprint })
}

/// Where a data directory's store is: the `--database` given, else the PostgreSQL database it
/// was initialised with, else SQLite inside it.
pub fn database_location(data_dir: &Path, database: Option<&str>) -> Result<Location, ServerError> {
    let recorded = match std::fs::read_to_string(data_dir.join(paths::DATABASE_URL)) {
        Ok(url) => Some(url.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ServerError::Internal(format!("cannot read {}: {e}", paths::DATABASE_URL))),
    };
    match (database, recorded) {
        (Some(url), _) if url.starts_with("sqlite://") => Err(ServerError::BadRequest(
            "--database takes a PostgreSQL URL; a SQLite store is always the data directory's own server.db".into(),
        )),
        (Some(_), None) if data_dir.join(paths::DATABASE).exists() => Err(ServerError::BadRequest(format!(
            "{} keeps its store in SQLite (server.db); --database would open another store",
            data_dir.display()
        ))),
        (Some(url), _) => Ok(Location::parse(url)?),
        (None, Some(url)) => Ok(Location::parse(&url)?),
        (None, None) => Ok(Location::Sqlite(data_dir.join(paths::DATABASE))),
    }
}
