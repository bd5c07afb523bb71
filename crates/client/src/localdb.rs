//! The device's local database (SQLite, WAL): device private keys and the audit log, both
//! encrypted under the local key with associated data that binds each value to its row.

use std::path::Path;
use std::str::FromStr;

use portcullis_crypto::{Aad, OsRng, SecretBytes, SymmetricKey};
use portcullis_proto::AuditPayload;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::ClientError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/client");

pub struct LocalDb {
    pool: SqlitePool,
}

fn record_aad(device_id: &str, seq: u64) -> Aad {
    Aad::for_field("records", &format!("{device_id}/{seq}"), 1, "payload")
}

fn secret_aad(name: &str) -> Aad {
    Aad::for_field("device_secrets", name, 1, "ciphertext")
}

fn db_err(e: sqlx::Error) -> ClientError {
    ClientError::Local(format!("local database: {e}"))
}

impl LocalDb {
    pub async fn open(path: &Path) -> Result<Self, ClientError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Full: a record the recorder wrote survives a crash of the machine, not just the app.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(|e| ClientError::Local(format!("local database migration: {e}")))?;
        Ok(Self { pool })
    }

    pub async fn put_secret(&self, key: &SymmetricKey, name: &str, value: &[u8]) -> Result<(), ClientError> {
        let ct = key.seal(&mut OsRng, value, &secret_aad(name))?;
        sqlx::query("INSERT INTO device_secrets (name, ciphertext) VALUES (?, ?)")
            .bind(name)
            .bind(ct)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn secret(&self, key: &SymmetricKey, name: &str) -> Result<SecretBytes, ClientError> {
        let ct: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM device_secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or_else(|| ClientError::Local(format!("device secret {name} is missing")))?;
        key.open(&ct, &secret_aad(name)).map_err(|_| {
            ClientError::Local(format!("device secret {name} does not decrypt: wrong key or tampered database"))
        })
    }

    pub async fn append_record(
        &self,
        key: &SymmetricKey,
        device_id: &str,
        kind: &str,
        payload_json: &str,
        now: f64,
    ) -> Result<u64, ClientError> {
        self.append_records(key, device_id, &[(kind, payload_json)], now).await
    }

    /// Appends `records` (kind, payload JSON) in one transaction — one durable write for the
    /// lot; returns the sequence number of the last one.
    pub async fn append_records(
        &self,
        key: &SymmetricKey,
        device_id: &str,
        records: &[(&str, &str)],
        now: f64,
    ) -> Result<u64, ClientError> {
        // Several processes of one writer append concurrently: take SQLite's write lock before
        // reading the last sequence number, so no two records share one.
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db_err)?;
        let appended = async {
            let last: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM records").fetch_one(&mut *conn).await.map_err(db_err)?;
            let mut seq = last.unwrap_or(0) as u64;
            for (kind, payload_json) in records {
                seq += 1;
                let ct = key.seal(&mut OsRng, payload_json.as_bytes(), &record_aad(device_id, seq))?;
                sqlx::query("INSERT INTO records (seq, kind, created_at, payload) VALUES (?, ?, ?, ?)")
                    .bind(seq as i64)
                    .bind(kind)
                    .bind(now)
                    .bind(ct)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
            }
            Ok::<u64, ClientError>(seq)
        }
        .await;
        let end = if appended.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut *conn).await.map_err(db_err);
        let seq = appended?;
        ended?;
        Ok(seq)
    }

    /// The oldest records not yet acknowledged, decrypted, up to `max_records` / `max_bytes`.
    pub async fn pending_batch(
        &self,
        key: &SymmetricKey,
        device_id: &str,
        max_records: i64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, String)>, ClientError> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, payload FROM records WHERE uploaded_at IS NULL ORDER BY seq LIMIT ?")
                .bind(max_records)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for (seq, ct) in rows {
            let plain = self.open_record(key, device_id, seq as u64, &ct)?;
            bytes += plain.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push((seq as u64, plain));
        }
        Ok(out)
    }

    fn open_record(&self, key: &SymmetricKey, device_id: &str, seq: u64, ct: &[u8]) -> Result<String, ClientError> {
        let plain = key
            .open(ct, &record_aad(device_id, seq))
            .map_err(|_| ClientError::Local(format!("local record {seq} fails verification (tampered or moved)")))?;
        String::from_utf8(plain.expose_secret().clone())
            .map_err(|_| ClientError::Local(format!("local record {seq} is not UTF-8")))
    }

    pub async fn mark_uploaded_through(&self, seq: u64, now: f64) -> Result<(), ClientError> {
        sqlx::query("UPDATE records SET uploaded_at = ? WHERE seq <= ? AND uploaded_at IS NULL")
            .bind(now)
            .bind(seq as i64)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn pending_count(&self) -> Result<u64, ClientError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(n as u64)
    }

    /// Sessions this log started and never ended (their writer stopped under them), in order.
    pub async fn open_sessions(&self, key: &SymmetricKey, writer_id: &str) -> Result<Vec<String>, ClientError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, payload FROM records WHERE kind IN ('session_start', 'session_end') ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut open: Vec<String> = Vec::new();
        let mut ended = std::collections::HashSet::new();
        for (seq, ct) in rows {
            let json = self.open_record(key, writer_id, seq as u64, &ct)?;
            match serde_json::from_str(&json).map_err(|e| ClientError::Local(format!("local record {seq}: {e}")))? {
                AuditPayload::SessionStart(s) => open.push(s.session_id),
                AuditPayload::SessionEnd(e) => {
                    ended.insert(e.session_id);
                }
                _ => {}
            }
        }
        open.retain(|id| !ended.contains(id));
        Ok(open)
    }
}
