//! The two backends behind one facade: where the store lives, its pool, transactions and
//! connections, and the `on!` macro that runs one query text on whichever backend is open.
//!
//! Every query is written once (placeholders `$1`, `$2`, ... which both SQLite and PostgreSQL
//! read) and compiled for both backends: `on!` expands its body once per backend, so a query
//! that does not type-check on one of them fails to compile.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
// A connection whose commit failed (a full disk) comes back still counted inside its transaction
// (`is_in_transaction`): the pool closes it rather than hand it out again.
use sqlx::Connection as _;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::StoreError;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/server-sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/server-postgres");

/// PostgreSQL advisory lock every writing transaction takes first: writes are serialised across
/// replicas exactly as SQLite serialises them (`BEGIN IMMEDIATE`). The server's own log, the
/// row ledger's chain and each writer's log are sequences that one writer at a time extends.
const WRITE_LOCK: i64 = 0x706f_7274_6375_6c6c; // "portcull"

/// One value per backend.
pub enum Backend<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }
}

/// Where a server's store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (the embedded default: `server.db` in the data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database: a `postgres://` URL; what it leaves out comes from the usual
    /// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE` variables.
    Postgres(String),
}

impl Location {
    /// A `--database` value: `postgres://...` / `postgresql://...`, or `sqlite://PATH`.
    pub fn parse(value: &str) -> Result<Self, StoreError> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            PgConnectOptions::from_str(value)
                .map_err(|e| StoreError::BadLocation(format!("{}: {e}", redact_url(value))))?;
            Ok(Location::Postgres(value.to_string()))
        } else if let Some(path) = value.strip_prefix("sqlite://") {
            Ok(Location::Sqlite(PathBuf::from(path)))
        } else {
            Err(StoreError::BadLocation(format!(
                "{} is not a database URL: use postgres://USER@HOST/DATABASE (or sqlite://PATH)",
                redact_url(value)
            )))
        }
    }

    /// For messages and logs: never the password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("SQLite {}", path.display()),
            Location::Postgres(url) => format!("PostgreSQL {}", redact_url(url)),
        }
    }
}

/// A URL with its password (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// A URL without its password, to write down (the password comes from the environment).
pub fn without_password(url: &str) -> String {
    redact_url(url).replacen(":***@", "@", 1)
}

#[derive(Clone)]
pub(crate) enum Pool {
    /// With the process's turn to write (see [`Store::sqlite_turn`]).
    Sqlite(SqlitePool, Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

/// The server's store: a pool on one of the two backends.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// Migrations this open applied (upgrades that need the root key finish in `Server::open`).
    pub newly_applied: Vec<i64>,
}

/// A writing transaction. Dropped without [`Tx::commit`], it rolls back.
pub enum Tx<'a> {
    /// Holds the process's turn to write until it ends.
    Sqlite(Transaction<'a, Sqlite>, tokio::sync::OwnedMutexGuard<()>),
    Postgres(Transaction<'a, Postgres>),
}

/// A connection from the pool, for reads that must see one state (several statements).
pub enum Conn {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

/// A transaction or a connection: what a run of statements executes on.
pub trait Connection: Send {
    fn db(&mut self) -> Backend<&mut SqliteConnection, &mut PgConnection>;
}

impl Connection for Tx<'_> {
    fn db(&mut self) -> Backend<&mut SqliteConnection, &mut PgConnection> {
        match self {
            Tx::Sqlite(tx, _) => Backend::Sqlite(&mut **tx),
            Tx::Postgres(tx) => Backend::Postgres(&mut **tx),
        }
    }
}

impl Conn {
    pub(crate) fn db(&mut self) -> Backend<&mut SqliteConnection, &mut PgConnection> {
        Connection::db(self)
    }
}

impl Connection for Conn {
    fn db(&mut self) -> Backend<&mut SqliteConnection, &mut PgConnection> {
        match self {
            Conn::Sqlite(c) => Backend::Sqlite(&mut **c),
            Conn::Postgres(c) => Backend::Postgres(&mut **c),
        }
    }
}

impl Tx<'_> {
    pub(crate) fn db(&mut self) -> Backend<&mut SqliteConnection, &mut PgConnection> {
        Connection::db(self)
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx, _turn) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub fn kind(&self) -> Kind {
        match self {
            Tx::Sqlite(..) => Kind::Sqlite,
            Tx::Postgres(_) => Kind::Postgres,
        }
    }
}

/// Runs `$body` with `$c` bound to the backend's executor of `$db` (a [`Store`]: its pool; a
/// [`Tx`], [`Conn`] or `&mut dyn Connection`: its connection). The body is compiled once per
/// backend.
macro_rules! on {
    ($db:expr, $c:ident => $body:expr) => {
        match $db.db() {
            $crate::Backend::Sqlite($c) => $body,
            $crate::Backend::Postgres($c) => $body,
        }
    };
}
pub(crate) use on;

fn sqlite_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10)))
}

fn postgres_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadLocation(format!("{}: {e}", redact_url(url))))?
        // PostgreSQL's notices ("relation already exists, skipping") are not the operator's concern.
        .options([("client_min_messages", "warning")]))
}

impl Store {
    pub(crate) fn db(&self) -> Backend<&SqlitePool, &PgPool> {
        match &self.pool {
            Pool::Sqlite(p, _) => Backend::Sqlite(p),
            Pool::Postgres(p) => Backend::Postgres(p),
        }
    }

    pub fn kind(&self) -> Kind {
        match self.pool {
            Pool::Sqlite(..) => Kind::Sqlite,
            Pool::Postgres(_) => Kind::Postgres,
        }
    }

    /// Opens the store, creating (SQLite) and migrating it.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        let (pool, migrator) = match location {
            Location::Sqlite(path) => {
                // Writers queue on SQLite's lock (`BEGIN IMMEDIATE`, see `begin`); readers
                // run beside them (WAL).
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                    .connect_with(sqlite_options(path)?.create_if_missing(true))
                    .await?;
                (Pool::Sqlite(pool, Arc::default()), &SQLITE_MIGRATIONS)
            }
            Location::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                    .connect_with(postgres_options(url)?)
                    .await
                    .map_err(|e| StoreError::unreachable(location, e))?;
                (Pool::Postgres(pool), &POSTGRES_MIGRATIONS)
            }
        };
        let mut store = Self { pool, newly_applied: Vec::new() };
        let before = store.applied_migrations().await.unwrap_or_default();
        match &store.pool {
            // Two replicas starting at once: sqlx's migrator takes PostgreSQL's advisory lock.
            Pool::Sqlite(p, _) => migrator.run(p).await?,
            Pool::Postgres(p) => migrator.run(p).await?,
        }
        store.newly_applied = migrator.iter().map(|m| m.version).filter(|v| !before.contains(v)).collect();
        if store.kind() == Kind::Sqlite && store.newly_applied.contains(&crate::MIGRATION_CONFIRMATIONS) {
            // Sessions started before this moment predate authorisation records. (PostgreSQL
            // stores began with authorisations: their migration says 0.)
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            on!(store, ex => sqlx::query("INSERT INTO server_settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(crate::SETTING_SESSION_CHECKS_SINCE)
                .bind(now.to_string())
                .execute(ex)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(store)
    }

    /// Opens a store for reading only, without migrating it (offline verification must not
    /// change what it checks).
    pub async fn open_read_only(location: &Location) -> Result<Self, StoreError> {
        let (pool, migrator) = match location {
            Location::Sqlite(path) => {
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(sqlite_options(path)?.read_only(true))
                    .await?;
                (Pool::Sqlite(pool, Arc::default()), &SQLITE_MIGRATIONS)
            }
            Location::Postgres(url) => {
                let options = postgres_options(url)?.options([("default_transaction_read_only", "on")]);
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .map_err(|e| StoreError::unreachable(location, e))?;
                (Pool::Postgres(pool), &POSTGRES_MIGRATIONS)
            }
        };
        let store = Self { pool, newly_applied: Vec::new() };
        let applied = store.applied_migrations().await?;
        if migrator.iter().any(|m| !applied.contains(&m.version)) {
            return Err(StoreError::Outdated(
                "this store is from an older version; start the server once to upgrade it, then verify".into(),
            ));
        }
        Ok(store)
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(ex).await)?,
        )
    }

    /// Whether the database answers and every migration this build knows is applied (for
    /// `/readyz`).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let applied = self.applied_migrations().await?;
        let migrator = match self.kind() {
            Kind::Sqlite => &SQLITE_MIGRATIONS,
            Kind::Postgres => &POSTGRES_MIGRATIONS,
        };
        match migrator.iter().find(|m| !applied.contains(&m.version)) {
            Some(m) => Err(StoreError::Outdated(format!("migration {} is not applied", m.version))),
            None => Ok(()),
        }
    }

    /// On SQLite, this process's turn to write, taken before SQLite's own write lock: writers
    /// queue here, in order, instead of in SQLite's busy handler — which sleeps 1, 2, 5 … up to
    /// 100 ms between tries and made a busy second's slowest calls wait that long. (Another
    /// process on the same file still meets the busy handler.) `None` on PostgreSQL.
    pub(crate) async fn sqlite_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.pool {
            Pool::Sqlite(_, turn) => Some(turn.clone().lock_owned().await),
            Pool::Postgres(_) => None,
        }
    }

    /// A writing transaction. Writers are serialised (see [`WRITE_LOCK`] and
    /// [`Store::sqlite_turn`]), so a transaction that reads a sequence's head and extends it
    /// never races another.
    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        match &self.pool {
            // Deferred transactions that read and then write fail with SQLITE_BUSY when another
            // connection wrote in between; IMMEDIATE takes the write lock first (and waits).
            Pool::Sqlite(p, turn) => {
                let turn = turn.clone().lock_owned().await;
                Ok(Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?, turn))
            }
            // BEGIN and the lock in one round trip (a simple query of two statements): the
            // write lock is held for as few round trips as the transaction needs.
            Pool::Postgres(p) => {
                Ok(Tx::Postgres(p.begin_with(format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")).await?))
            }
        }
    }

    /// A connection of the pool (several reads in a row).
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        Ok(match &self.pool {
            Pool::Sqlite(p, _) => Conn::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// (connections open, of which idle), for metrics.
    pub fn pool_use(&self) -> (u32, u32) {
        match &self.pool {
            Pool::Sqlite(p, _) => (p.size(), p.num_idle() as u32),
            Pool::Postgres(p) => (p.size(), p.num_idle() as u32),
        }
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p, _) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migration that lets requests and grants name secrets rebuilds both tables in SQLite:
    /// every row comes back with its rowid, what references them still resolves, and the new
    /// rules hold (a target or a secret, never both; SSH access only to a target).
    #[tokio::test]
    async fn the_secret_access_rebuild_keeps_every_request_grant_and_reference() {
        const REBUILD: i64 = 20261202000002;
        let dir = tempfile::tempdir().unwrap();
        let before = dir.path().join("before");
        std::fs::create_dir(&before).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/server-sqlite");
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let version: i64 = name.split('_').next().unwrap().parse().unwrap();
            if version < REBUILD {
                std::fs::copy(&path, before.join(&name)).unwrap();
            }
        }
        let options = sqlite_options(&dir.path().join("s.db")).unwrap().create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(before.as_path()).await.unwrap().run(&pool).await.unwrap();
        for statement in [
            "INSERT INTO users (id, name, roles, created_at) VALUES ('u1', 'alice', 'requester', 1), ('u2', 'bob', 'approver', 1)",
            "INSERT INTO devices (id, user_id, name, sign_public_key, seal_public_key, created_at) VALUES ('d1', 'u1', 'x', x'00', x'00', 1)",
            "INSERT INTO targets (id, name, host, port, login, host_key, credential_kind, credential_version, \
             credential_data_key, credential, created_by, created_at) VALUES ('t1', 'web', 'h', 22, 'root', 'k', 'password', 1, x'00', x'00', 'u2', 1)",
            "INSERT INTO access_requests (id, user_id, device_id, target_id, duration_secs, reason, status, created_at, \
             expires_at, approvals_needed) VALUES ('r0', 'u1', 'd1', 't1', 60, 'x', 'denied', 1, 2, 1), \
             ('r1', 'u1', 'd1', 't1', 60, 'y', 'approved', 3, 4, 2)",
            "INSERT INTO reviews (request_id, approver_id, decision, at) VALUES ('r1', 'u2', 'approve', 3)",
            "INSERT INTO grants (id, request_id, user_id, device_id, target_id, not_before, not_after, signed, mac) \
             VALUES ('g1', 'r1', 'u1', 'd1', 't1', 3, 63, '{}', x'0102')",
            "INSERT INTO user_certificates (serial, grant_id, key_fingerprint, issued_at, valid_before) VALUES (7, 'g1', 'f', 3, 63)",
            "INSERT INTO session_authorizations (id, writer_id, grant_id, user_name, target, login, authorized_at) \
             VALUES ('s1', 'w', 'g1', 'alice', 'web', 'root', 3)",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        let rowids =
            "SELECT group_concat(id || ':' || rowid, ',') FROM (SELECT id, rowid FROM access_requests ORDER BY id)";
        let before_rowids: String = sqlx::query_scalar(rowids).fetch_one(&pool).await.unwrap();

        SQLITE_MIGRATIONS.run(&pool).await.unwrap();
        let after_rowids: String = sqlx::query_scalar(rowids).fetch_one(&pool).await.unwrap();
        assert_eq!(after_rowids, before_rowids);
        let grant: (String, String, Vec<u8>, String) =
            sqlx::query_as("SELECT request_id, target_id, mac, access FROM grants WHERE id = 'g1'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(grant, ("r1".into(), "t1".into(), vec![1, 2], "ssh".into()));
        let orphans: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check").fetch_all(&pool).await.unwrap();
        assert!(orphans.is_empty(), "{orphans:?}");
        let joined: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM session_authorizations s JOIN grants g ON g.id = s.grant_id \
             JOIN user_certificates c ON c.grant_id = g.id JOIN reviews v ON v.request_id = g.request_id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(joined, 1);
        // The new rules: a request names a target or a secret, and SSH access is to a target.
        let both = sqlx::query(
            "INSERT INTO access_requests (id, user_id, device_id, target_id, secret_id, access, duration_secs, reason, \
             status, created_at, expires_at) VALUES ('r2', 'u1', 'd1', 't1', NULL, 'use', 60, 'x', 'pending', 5, 6)",
        )
        .execute(&pool)
        .await;
        assert!(both.is_err(), "SSH's target with access `use` was accepted");
        let orphan = sqlx::query("INSERT INTO user_certificates (serial, grant_id, key_fingerprint, issued_at, valid_before) VALUES (8, 'nope', 'f', 3, 63)")
            .execute(&pool)
            .await;
        assert!(orphan.is_err(), "foreign keys are enforced again after the rebuild");
    }

    #[test]
    fn a_written_down_url_has_no_password() {
        assert_eq!(without_password("postgres://pc:s3cret@db:5432/pc"), "postgres://pc@db:5432/pc");
        assert_eq!(without_password("postgres://db/pc"), "postgres://db/pc");
        assert_eq!(without_password("postgres://a:b:c@db/pc"), "postgres://a@db/pc");
    }

    #[test]
    fn locations_parse_and_never_show_a_password() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "postgres://portcullis:hunter2@db.internal:5432/pc",
                Some("PostgreSQL postgres://portcullis:***@db.internal:5432/pc"),
            ),
            ("postgresql://db/pc?sslmode=require", Some("PostgreSQL postgresql://db/pc?sslmode=require")),
            ("postgres://", Some("PostgreSQL postgres://")),
            ("postgres://u@h/d", Some("PostgreSQL postgres://u@h/d")),
            ("sqlite:///var/lib/pc/server.db", Some("SQLite /var/lib/pc/server.db")),
            ("mysql://root:pw@h/d", None),
            ("/var/lib/server.db", None),
        ];
        for (input, expected) in cases {
            match (Location::parse(input), expected) {
                (Ok(location), Some(expected)) => assert_eq!(&location.describe(), expected, "{input}"),
                (Err(e), None) => assert!(!e.to_string().contains("pw@"), "{input}: {e}"),
                (got, expected) => panic!("{input}: got {:?}, expected {expected:?}", got.map(|l| l.describe())),
            }
        }
    }
}
