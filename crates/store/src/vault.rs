//! The vault: targets and their credentials (envelope-encrypted; authenticated rows).

use crate::rows::{Row, RowKey};
use crate::{Store, StoreError, Tx, on};
use portcullis_crypto::Aad;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub id: String,
    pub name: String,
    pub host: String,
    pub port: i64,
    pub login: String,
    pub host_key: String,
    pub credential_kind: String,
    pub credential_version: i64,
    pub credential_data_key: Vec<u8>,
    pub credential: Vec<u8>,
    pub created_at: i64,
    pub environment: String,
    pub tags: String,
    pub description: String,
    pub last_used_at: Option<i64>,
    /// Resolved to the user's name when read.
    pub last_used_by: Option<String>,
    pub gateway_id: String,
    /// Resolved from `gateway_id` when read.
    pub gateway: String,
}

pub(crate) const TARGET_SELECT: &str = "SELECT t.id, t.name, t.host, t.port, t.login, t.host_key, t.credential_kind, \
     t.credential_version, t.credential_data_key, t.credential, t.created_at, t.environment, t.tags, t.description, \
     t.last_used_at, u.name AS last_used_by, t.gateway_id, g.name AS gateway FROM targets t \
     LEFT JOIN users u ON u.id = t.last_used_by JOIN gateways g ON g.id = t.gateway_id";

/// AAD of a target's credential at rest.
pub fn credential_aad(target_id: &str, version: i64) -> Aad {
    Aad::for_field("targets", target_id, version as u32, "credential")
}

impl Store {
    pub async fn insert_target(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        t: &TargetRow,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let result = on!(tx, ex => sqlx::query(
            "INSERT INTO targets (id, name, host, port, login, host_key, credential_kind, credential_version, \
             credential_data_key, credential, created_by, created_at, environment, tags, description, gateway_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.host)
        .bind(t.port)
        .bind(&t.login)
        .bind(&t.host_key)
        .bind(&t.credential_kind)
        .bind(t.credential_version)
        .bind(&t.credential_data_key)
        .bind(&t.credential)
        .bind(created_by)
        .bind(t.created_at)
        .bind(&t.environment)
        .bind(&t.tags)
        .bind(&t.description)
        .bind(&t.gateway_id)
        .execute(ex).await.map(|r| r.rows_affected()));
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("a target named {:?} already exists", t.name)));
            }
            other => other.map_err(StoreError::from)?,
        };
        rows.seal(tx, Row::Target(&t.id)).await
    }

    pub async fn update_target(tx: &mut Tx<'_>, rows: &RowKey, t: &TargetRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "UPDATE targets SET host = $1, port = $2, login = $3, host_key = $4, credential_kind = $5, \
             credential_version = $6, credential_data_key = $7, credential = $8, environment = $9, tags = $10, \
             description = $11, gateway_id = $12 WHERE id = $13",
        )
        .bind(&t.host)
        .bind(t.port)
        .bind(&t.login)
        .bind(&t.host_key)
        .bind(&t.credential_kind)
        .bind(t.credential_version)
        .bind(&t.credential_data_key)
        .bind(&t.credential)
        .bind(&t.environment)
        .bind(&t.tags)
        .bind(&t.description)
        .bind(&t.gateway_id)
        .bind(&t.id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Target(&t.id)).await
    }

    pub async fn targets(&self) -> Result<Vec<TargetRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{TARGET_SELECT} ORDER BY t.name")).fetch_all(ex).await)?)
    }

    pub async fn target(&self, id: &str) -> Result<Option<TargetRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{TARGET_SELECT} WHERE t.id = $1")).bind(id).fetch_optional(ex).await)?,
        )
    }

    pub async fn target_by_name(&self, name: &str) -> Result<Option<TargetRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{TARGET_SELECT} WHERE t.name = $1")).bind(name).fetch_optional(ex).await)?,
        )
    }

    pub async fn mark_target_used(tx: &mut Tx<'_>, target_id: &str, user_id: &str, now: i64) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("UPDATE targets SET last_used_at = $1, last_used_by = $2 WHERE id = $3")
            .bind(now)
            .bind(user_id)
            .bind(target_id)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
