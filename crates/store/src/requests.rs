//! Access requests, their decisions and grants (reviews and policy state are in `access`).

use crate::rows::{Row, RowKey};
use crate::{Store, StoreError, Tx, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: String,
    pub user_id: String,
    pub requester: String,
    pub device_id: String,
    /// The target's id — or, for a request to check out or use a secret, the secret's.
    pub target_id: String,
    /// The target's or the secret's name.
    pub target: String,
    /// `ssh`, `checkout` or `use` (`portcullis_proto::Access`).
    pub access: String,
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

pub(crate) const REQUEST_SELECT: &str = "SELECT r.id, r.user_id, u.name AS requester, r.device_id, \
     COALESCE(r.target_id, r.secret_id) AS target_id, COALESCE(t.name, s.name) AS target, r.access, \
     r.duration_secs, r.reason, r.status, r.created_at, r.expires_at, d.name AS decided_by, r.decided_at, \
     r.decision_reason, g.not_after AS grant_not_after, g.id AS grant_id, r.source_ip, \
     (SELECT COUNT(*) FROM reviews v WHERE v.request_id = r.id AND v.decision = 'approve') AS approvals, \
     r.approvals_needed, r.approver_groups, r.permitted_by, r.policy_version, \
     COALESCE(g.revoked_at, r.revoked_at) AS revoked_at, COALESCE(gu.name, ru.name) AS revoked_by, \
     COALESCE(g.revoke_reason, r.revoke_reason) AS revoke_reason \
     FROM access_requests r JOIN users u ON u.id = r.user_id LEFT JOIN targets t ON t.id = r.target_id \
     LEFT JOIN secrets s ON s.id = r.secret_id \
     LEFT JOIN users d ON d.id = r.decided_by LEFT JOIN grants g ON g.request_id = r.id \
     LEFT JOIN users gu ON gu.id = g.revoked_by LEFT JOIN users ru ON ru.id = r.revoked_by";

impl RequestRow {
    /// Whether it is for a secret (check-out or use) rather than SSH access to a target.
    pub fn is_for_secret(&self) -> bool {
        self.access != "ssh"
    }

    fn target_column(&self) -> Option<&str> {
        (!self.is_for_secret()).then_some(self.target_id.as_str())
    }

    fn secret_column(&self) -> Option<&str> {
        self.is_for_secret().then_some(self.target_id.as_str())
    }
}

impl Store {
    /// (target id, user name, not_after) of every live grant.
    pub async fn live_grants(&self, now: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT g.target_id, u.name, g.not_after FROM grants g JOIN users u ON u.id = g.user_id \
             WHERE g.target_id IS NOT NULL AND g.revoked_at IS NULL AND g.not_before <= $1 AND g.not_after > $1 ORDER BY g.not_after",
        )
        .bind(now)
        .fetch_all(ex).await)?)
    }

    // ---- requests and grants ----

    pub async fn insert_request(tx: &mut Tx<'_>, r: &RequestRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO access_requests (id, user_id, device_id, target_id, duration_secs, reason, status, created_at, \
             expires_at, source_ip, approvals_needed, approver_groups, permitted_by, policy_version, secret_id, access) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.id)
        .bind(&r.user_id)
        .bind(&r.device_id)
        .bind(r.target_column())
        .bind(r.duration_secs)
        .bind(&r.reason)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(&r.source_ip)
        .bind(r.approvals_needed)
        .bind(&r.approver_groups)
        .bind(&r.permitted_by)
        .bind(r.policy_version)
        .bind(r.secret_column())
        .bind(&r.access)
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

    /// The most recent request of a user for `access` to a target or secret, to explain a refusal.
    pub async fn latest_request_for(
        &self,
        user_id: &str,
        target_id: &str,
        access: &str,
    ) -> Result<Option<RequestRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE r.user_id = $1 AND COALESCE(r.target_id, r.secret_id) = $2 AND r.access = $3 \
             ORDER BY r.created_at DESC, r.rowid DESC LIMIT 1"
        ))
        .bind(user_id)
        .bind(target_id)
        .bind(access)
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

    /// Approves a pending request by policy alone (a service account's use of a secret).
    pub async fn approve_by_policy(tx: &mut Tx<'_>, id: &str, now: i64, reason: &str) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "UPDATE access_requests SET status = 'approved', decided_at = $1, decision_reason = $2 \
             WHERE id = $3 AND status = 'pending'",
        )
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
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
            "INSERT INTO grants (id, request_id, user_id, device_id, target_id, not_before, not_after, signed, \
             secret_id, access) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(&request.id)
        .bind(&request.user_id)
        .bind(&request.device_id)
        .bind(request.target_column())
        .bind(not_before)
        .bind(not_after)
        .bind(signed)
        .bind(request.secret_column())
        .bind(&request.access)
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
             WHERE user_id = $1 AND device_id = $2 AND target_id = $3 AND access = 'ssh' AND revoked_at IS NULL \
             AND not_before <= $4 AND not_after > $4 ORDER BY not_after DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(target_id)
        .bind(now)
        .fetch_optional(ex).await)?)
    }

    /// The live grant (latest expiry first) of a user's device to check out or use a secret.
    pub async fn active_secret_grant(
        &self,
        user_id: &str,
        device_id: &str,
        secret_id: &str,
        access: &str,
        now: i64,
    ) -> Result<Option<GrantRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT id, request_id, not_after, signed, revoked_at, revoke_reason FROM grants \
             WHERE user_id = $1 AND device_id = $2 AND secret_id = $3 AND access = $4 AND revoked_at IS NULL \
             AND not_before <= $5 AND not_after > $5 ORDER BY not_after DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(secret_id)
        .bind(access)
        .bind(now)
        .fetch_optional(ex).await)?)
    }

    // ---- audit ----
}
