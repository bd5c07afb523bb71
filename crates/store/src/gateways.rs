//! Gateways, their enrolment codes and contact, and the user certificates issued for gateways
//! to check.

use crate::StoreError;
use crate::rows::{Row, RowKey};
use crate::{Store, Tx, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GatewayRow {
    pub id: String,
    pub name: String,
    pub embedded: bool,
    pub sign_public_key: Option<Vec<u8>>,
    pub seal_public_key: Option<Vec<u8>>,
    pub host_key: Option<String>,
    pub address: Option<String>,
    pub created_at: i64,
    pub enrolled_at: Option<i64>,
    pub last_contact_at: Option<i64>,
    pub backlog: i64,
    pub revoked_at: Option<i64>,
}

const GATEWAY_SELECT: &str = "SELECT id, name, (embedded <> 0) AS embedded, sign_public_key, seal_public_key, host_key, address, \
     created_at, enrolled_at, last_contact_at, backlog, revoked_at FROM gateways";

impl Store {
    /// Notes that `writer_id` was allowed to open a session under a grant (see `ingest`).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_session_authorization(
        tx: &mut Tx<'_>,
        id: &str,
        writer_id: &str,
        grant_id: &str,
        user: &str,
        target: &str,
        login: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO session_authorizations (id, writer_id, grant_id, user_name, target, login, authorized_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(writer_id)
        .bind(grant_id)
        .bind(user)
        .bind(target)
        .bind(login)
        .bind(now)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Authorisations matching what a gateway says a session was: ids, oldest first.
    pub async fn session_authorizations(
        tx: &mut Tx<'_>,
        writer_id: &str,
        grant_id: &str,
        user: &str,
        target: &str,
        login: &str,
        until: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar(
            "SELECT id FROM session_authorizations WHERE writer_id = $1 AND grant_id = $2 AND user_name = $3 \
             AND target = $4 AND login = $5 AND authorized_at <= $6 ORDER BY authorized_at",
        )
        .bind(writer_id)
        .bind(grant_id)
        .bind(user)
        .bind(target)
        .bind(login)
        .bind(until)
        .fetch_all(ex).await)?)
    }

    /// A gateway's confirmation: (confirmed by, via, hex of the confirmed signing key).
    pub async fn gateway_confirmation(
        &self,
        gateway_id: &str,
    ) -> Result<Option<(Option<String>, String, String)>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as("SELECT confirmed_by, via, sign_public_key FROM gateway_confirmations WHERE gateway_id = $1")
            .bind(gateway_id)
            .fetch_optional(ex).await)?,
        )
    }

    pub async fn insert_gateway_confirmation(
        tx: &mut Tx<'_>,
        gateway_id: &str,
        by: &str,
        via: &str,
        sign_public_key_hex: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO gateway_confirmations (gateway_id, confirmed_by, via, sign_public_key, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(gateway_id)
        .bind(by)
        .bind(via)
        .bind(sign_public_key_hex)
        .bind(now)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn gateway_created_by(&self, gateway_id: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(self, ex => sqlx::query_scalar("SELECT created_by FROM gateways WHERE id = $1")
            .bind(gateway_id)
            .fetch_optional(ex).await)?
        .flatten())
    }

    /// False if it was already revoked.
    pub async fn revoke_gateway(tx: &mut Tx<'_>, gateway_id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(
            on!(tx, ex => sqlx::query("UPDATE gateways SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND embedded = 0")
            .bind(now)
            .bind(gateway_id)
            .execute(ex).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Ids of the targets reached through a gateway.
    pub async fn targets_on_gateway(&self, gateway_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(on!(self, ex => sqlx::query_scalar("SELECT id FROM targets WHERE gateway_id = $1")
            .bind(gateway_id)
            .fetch_all(ex).await)?)
    }

    pub async fn insert_gateway(
        tx: &mut Tx<'_>,
        id: &str,
        name: &str,
        embedded: bool,
        created_by: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let result = on!(tx, ex => sqlx::query("INSERT INTO gateways (id, name, embedded, created_at, created_by) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(name)
                .bind(i64::from(embedded))
                .bind(now)
                .bind(created_by)
                .execute(ex).await.map(|r| r.rows_affected()));
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!("a gateway named {name:?} already exists")))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// The embedded gateway's checkpoint key (it signs no API calls: it runs in-process).
    pub async fn set_gateway_sign_key(&self, id: &str, key: &[u8]) -> Result<(), StoreError> {
        let _turn = self.sqlite_turn().await;
        on!(self, ex => sqlx::query("UPDATE gateways SET sign_public_key = $1 WHERE id = $2 AND embedded = 1")
            .bind(key)
            .bind(id)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn gateways(&self) -> Result<Vec<GatewayRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{GATEWAY_SELECT} ORDER BY embedded DESC, name")).fetch_all(ex).await)?,
        )
    }

    pub async fn gateway(&self, id: &str) -> Result<Option<GatewayRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{GATEWAY_SELECT} WHERE id = $1")).bind(id).fetch_optional(ex).await)?,
        )
    }

    pub async fn gateway_by_name(&self, name: &str) -> Result<Option<GatewayRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{GATEWAY_SELECT} WHERE name = $1")).bind(name).fetch_optional(ex).await)?,
        )
    }

    pub async fn embedded_gateway(&self) -> Result<Option<GatewayRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{GATEWAY_SELECT} WHERE embedded = 1")).fetch_optional(ex).await)?)
    }

    /// Targets created before gateways existed are reached through the embedded one.
    pub async fn adopt_orphan_targets(tx: &mut Tx<'_>, rows: &RowKey, embedded_id: &str) -> Result<(), StoreError> {
        let adopted: Vec<String> = on!(tx, ex => sqlx::query_scalar("UPDATE targets SET gateway_id = $1 WHERE gateway_id IS NULL RETURNING id")
                .bind(embedded_id)
                .fetch_all(ex).await)?;
        for id in &adopted {
            rows.seal(tx, Row::Target(id)).await?;
        }
        Ok(())
    }

    pub async fn gateway_target_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as("SELECT gateway_id, COUNT(*) FROM targets GROUP BY gateway_id").fetch_all(ex).await)?,
        )
    }

    pub async fn insert_gateway_code(
        tx: &mut Tx<'_>,
        code_hash: &str,
        gateway_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO gateway_enrolment_codes (code_hash, gateway_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(code_hash)
        .bind(gateway_id)
        .bind(now)
        .bind(expires_at)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks an unused, unexpired gateway code as used; the gateway it enrols, if any.
    pub async fn consume_gateway_code(
        tx: &mut Tx<'_>,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar(
            "UPDATE gateway_enrolment_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
             AND expires_at > $1 RETURNING gateway_id",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(ex).await)?)
    }

    /// Records a gateway's keys; its name.
    pub async fn enrol_gateway(
        tx: &mut Tx<'_>,
        id: &str,
        sign_public_key: &[u8],
        seal_public_key: &[u8],
        host_key: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        on!(tx, ex => sqlx::query_scalar(
            "UPDATE gateways SET sign_public_key = $1, seal_public_key = $2, host_key = $3, enrolled_at = $4, \
             last_contact_at = $5 WHERE id = $6 AND enrolled_at IS NULL RETURNING name",
        )
        .bind(sign_public_key)
        .bind(seal_public_key)
        .bind(host_key)
        .bind(now)
        .bind(now)
        .bind(id)
        .fetch_optional(ex).await)?
        .ok_or_else(|| StoreError::Conflict("this gateway is already enrolled".into()))
    }

    pub async fn gateway_contact(
        &self,
        id: &str,
        address: Option<&str>,
        host_key: Option<&str>,
        backlog: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.sqlite_turn().await;
        on!(self, ex => sqlx::query(
            "UPDATE gateways SET last_contact_at = $1, address = COALESCE($2, address), \
             host_key = COALESCE($3, host_key), backlog = COALESCE($4, backlog) WHERE id = $5",
        )
        .bind(now)
        .bind(address)
        .bind(host_key)
        .bind(backlog.map(|b| b as i64))
        .bind(id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn insert_user_certificate(
        tx: &mut Tx<'_>,
        serial: u64,
        grant_id: &str,
        key_fingerprint: &str,
        now: i64,
        valid_before: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO user_certificates (serial, grant_id, key_fingerprint, issued_at, valid_before) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(serial as i64)
        .bind(grant_id)
        .bind(key_fingerprint)
        .bind(now)
        .bind(valid_before)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// (grant id, key fingerprint) of an issued certificate.
    pub async fn user_certificate(&self, serial: u64) -> Result<Option<(String, String)>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as("SELECT grant_id, key_fingerprint FROM user_certificates WHERE serial = $1")
            .bind(serial as i64)
            .fetch_optional(ex).await)?)
    }
}

impl Store {
    /// Gateways whose confirmation the confirmations migration carried over and no start has
    /// sealed yet.
    pub async fn carried_over_gateway_confirmations(tx: &mut Tx<'_>) -> Result<Vec<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar(
            "SELECT gateway_id FROM gateway_confirmations WHERE via = 'before_confirmations' AND mac IS NULL",
        )
        .fetch_all(ex)
        .await)?)
    }
}

impl Store {
    /// Per gateway: (name, sessions it has not reported ended, upload backlog it last reported).
    pub async fn gateway_facts(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT g.name, (SELECT COUNT(*) FROM sessions s WHERE s.writer_id = g.id AND s.ended_at IS NULL), \
             g.backlog FROM gateways g WHERE g.revoked_at IS NULL ORDER BY g.name",
        )
        .fetch_all(ex)
        .await)?)
    }
}
