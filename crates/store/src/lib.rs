//! The server's store: one facade (`Store`, `Tx`) over SQLite (the embedded default) and
//! PostgreSQL (for teams). All SQL of the server lives in this crate; each query is written once
//! and compiled for both backends (see `backend`).
//!
//! Contract: callers get typed rows and typed operations, never a pool or a query. Rows that
//! decisions read are authenticated here (`rows`): a row changed behind the server's back is
//! refused, whichever backend holds it.

use portcullis_crypto::{Aad, OsRng, SecretBytes, SymmetricKey};

mod backend;
pub(crate) use backend::on;
pub use backend::{Backend, Conn, Connection, Kind, Location, Store, Tx, redact_url, without_password};

mod error;
pub use error::StoreError;

mod access;
pub mod audit;
mod gateways;
pub mod limits;
pub mod live;
pub mod rows;
pub use access::{
    ChallengeRow, DeviceDetailRow, GroupRow, PolicyRow, ReviewRow, SETTING_ROWS_AUTHENTICATED,
    SETTING_SESSION_CHECKS_SINCE, SETTING_STANDALONE_OWNER, SETTING_WEBAUTHN_RP_ID, SecurityKeyRow, UserDetailRow,
};
pub use gateways::GatewayRow;
use rows::{Row, RowKey};

pub const SECRET_SIGNING: &str = "signing_key";
pub const SECRET_SEALING: &str = "sealing_key";
pub const SECRET_TLS: &str = "tls_key";
/// The user CA (OpenSSH private key text): signs users' short-lived certificates.
pub const SECRET_USER_CA: &str = "user_ca";
/// The embedded gateway's SSH host key (OpenSSH private key text).
pub const SECRET_EMBEDDED_GATEWAY_HOST_KEY: &str = "embedded_gateway_host_key";
/// The key of the embedded gateway's local record log.
pub const SECRET_EMBEDDED_GATEWAY_LOCAL_KEY: &str = "embedded_gateway_local_key";
/// The embedded gateway's Ed25519 key: signs its log's checkpoints.
pub const SECRET_EMBEDDED_GATEWAY_SIGNING_KEY: &str = "embedded_gateway_signing_key";

/// The migration that introduced gateway confirmations (carried-over rows are sealed after it).
pub const MIGRATION_CONFIRMATIONS: i64 = 20261201000001;
/// The migration that gave grants, targets and enrolment codes their MAC (existing rows are
/// sealed in the start that applies it).
pub const MIGRATION_ROW_MACS: i64 = 20261201000002;
/// The migration that created the row ledger (rows sealed before it are entered in the start
/// that applies it).
pub const MIGRATION_ROW_LEDGER: i64 = 20261201000003;

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

const TARGET_SELECT: &str = "SELECT t.id, t.name, t.host, t.port, t.login, t.host_key, t.credential_kind, \
     t.credential_version, t.credential_data_key, t.credential, t.created_at, t.environment, t.tags, t.description, \
     t.last_used_at, u.name AS last_used_by, t.gateway_id, g.name AS gateway FROM targets t \
     LEFT JOIN users u ON u.id = t.last_used_by JOIN gateways g ON g.id = t.gateway_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: String,
    pub user_id: String,
    pub requester: String,
    pub device_id: String,
    pub target_id: String,
    pub target: String,
    pub duration_secs: i64,
    pub reason: String,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
    pub grant_not_after: Option<i64>,
    pub grant_id: Option<String>,
    pub source_ip: Option<String>,
    pub approvals: i64,
    pub approvals_needed: i64,
    /// Comma-separated.
    pub approver_groups: String,
    /// Comma-separated policy `@id`s.
    pub permitted_by: String,
    pub policy_version: Option<i64>,
    /// The pending request's withdrawal or the grant's revocation, whichever happened.
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: String,
    pub request_id: String,
    pub not_after: i64,
    pub signed: String,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub writer_id: String,
    pub user_name: String,
    pub target: String,
    pub login: String,
    pub grant_id: String,
    pub command: Option<String>,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub exit_status: Option<i64>,
    pub end_reason: Option<String>,
    pub kind: String,
}

/// A record to store: `payload` is sealed under its writer's data key.
pub struct NewRecord {
    pub seq: u64,
    pub kind: String,
    pub session_id: Option<String>,
    pub payload_sha256: String,
    pub payload: Vec<u8>,
    pub leaf: portcullis_tlog::Hash,
    /// Why the payload is missing (the writer sent only the leaf).
    pub lost: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

const REQUEST_SELECT: &str = "SELECT r.id, r.user_id, u.name AS requester, r.device_id, r.target_id, t.name AS target, \
     r.duration_secs, r.reason, r.status, r.created_at, r.expires_at, d.name AS decided_by, r.decided_at, \
     r.decision_reason, g.not_after AS grant_not_after, g.id AS grant_id, r.source_ip, \
     (SELECT COUNT(*) FROM reviews v WHERE v.request_id = r.id AND v.decision = 'approve') AS approvals, \
     r.approvals_needed, r.approver_groups, r.permitted_by, r.policy_version, \
     COALESCE(g.revoked_at, r.revoked_at) AS revoked_at, COALESCE(gu.name, ru.name) AS revoked_by, \
     COALESCE(g.revoke_reason, r.revoke_reason) AS revoke_reason \
     FROM access_requests r JOIN users u ON u.id = r.user_id JOIN targets t ON t.id = r.target_id \
     LEFT JOIN users d ON d.id = r.decided_by LEFT JOIN grants g ON g.request_id = r.id \
     LEFT JOIN users gu ON gu.id = g.revoked_by LEFT JOIN users ru ON ru.id = r.revoked_by";

fn secret_aad(name: &str) -> Aad {
    Aad::for_field("server_secrets", name, 1, "ciphertext")
}

impl Store {
    pub async fn put_server_secret(&self, root: &SymmetricKey, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let ct = root.seal(&mut OsRng, value, &secret_aad(name))?;
        on!(self, ex => sqlx::query("INSERT INTO server_secrets (name, ciphertext) VALUES ($1, $2)")
            .bind(name)
            .bind(ct)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The names of the server secrets stored (none: no server was initialised here).
    pub async fn server_secret_names(&self) -> Result<std::vec::IntoIter<String>, StoreError> {
        let names: Vec<String> =
            on!(self, ex => sqlx::query_scalar("SELECT name FROM server_secrets ORDER BY name").fetch_all(ex).await)?;
        Ok(names.into_iter())
    }

    pub async fn server_secret(&self, root: &SymmetricKey, name: &str) -> Result<SecretBytes, StoreError> {
        self.server_secret_opt(root, name)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("server secret {name} is missing")))
    }

    pub async fn server_secret_opt(&self, root: &SymmetricKey, name: &str) -> Result<Option<SecretBytes>, StoreError> {
        let ct: Option<Vec<u8>> = on!(self, ex => sqlx::query_scalar("SELECT ciphertext FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(ex).await)?;
        ct.map(|ct| root.open(&ct, &secret_aad(name)).map_err(Into::into)).transpose()
    }

    // ---- users and enrolment ----

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

    /// (target id, user name, not_after) of every live grant.
    pub async fn live_grants(&self, now: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT g.target_id, u.name, g.not_after FROM grants g JOIN users u ON u.id = g.user_id \
             WHERE g.revoked_at IS NULL AND g.not_before <= $1 AND g.not_after > $1 ORDER BY g.not_after",
        )
        .bind(now)
        .fetch_all(ex).await)?)
    }

    // ---- requests and grants ----

    pub async fn insert_request(tx: &mut Tx<'_>, r: &RequestRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO access_requests (id, user_id, device_id, target_id, duration_secs, reason, status, created_at, \
             expires_at, source_ip, approvals_needed, approver_groups, permitted_by, policy_version) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&r.id)
        .bind(&r.user_id)
        .bind(&r.device_id)
        .bind(&r.target_id)
        .bind(r.duration_secs)
        .bind(&r.reason)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(&r.source_ip)
        .bind(r.approvals_needed)
        .bind(&r.approver_groups)
        .bind(&r.permitted_by)
        .bind(r.policy_version)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A request as the transaction sees it (after the write lock: no other writer can change
    /// it until this one commits).
    pub async fn request_in(tx: &mut Tx<'_>, id: &str) -> Result<Option<RequestRow>, StoreError> {
        Ok(
            on!(tx, ex => sqlx::query_as(&format!("{REQUEST_SELECT} WHERE r.id = $1")).bind(id).fetch_optional(ex).await)?,
        )
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{REQUEST_SELECT} WHERE r.id = $1")).bind(id).fetch_optional(ex).await)?,
        )
    }

    /// Requests visible to a caller: all of them, or those of one user.
    pub async fn requests(&self, only_user: Option<&str>) -> Result<Vec<RequestRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE ($1 IS NULL OR r.user_id = $1) ORDER BY r.created_at DESC, r.id LIMIT 500"
        ))
        .bind(only_user)
        .fetch_all(ex).await)?)
    }

    /// The most recent request of a user for a target, to explain a refused connection.
    pub async fn latest_request_for(&self, user_id: &str, target_id: &str) -> Result<Option<RequestRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE r.user_id = $1 AND r.target_id = $2 ORDER BY r.created_at DESC, r.rowid DESC LIMIT 1"
        ))
        .bind(user_id)
        .bind(target_id)
        .fetch_optional(ex).await)?)
    }

    /// Moves a pending request to `status`; false if it was no longer pending (a racing review).
    pub async fn decide_request(
        tx: &mut Tx<'_>,
        id: &str,
        status: &str,
        decided_by: &str,
        now: i64,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on!(tx, ex => sqlx::query(
            "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, decision_reason = $4 \
             WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(decided_by)
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_grant(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        id: &str,
        request: &RequestRow,
        not_before: i64,
        not_after: i64,
        signed: &str,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO grants (id, request_id, user_id, device_id, target_id, not_before, not_after, signed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(&request.id)
        .bind(&request.user_id)
        .bind(&request.device_id)
        .bind(&request.target_id)
        .bind(not_before)
        .bind(not_after)
        .bind(signed)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Grant(id)).await
    }

    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT id, request_id, not_after, signed, revoked_at, revoke_reason FROM grants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(ex).await)?)
    }

    pub async fn grant_for_request(&self, request_id: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT id, request_id, not_after, signed, revoked_at, revoke_reason FROM grants WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(ex).await)?)
    }

    /// Ends every live grant for a target early (its address, login or host key changed).
    pub async fn void_live_grants(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        target_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let ids: Vec<String> = on!(tx, ex => sqlx::query_scalar(
            "UPDATE grants SET revoked_at = $1, revoke_reason = $2 WHERE target_id = $3 AND revoked_at IS NULL \
             AND not_after > $1 RETURNING id",
        )
        .bind(now)
        .bind(reason)
        .bind(target_id)
        .fetch_all(ex).await)?;
        for id in &ids {
            rows.seal(tx, Row::Grant(id)).await?;
        }
        Ok(ids.len() as u64)
    }

    /// The live grant (latest expiry first) of a user's device for a target.
    pub async fn active_grant(
        &self,
        user_id: &str,
        device_id: &str,
        target_id: &str,
        now: i64,
    ) -> Result<Option<GrantRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT id, request_id, not_after, signed, revoked_at, revoke_reason FROM grants \
             WHERE user_id = $1 AND device_id = $2 AND target_id = $3 AND revoked_at IS NULL \
             AND not_before <= $4 AND not_after > $4 ORDER BY not_after DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(target_id)
        .bind(now)
        .fetch_optional(ex).await)?)
    }

    // ---- audit ----

    /// The searchable row of a security event; its record is `seq` of the server's own log
    /// (see `crate::audit::record_event`, the only caller).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_event(
        tx: &mut Tx<'_>,
        now: i64,
        actor: Option<&str>,
        device_id: Option<&str>,
        kind: &str,
        detail: &str,
        seq: Option<u64>,
        rows: Option<&(i64, String)>,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO server_events (at, actor, device_id, kind, detail, seq, rows_seq, rows_head) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now)
        .bind(actor)
        .bind(device_id)
        .bind(kind)
        .bind(detail)
        .bind(seq.map(|s| s as i64))
        .bind(rows.map(|r| r.0))
        .bind(rows.map(|r| r.1.clone()))
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Events matching `q`, newest first; `actor` is resolved to the user name.
    pub async fn events(&self, q: &portcullis_proto::EventQuery) -> Result<Vec<EventRow>, StoreError> {
        // The one dialect difference here: reading a field of the JSON detail.
        let gateway_of_detail = match self.kind() {
            Kind::Sqlite => "json_extract(e.detail, '$.gateway')",
            Kind::Postgres => "(e.detail::jsonb ->> 'gateway')",
        };
        Ok(on!(self, ex => {
            let mut sql = sqlx::QueryBuilder::new(
                "SELECT e.id, e.at, u.name AS actor, e.device_id, e.kind, e.detail FROM server_events e \
                 LEFT JOIN users u ON u.id = e.actor WHERE 1 = 1",
            );
            if let Some(kinds) = &q.kind {
                sql.push(" AND e.kind IN (");
                let mut list = sql.separated(", ");
                for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    list.push_bind(kind.to_string());
                }
                sql.push(")");
            }
            if let Some(actor) = &q.actor {
                sql.push(" AND u.name = ").push_bind(actor.clone());
            }
            if let Some(gateway) = &q.gateway {
                sql.push(" AND ").push(gateway_of_detail).push(" = ").push_bind(gateway.clone());
            }
            if let Some(since) = q.since {
                sql.push(" AND e.at >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                sql.push(" AND e.at <= ").push_bind(until);
            }
            if let Some(before) = q.before {
                sql.push(" AND e.id < ").push_bind(before);
            }
            let limit = q.limit.unwrap_or(100).clamp(1, portcullis_proto::MAX_EVENTS_PAGE);
            sql.push(" ORDER BY e.id DESC LIMIT ").push_bind(i64::from(limit));
            sql.build_query_as().fetch_all(ex).await
        })?)
    }

    /// The leaf of a stored record.
    pub async fn record_leaf(tx: &mut Tx<'_>, writer_id: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT leaf FROM audit_records WHERE writer_id = $1 AND seq = $2")
            .bind(writer_id)
            .bind(seq as i64)
            .fetch_optional(ex).await)?
        .flatten())
    }

    /// Inserts a writer's records, many rows per statement (one round trip to SQLite each).
    pub async fn insert_records(
        tx: &mut Tx<'_>,
        writer_id: &str,
        rows: &[NewRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(200) {
            on!(tx, ex => {
                let mut sql = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_records (writer_id, seq, kind, session_id, payload_sha256, payload, received_at, \
                     leaf, lost) ",
                );
                sql.push_values(chunk, |mut row, r| {
                    row.push_bind(writer_id)
                        .push_bind(r.seq as i64)
                        .push_bind(&r.kind)
                        .push_bind(&r.session_id)
                        .push_bind(&r.payload_sha256)
                        .push_bind(&r.payload)
                        .push_bind(now)
                        .push_bind(&r.leaf.0[..])
                        .push_bind(&r.lost);
                });
                sql.build().execute(ex).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    pub async fn insert_session(tx: &mut Tx<'_>, s: &SessionRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO sessions (id, writer_id, user_name, target, login, grant_id, command, started_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&s.id)
        .bind(&s.writer_id)
        .bind(&s.user_name)
        .bind(&s.target)
        .bind(&s.login)
        .bind(&s.grant_id)
        .bind(&s.command)
        .bind(s.started_at)
        .bind(&s.kind)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn end_session(
        tx: &mut Tx<'_>,
        id: &str,
        writer_id: &str,
        ended_at: f64,
        exit_status: Option<u32>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let n = on!(tx, ex => sqlx::query(
            "UPDATE sessions SET ended_at = $1, exit_status = $2, end_reason = $3 WHERE id = $4 AND writer_id = $5 AND ended_at IS NULL",
        )
        .bind(ended_at)
        .bind(exit_status.map(i64::from))
        .bind(reason)
        .bind(id)
        .bind(writer_id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Latest first; all of them, or one user's.
    pub async fn sessions(&self, only_user: Option<&str>) -> Result<Vec<SessionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT * FROM sessions WHERE ($1 IS NULL OR user_name = $1) ORDER BY started_at DESC LIMIT 1000",
        )
        .bind(only_user)
        .fetch_all(ex).await)?)
    }

    /// Sessions of a grant the server has not seen end.
    pub async fn open_sessions_of_grant(&self, grant_id: &str) -> Result<u32, StoreError> {
        let n: i64 = on!(self, ex => sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE grant_id = $1 AND ended_at IS NULL")
            .bind(grant_id)
            .fetch_one(ex).await)?;
        Ok(n.max(0) as u32)
    }

    /// Sessions a grant opened, in order.
    pub async fn sessions_of_grant(&self, grant_id: &str) -> Result<Vec<SessionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as("SELECT * FROM sessions WHERE grant_id = $1 ORDER BY started_at")
            .bind(grant_id)
            .fetch_all(ex).await)?)
    }

    /// A session by (writer, id); without a writer, the one that used the id first.
    pub async fn session(&self, id: &str, writer_id: Option<&str>) -> Result<Option<SessionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT * FROM sessions WHERE id = $1 AND ($2 IS NULL OR writer_id = $2) ORDER BY rowid LIMIT 1",
        )
        .bind(id)
        .bind(writer_id)
        .fetch_optional(ex).await)?)
    }

    /// The writers, other than `writer_id`, that already hold a session with this id.
    pub async fn session_id_holders(tx: &mut Tx<'_>, id: &str, writer_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            on!(tx, ex => sqlx::query_scalar("SELECT writer_id FROM sessions WHERE id = $1 AND writer_id <> $2 ORDER BY rowid")
            .bind(id)
            .bind(writer_id)
            .fetch_all(ex).await)?,
        )
    }

    /// (seq, encrypted payload) of a session's records, in order.
    pub async fn session_records(&self, writer_id: &str, session_id: &str) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as("SELECT seq, payload FROM audit_records WHERE writer_id = $1 AND session_id = $2 ORDER BY seq")
            .bind(writer_id)
            .bind(session_id)
            .fetch_all(ex).await)?,
        )
    }
}

/// A comma-separated column (roles, groups, tags, policy ids) as a list.
pub fn csv_list(csv: &str) -> Vec<String> {
    csv.split(',').filter(|x| !x.is_empty()).map(String::from).collect()
}

/// AAD of an uploaded record at rest on the server.
pub fn record_aad(writer_id: &str, seq: u64) -> Aad {
    Aad::for_field("audit_records", &format!("{writer_id}/{seq}"), 1, "payload")
}

/// AAD of a target's credential at rest.
pub fn credential_aad(target_id: &str, version: i64) -> Aad {
    Aad::for_field("targets", target_id, version as u32, "credential")
}

impl Store {
    /// The user a writer's session ran as.
    pub async fn session_user(
        tx: &mut Tx<'_>,
        writer_id: &str,
        session_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT user_name FROM sessions WHERE id = $1 AND writer_id = $2")
            .bind(session_id)
            .bind(writer_id)
            .fetch_optional(ex)
            .await)?)
    }
}
