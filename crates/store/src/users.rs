//! Users, their enrolment codes and devices, and the replay nonces of signed requests.

use crate::rows::{Row, RowKey};
use crate::{Store, StoreError, Tx, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub roles: String,
    pub disabled_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub user_id: String,
    pub sign_public_key: Vec<u8>,
    pub seal_public_key: Vec<u8>,
    pub revoked_at: Option<i64>,
}

/// A comma-separated column (roles, groups, tags, policy ids) as a list.
pub fn csv_list(csv: &str) -> Vec<String> {
    csv.split(',').filter(|x| !x.is_empty()).map(String::from).collect()
}

impl Store {
    pub async fn insert_user(tx: &mut Tx<'_>, id: &str, name: &str, roles: &str, now: i64) -> Result<(), StoreError> {
        let result = on!(tx, ex => sqlx::query("INSERT INTO users (id, name, roles, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(roles)
            .bind(now)
            .execute(ex).await.map(|r| r.rows_affected()));
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!("a user named {name:?} already exists")))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    pub async fn insert_enrolment_code(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        code_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("INSERT INTO enrolment_codes (code_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(code_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::EnrolmentCode(code_hash)).await
    }

    /// Marks an unused, unexpired code as used and returns its user; `None` otherwise. A code
    /// row added or changed behind the server's back (a fresh code for an admin, a used one
    /// made unused) is refused.
    pub async fn consume_enrolment_code(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<UserRow>, StoreError> {
        rows.check(tx, Row::EnrolmentCode(code_hash)).await?;
        let user_id: Option<String> = on!(tx, ex => sqlx::query_scalar(
            "UPDATE enrolment_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(ex).await)?;
        let Some(user_id) = user_id else { return Ok(None) };
        rows.seal(tx, Row::EnrolmentCode(code_hash)).await?;
        Ok(on!(tx, ex => sqlx::query_as("SELECT id, name, roles, disabled_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(ex).await)?)
    }

    pub async fn insert_device(tx: &mut Tx<'_>, device: &DeviceRow, name: &str, now: i64) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO devices (id, user_id, name, sign_public_key, seal_public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&device.id)
        .bind(&device.user_id)
        .bind(name)
        .bind(&device.sign_public_key)
        .bind(&device.seal_public_key)
        .bind(now)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn device_with_user(&self, device_id: &str) -> Result<Option<(DeviceRow, UserRow)>, StoreError> {
        let device: Option<DeviceRow> = on!(self, ex => sqlx::query_as(
            "SELECT id, user_id, sign_public_key, seal_public_key, revoked_at FROM devices WHERE id = $1",
        )
        .bind(device_id)
        .fetch_optional(ex).await)?;
        let Some(device) = device else { return Ok(None) };
        let user: UserRow = on!(self, ex => sqlx::query_as("SELECT id, name, roles, disabled_at FROM users WHERE id = $1")
            .bind(&device.user_id)
            .fetch_one(ex).await)?;
        Ok(Some((device, user)))
    }

    /// Records a request nonce; false if this device already used it (a replay).
    pub async fn remember_nonce(
        &self,
        device_id: &str,
        nonce: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        // One statement, outside the write lock: the primary key decides, on every replica at
        // once. Expired nonces are deleted now and then (a request that old fails its time
        // check before its nonce is looked at).
        let _turn = self.sqlite_turn().await;
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(64) {
            on!(self, ex => sqlx::query("DELETE FROM request_nonces WHERE expires_at < $1").bind(now).execute(ex).await.map(|r| r.rows_affected()))?;
        }
        let inserted = on!(self, ex => sqlx::query(
            "INSERT INTO request_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(device_id)
        .bind(nonce)
        .bind(expires_at)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(inserted == 1)
    }

    // ---- targets ----
}
