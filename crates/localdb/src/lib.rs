//! The local database of a device or a gateway (SQLite, WAL): private keys encrypted under
//! the local key with associated data that binds each value to its row, and — for a gateway,
//! with the `records` feature — the writer's audit log ([`records`]).
//!
//! Contract: the only SQL outside the server's store crate. Depends on crypto, sqlx (SQLite)
//! and, for records, tlog and proto. A device build has no record-log code.

use std::path::Path;
use std::str::FromStr;

use portcullis_crypto::{Aad, OsRng, SecretBytes, SymmetricKey};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[cfg(feature = "records")]
pub mod records;

/// The one migration set of every local database: a device's and a gateway's have one schema
/// (a device's `records` tables stay empty).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/local");

/// What went wrong with the local database, in words for the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LocalDbError(pub String);

impl From<portcullis_crypto::CryptoError> for LocalDbError {
    fn from(e: portcullis_crypto::CryptoError) -> Self {
        LocalDbError(format!("cryptographic failure: {e}"))
    }
}

pub struct LocalDb {
    pub(crate) pool: SqlitePool,
}

fn secret_aad(name: &str) -> Aad {
    Aad::for_field("device_secrets", name, 1, "ciphertext")
}

pub(crate) fn db_err(e: sqlx::Error) -> LocalDbError {
    LocalDbError(format!("local database: {e}"))
}

impl LocalDb {
    pub async fn open(path: &Path) -> Result<Self, LocalDbError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db_err)?
            .create_if_missing(true)
            // New databases: 16 KiB pages. A bulk session's records are chunks of tens of KiB
            // (measured: 256 MiB of exec input costs the gateway ~20% less CPU than with 4 KiB
            // pages); larger pages made each small append (a keystroke chunk a second) write
            // too much WAL. The WAL is checkpointed at 4 MiB, as with SQLite's default.
            .page_size(16 * 1024)
            .pragma("wal_autocheckpoint", "256")
            .journal_mode(SqliteJournalMode::Wal)
            // Full: a record the recorder wrote survives a crash of the machine, not just the app.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(|e| LocalDbError(format!("local database migration: {e}")))?;
        Ok(Self { pool })
    }

    pub async fn put_secret(&self, key: &SymmetricKey, name: &str, value: &[u8]) -> Result<(), LocalDbError> {
        let ct = key.seal(&mut OsRng, value, &secret_aad(name))?;
        sqlx::query("INSERT INTO device_secrets (name, ciphertext) VALUES (?, ?)")
            .bind(name)
            .bind(ct)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn secret(&self, key: &SymmetricKey, name: &str) -> Result<SecretBytes, LocalDbError> {
        let ct: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM device_secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or_else(|| LocalDbError(format!("device secret {name} is missing")))?;
        key.open(&ct, &secret_aad(name))
            .map_err(|_| LocalDbError(format!("device secret {name} does not decrypt: wrong key or tampered database")))
    }
}
