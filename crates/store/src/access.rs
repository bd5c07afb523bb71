//! Policies, groups, users' roles and groups, reviews, revocation and the facts separation of
//! duties reads.

use crate::StoreError;
use crate::rows::{Row, RowKey};
use crate::{Store, Tx, UserRow, on};

/// Setting: the user who owns a standalone (desktop) server.
pub const SETTING_STANDALONE_OWNER: &str = "standalone_owner";
/// Setting: the WebAuthn relying-party id, fixed at `server init`.
pub const SETTING_WEBAUTHN_RP_ID: &str = "webauthn_rp_id";
/// Unix seconds from which every gateway `SessionStart` needs a matching authorisation (set
/// when the data directory gained `session_authorizations`).
pub const SETTING_SESSION_CHECKS_SINCE: &str = "session_checks_since";
/// Set once every row the server decides with carries its MAC (see `crate::rows`).
pub const SETTING_ROWS_AUTHENTICATED: &str = "rows_authenticated";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub version: i64,
    pub text: String,
    pub created_at: i64,
    /// Resolved to the user's name when read; `None` for the built-in default.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub name: String,
    pub created_at: i64,
    /// Comma-separated user names.
    pub members: String,
}

/// A user with everything admins see.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserDetailRow {
    pub id: String,
    pub name: String,
    pub roles: String,
    /// Comma-separated group names.
    pub groups: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub disabled_at: Option<i64>,
    pub confirmed_by: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReviewRow {
    pub approver: String,
    pub approver_id: String,
    pub decision: String,
    pub reason: Option<String>,
    pub at: i64,
    pub source_ip: Option<String>,
    pub policies: String,
    pub step_up: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceDetailRow {
    pub id: String,
    pub user_id: String,
    pub user_name: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecurityKeyRow {
    pub id: String,
    pub name: String,
    pub credential_id: String,
    pub passkey: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChallengeRow {
    pub id: String,
    pub user_id: String,
    pub purpose: String,
    pub request_id: Option<String>,
    pub decision: Option<String>,
    pub key_name: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

const USER_DETAIL_SELECT: &str = "SELECT u.id, u.name, u.roles, \
     COALESCE((SELECT string_agg(g.name, ',' ORDER BY g.name) FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
               WHERE ug.user_id = u.id), '') AS groups, \
     u.created_at, c.name AS created_by, u.disabled_at, cf.name AS confirmed_by FROM users u \
     LEFT JOIN users c ON c.id = u.created_by LEFT JOIN user_confirmations uc ON uc.user_id = u.id \
     LEFT JOIN users cf ON cf.id = uc.confirmed_by";

impl Store {
    // ---- policies ----

    pub async fn current_policy(&self) -> Result<Option<PolicyRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT p.version, p.text, p.created_at, u.name AS created_by FROM policy_sets p \
             LEFT JOIN users u ON u.id = p.created_by ORDER BY p.version DESC LIMIT 1",
        )
        .fetch_optional(ex).await)?)
    }

    /// The newest stored policy version (one index lookup: asked before every decision).
    pub async fn policy_version(&self) -> Result<Option<i64>, StoreError> {
        Ok(on!(self, ex => sqlx::query_scalar("SELECT MAX(version) FROM policy_sets").fetch_one(ex).await)?)
    }

    pub async fn insert_policy(tx: &mut Tx<'_>, text: &str, now: i64, by: Option<&str>) -> Result<i64, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar(
            "INSERT INTO policy_sets (text, created_at, created_by) VALUES ($1, $2, $3) RETURNING version",
        )
        .bind(text)
        .bind(now)
        .bind(by)
        .fetch_one(ex).await)?)
    }

    // ---- settings ----

    /// A setting, refused if it was added, changed or deleted behind the server's back.
    pub async fn setting(&self, rows: &RowKey, name: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        rows.check(&mut conn, Row::Setting(name)).await?;
        Ok(on!(conn, ex => sqlx::query_scalar("SELECT value FROM server_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(ex).await)?)
    }

    pub async fn put_setting(tx: &mut Tx<'_>, rows: &RowKey, name: &str, value: &str) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("INSERT INTO server_settings (name, value) VALUES ($1, $2) ON CONFLICT(name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Setting(name)).await
    }

    // ---- groups ----

    pub async fn insert_group(tx: &mut Tx<'_>, name: &str, now: i64, by: &str) -> Result<(), StoreError> {
        let result = on!(tx, ex => sqlx::query("INSERT INTO groups (id, name, created_at, created_by) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(name)
            .bind(now)
            .bind(by)
            .execute(ex).await.map(|r| r.rows_affected()));
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!("a group named {name:?} already exists")))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    pub async fn groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT g.name, g.created_at, COALESCE((SELECT string_agg(u.name, ',' ORDER BY u.name) FROM user_groups ug \
             JOIN users u ON u.id = ug.user_id WHERE ug.group_id = g.id), '') AS members FROM groups g ORDER BY g.name",
        )
        .fetch_all(ex).await)?)
    }

    /// Group ids for names; an unknown name is refused by name.
    pub async fn group_ids(tx: &mut Tx<'_>, names: &[String]) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let id: Option<String> = on!(tx, ex => sqlx::query_scalar("SELECT id FROM groups WHERE name = $1").bind(name).fetch_optional(ex).await)?;
            ids.push(id.ok_or_else(|| {
                StoreError::NotFound(format!("no group named {name:?}; create it with `portcullis group add {name}`"))
            })?);
        }
        Ok(ids)
    }

    pub async fn set_user_groups(tx: &mut Tx<'_>, user_id: &str, group_ids: &[String]) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("DELETE FROM user_groups WHERE user_id = $1").bind(user_id).execute(ex).await.map(|r| r.rows_affected()))?;
        for group_id in group_ids {
            on!(tx, ex => sqlx::query("INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(user_id)
                .bind(group_id)
                .execute(ex).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    // ---- users ----

    pub async fn users(&self) -> Result<Vec<UserDetailRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{USER_DETAIL_SELECT} ORDER BY u.name")).fetch_all(ex).await)?)
    }

    pub async fn user_named(&self, name: &str) -> Result<Option<UserDetailRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{USER_DETAIL_SELECT} WHERE u.name = $1"))
            .bind(name)
            .fetch_optional(ex).await)?)
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserDetailRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as(&format!("{USER_DETAIL_SELECT} WHERE u.id = $1")).bind(id).fetch_optional(ex).await)?,
        )
    }

    pub async fn set_created_by(tx: &mut Tx<'_>, user_id: &str, by: &str) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("UPDATE users SET created_by = $1 WHERE id = $2").bind(by).bind(user_id).execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn set_user_roles(tx: &mut Tx<'_>, user_id: &str, roles: &str) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("UPDATE users SET roles = $1 WHERE id = $2").bind(roles).bind(user_id).execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// False if the user was already disabled.
    pub async fn disable_user(tx: &mut Tx<'_>, user_id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(on!(tx, ex => sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(ex).await.map(|r| r.rows_affected()))?
            == 1)
    }

    pub async fn record_user_change(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        user_id: &str,
        actor_id: &str,
        now: i64,
        change: &str,
    ) -> Result<(), StoreError> {
        let id: i64 = on!(tx, ex => sqlx::query_scalar(
            "INSERT INTO user_admin_changes (user_id, actor_id, at, change) VALUES ($1, $2, $3, $4) RETURNING rowid",
        )
        .bind(user_id)
        .bind(actor_id)
        .bind(now)
        .bind(change)
        .fetch_one(ex).await)?;
        rows.seal(tx, Row::AdminChange { user: user_id, actor: actor_id, id }).await
    }

    /// The latest role or group change between `a` and `b` (either changed the other) since
    /// `since`: `(changed user's id, change, at)`.
    pub async fn change_between(
        &self,
        rows: &RowKey,
        a: &str,
        b: &str,
        since: i64,
    ) -> Result<Option<(String, String, i64)>, StoreError> {
        rows.check_changes_between(&mut self.conn().await?, a, b).await?;
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT user_id, change, at FROM user_admin_changes WHERE change != 'created' AND at > $3 \
             AND ((user_id = $1 AND actor_id = $2) OR (user_id = $2 AND actor_id = $1)) ORDER BY at DESC LIMIT 1",
        )
        .bind(a)
        .bind(b)
        .bind(since)
        .fetch_optional(ex).await)?)
    }

    /// What separation of duties follows for one account: its name, creator and confirmation
    /// `(by, via)`. The caller checks the rows' MACs.
    pub async fn lineage_facts(
        &self,
        user_id: &str,
    ) -> Result<Option<(String, Option<String>, Option<(String, String)>)>, StoreError> {
        let Some((name, created_by)): Option<(String, Option<String>)> = on!(self, ex => sqlx::query_as("SELECT name, created_by FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(ex).await)?
        else {
            return Ok(None);
        };
        let confirmation = on!(self, ex => sqlx::query_as("SELECT confirmed_by, via FROM user_confirmations WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(ex).await)?;
        Ok(Some((name, created_by, confirmation)))
    }

    pub async fn insert_confirmation(
        tx: &mut Tx<'_>,
        user_id: &str,
        by: &str,
        via: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("INSERT INTO user_confirmations (user_id, confirmed_by, via, at) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(by)
            .bind(via)
            .bind(now)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ids and roles of users not disabled.
    pub async fn active_users(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as("SELECT id, roles FROM users WHERE disabled_at IS NULL").fetch_all(ex).await)?,
        )
    }

    pub async fn live_devices_of(&self, user_id: &str) -> Result<i64, StoreError> {
        Ok(on!(self, ex => sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user_id)
            .fetch_one(ex).await)?)
    }

    /// Ends every unused enrolment code of a user (a confirmation hands out a fresh one).
    pub async fn void_enrolment_codes(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        user_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let voided: Vec<String> = on!(tx, ex => sqlx::query_scalar(
            "UPDATE enrolment_codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL RETURNING code_hash",
        )
        .bind(now)
        .bind(user_id)
        .fetch_all(ex).await)?;
        for hash in &voided {
            rows.seal(tx, Row::EnrolmentCode(hash)).await?;
        }
        Ok(())
    }

    /// The user (other than `except`) holding a live security key with this credential id.
    pub async fn security_key_holder(&self, credential_id: &str, except: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(self, ex => sqlx::query_scalar(
            "SELECT user_id FROM security_keys WHERE credential_id = $1 AND user_id != $2 AND removed_at IS NULL LIMIT 1",
        )
        .bind(credential_id)
        .bind(except)
        .fetch_optional(ex).await)?)
    }

    pub async fn user_row(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as("SELECT id, name, roles, disabled_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(ex).await)?)
    }

    // ---- devices ----

    pub async fn devices(&self, only_user: Option<&str>) -> Result<Vec<DeviceDetailRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT d.id, d.user_id, u.name AS user_name, d.name, d.created_at, d.revoked_at FROM devices d \
             JOIN users u ON u.id = d.user_id WHERE ($1 IS NULL OR d.user_id = $1) ORDER BY u.name, d.created_at",
        )
        .bind(only_user)
        .fetch_all(ex).await)?)
    }

    /// False if the device was already revoked.
    pub async fn revoke_device(tx: &mut Tx<'_>, device_id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(on!(tx, ex => sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(device_id)
            .execute(ex).await.map(|r| r.rows_affected()))?
            == 1)
    }

    // ---- reviews ----

    /// False if this approver already reviewed the request.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_review(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        request_id: &str,
        approver_id: &str,
        device_id: &str,
        decision: &str,
        reason: Option<&str>,
        now: i64,
        source_ip: &str,
        policies: &str,
        step_up: Option<&str>,
    ) -> Result<bool, StoreError> {
        let inserted = on!(tx, ex => sqlx::query(
            "INSERT INTO reviews (request_id, approver_id, device_id, decision, reason, at, source_ip, policies, step_up) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(request_id)
        .bind(approver_id)
        .bind(device_id)
        .bind(decision)
        .bind(reason)
        .bind(now)
        .bind(source_ip)
        .bind(policies)
        .bind(step_up)
        .execute(ex).await.map(|r| r.rows_affected()))?
            == 1;
        if inserted {
            rows.seal(tx, Row::Review { request: request_id, approver: approver_id }).await?;
        }
        Ok(inserted)
    }

    /// Approvals of a request; a review added or changed behind the server's back (a planted
    /// approval) is refused, so it can never complete an N-of-M.
    pub async fn approvals_in(tx: &mut Tx<'_>, rows: &RowKey, request_id: &str) -> Result<i64, StoreError> {
        let approvers: Vec<String> = on!(tx, ex => sqlx::query_scalar("SELECT approver_id FROM reviews WHERE request_id = $1 AND decision = 'approve'")
                .bind(request_id)
                .fetch_all(ex).await)?;
        for approver in &approvers {
            rows.check(tx, Row::Review { request: request_id, approver }).await?;
        }
        Ok(approvers.len() as i64)
    }

    pub async fn reviews(&self, request_id: &str) -> Result<Vec<ReviewRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT u.name AS approver, r.approver_id, r.decision, r.reason, r.at, r.source_ip, r.policies, r.step_up \
             FROM reviews r JOIN users u ON u.id = r.approver_id WHERE r.request_id = $1 ORDER BY r.at, u.name",
        )
        .bind(request_id)
        .fetch_all(ex).await)?)
    }

    // ---- revocation ----

    /// Withdraws a pending request; false if it was no longer pending (approved meanwhile: its
    /// grant is what to revoke).
    pub async fn revoke_request(
        tx: &mut Tx<'_>,
        request_id: &str,
        now: i64,
        by: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        Ok(on!(tx, ex => sqlx::query(
            "UPDATE access_requests SET status = 'revoked', revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(now)
        .bind(by)
        .bind(reason)
        .bind(request_id)
        .execute(ex).await.map(|r| r.rows_affected()))?
            == 1)
    }

    /// Ends a grant early; false if it had already ended.
    pub async fn revoke_grant(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        grant_id: &str,
        now: i64,
        by: Option<&str>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let revoked = on!(tx, ex => sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE id = $4 AND revoked_at IS NULL AND not_after > $1",
        )
        .bind(now)
        .bind(by)
        .bind(reason)
        .bind(grant_id)
        .execute(ex).await.map(|r| r.rows_affected()))?
            == 1;
        if revoked {
            rows.seal(tx, Row::Grant(grant_id)).await?;
        }
        Ok(revoked)
    }

    /// Ends every live grant of a user (or of one of their devices); returns the grant ids.
    pub async fn revoke_live_grants_of(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        user_id: &str,
        device_id: Option<&str>,
        now: i64,
        by: &str,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = on!(tx, ex => sqlx::query_scalar(
            "UPDATE grants SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE user_id = $4 AND ($5 IS NULL OR device_id = $5) AND revoked_at IS NULL AND not_after > $1 \
             RETURNING id",
        )
        .bind(now)
        .bind(by)
        .bind(reason)
        .bind(user_id)
        .bind(device_id)
        .fetch_all(ex).await)?;
        for id in &ids {
            rows.seal(tx, Row::Grant(id)).await?;
        }
        Ok(ids)
    }

    /// Pending requests of a user (or one of their devices), withdrawn with the grants.
    pub async fn revoke_pending_requests_of(
        tx: &mut Tx<'_>,
        user_id: &str,
        device_id: Option<&str>,
        now: i64,
        by: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        Ok(on!(tx, ex => sqlx::query(
            "UPDATE access_requests SET status = 'revoked', revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE user_id = $4 AND ($5 IS NULL OR device_id = $5) AND status = 'pending' AND expires_at > $1",
        )
        .bind(now)
        .bind(by)
        .bind(reason)
        .bind(user_id)
        .bind(device_id)
        .execute(ex).await.map(|r| r.rows_affected()))?)
    }

    // ---- security keys and WebAuthn ceremonies ----

    /// A user's keys in use.
    pub async fn security_keys(&self, user_id: &str) -> Result<Vec<SecurityKeyRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT id, name, credential_id, passkey, created_at, last_used_at FROM security_keys \
             WHERE user_id = $1 AND removed_at IS NULL ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(ex).await)?)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_security_key(
        tx: &mut Tx<'_>,
        id: &str,
        user_id: &str,
        name: &str,
        credential_id: &str,
        passkey: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO security_keys (id, user_id, name, credential_id, passkey, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(user_id)
        .bind(name)
        .bind(credential_id)
        .bind(passkey)
        .bind(now)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn update_security_key(tx: &mut Tx<'_>, id: &str, passkey: &str, now: i64) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("UPDATE security_keys SET passkey = $1, last_used_at = $2 WHERE id = $3")
            .bind(passkey)
            .bind(now)
            .bind(id)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn remove_security_key(tx: &mut Tx<'_>, id: &str, now: i64) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query("UPDATE security_keys SET removed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn insert_challenge(&self, rows: &RowKey, c: &ChallengeRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Lapsed ceremonies are of no use to anyone (the ledger notes that the server removed them).
        let lapsed: Vec<String> = on!(tx, ex => sqlx::query_scalar("DELETE FROM webauthn_challenges WHERE expires_at < $1 RETURNING id")
                .bind(c.created_at - 3600)
                .fetch_all(ex).await)?;
        for id in &lapsed {
            rows.forget(&mut tx, Row::Challenge(id)).await?;
        }
        on!(tx, ex => sqlx::query(
            "INSERT INTO webauthn_challenges (id, user_id, purpose, request_id, decision, key_name, state, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.id)
        .bind(&c.user_id)
        .bind(&c.purpose)
        .bind(&c.request_id)
        .bind(&c.decision)
        .bind(&c.key_name)
        .bind(&c.state)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(&mut tx, Row::Challenge(&c.id)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn challenge(&self, id: &str) -> Result<Option<ChallengeRow>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as("SELECT * FROM webauthn_challenges WHERE id = $1").bind(id).fetch_optional(ex).await)?,
        )
    }

    /// Marks a challenge used; false if it already was (single use). A challenge whose row was
    /// changed behind the server's back (its state, user, purpose, or made unused) is refused.
    pub async fn use_challenge(&self, rows: &RowKey, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        rows.check(&mut tx, Row::Challenge(id)).await?;
        let used = on!(tx, ex => sqlx::query("UPDATE webauthn_challenges SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(ex).await.map(|r| r.rows_affected()))?
            == 1;
        if used {
            rows.seal(&mut tx, Row::Challenge(id)).await?;
        }
        tx.commit().await?;
        Ok(used)
    }
}

impl Store {
    /// A setting as stored, inside a transaction (the caller checks the row first).
    pub async fn setting_in(tx: &mut Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT value FROM server_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(ex)
            .await)?)
    }

    /// Whether a grant is `user`'s for `target`, was issued before `since`, and `at` lies within
    /// it (five minutes either side): how a session from before authorisations is accepted.
    pub async fn grant_covers(
        tx: &mut Tx<'_>,
        grant_id: &str,
        user: &str,
        target: &str,
        since: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = on!(tx, ex => sqlx::query_scalar(
            "SELECT 1 FROM grants g JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id \
             WHERE g.id = $1 AND u.name = $2 AND t.name = $3 AND g.not_before < $4 \
             AND $5 BETWEEN g.not_before - 300 AND g.not_after + 300",
        )
        .bind(grant_id)
        .bind(user)
        .bind(target)
        .bind(since)
        .bind(at)
        .fetch_optional(ex)
        .await)?;
        Ok(found.is_some())
    }

    /// The id of the user with this name.
    pub async fn user_id_named(tx: &mut Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(ex)
            .await)?)
    }

    /// The id of the target with this name.
    pub async fn target_id_named(tx: &mut Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT id FROM targets WHERE name = $1")
            .bind(name)
            .fetch_optional(ex)
            .await)?)
    }
}
