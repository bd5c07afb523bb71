//! Vault secrets: the metadata row (authenticated) and one row per version (its envelope).
//! Values are sealed by the caller (`portcullis_vault::seal`); this module stores bytes.

use crate::rows::{Row, RowKey};
use crate::{Store, StoreError, Tx, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub environment: String,
    pub folder: String,
    /// `,a,b,` (empty: none).
    pub tags: String,
    pub description: String,
    pub owner: String,
    pub revealable: i64,
    pub expires_at: Option<i64>,
    pub facts: String,
    pub current_version: i64,
    pub versions_kept: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
    pub removed_at: Option<i64>,
    /// The SSH target whose credential this (password) secret is, if bound to one.
    pub target_id: Option<String>,
    /// Resolved when read.
    pub target_name: Option<String>,
    /// Resolved to names when read.
    pub created_by_name: String,
    pub updated_by_name: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretVersionRow {
    pub version: i64,
    pub facts: String,
    pub created_by: String,
    pub created_at: i64,
    pub reason: String,
    pub restored_from: Option<i64>,
    pub destroyed_at: Option<i64>,
}

/// A check-out of a secret, with the state of the grant it was made under.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckoutRow {
    pub id: String,
    pub secret_id: String,
    pub grant_id: String,
    pub user_id: String,
    pub device_id: String,
    pub version: i64,
    pub checked_out_at: i64,
    pub until: i64,
    pub checked_in_at: Option<i64>,
    pub ended_by: Option<String>,
    /// Resolved when read.
    pub holder: String,
    pub grant_revoked_at: Option<i64>,
}

/// What a list asks for; every filter is optional. Pages are by name.
#[derive(Debug, Clone, Default)]
pub struct SecretFilter {
    pub kind: Option<String>,
    pub environment: Option<String>,
    /// This folder and those under it.
    pub folder: Option<String>,
    pub tag: Option<String>,
    /// Lowercased words, each of which must appear in the searchable text.
    pub words: Vec<String>,
    pub expiring_before: Option<i64>,
    pub removed: bool,
    pub after: Option<String>,
    pub limit: i64,
}

const SECRET_SELECT: &str = "SELECT s.id, s.name, s.kind, s.environment, s.folder, s.tags, s.description, s.owner, \
     s.revealable, s.expires_at, s.facts, s.current_version, s.versions_kept, s.created_by, s.created_at, s.updated_by, \
     s.updated_at, s.removed_at, s.target_id, t.name AS target_name, c.name AS created_by_name, \
     u.name AS updated_by_name FROM secrets s \
     JOIN users c ON c.id = s.created_by JOIN users u ON u.id = s.updated_by LEFT JOIN targets t ON t.id = s.target_id";

/// The text search reads: name, folder, tags and description, lowercased.
pub fn searchable(row: &SecretRow) -> String {
    format!("{} {} {} {}", row.name, row.folder, row.tags.replace(',', " "), row.description).to_lowercase()
}

/// A version's envelope as stored: both halves, or neither once destroyed.
type EnvelopeParts = (Option<Vec<u8>>, Option<Vec<u8>>);
const ENVELOPE_SELECT: &str = "SELECT data_key, ciphertext FROM secret_versions WHERE secret_id = $1 AND version = $2";

fn envelope_of(found: Option<EnvelopeParts>) -> Option<portcullis_crypto::envelope::Envelope> {
    match found {
        Some((Some(wrapped_data_key), Some(ciphertext))) => {
            Some(portcullis_crypto::envelope::Envelope { wrapped_data_key, ciphertext })
        }
        _ => None,
    }
}

/// Fewer index hits than this: the search goes through the trigram index.
const SELECTIVE: i64 = 1000;

/// `%`, `_` and `\` taken literally in a LIKE pattern (with `ESCAPE '\'`).
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

impl Store {
    pub async fn insert_secret(tx: &mut Tx<'_>, rows: &RowKey, s: &SecretRow) -> Result<(), StoreError> {
        let result = on!(tx, ex => sqlx::query(
            "INSERT INTO secrets (id, name, kind, environment, folder, tags, description, owner, revealable, expires_at, \
             facts, current_version, versions_kept, search, created_by, created_at, updated_by, updated_at, target_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.kind)
        .bind(&s.environment)
        .bind(&s.folder)
        .bind(&s.tags)
        .bind(&s.description)
        .bind(&s.owner)
        .bind(s.revealable)
        .bind(s.expires_at)
        .bind(&s.facts)
        .bind(s.current_version)
        .bind(s.versions_kept)
        .bind(searchable(s))
        .bind(&s.created_by)
        .bind(s.created_at)
        .bind(&s.updated_by)
        .bind(s.updated_at)
        .bind(&s.target_id)
        .execute(ex).await.map(|r| r.rows_affected()));
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && e.message().contains("target") => {
                return Err(StoreError::Conflict(format!(
                    "target {} already has its credential in another secret",
                    s.target_name.as_deref().unwrap_or("?")
                )));
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("a secret named {:?} already exists", s.name)));
            }
            other => other.map_err(StoreError::from)?,
        };
        rows.seal(tx, Row::Secret(&s.id)).await
    }

    /// Stores the row's metadata as it is now (its version, expiry, facts, removal).
    pub async fn update_secret(tx: &mut Tx<'_>, rows: &RowKey, s: &SecretRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "UPDATE secrets SET environment = $1, folder = $2, tags = $3, description = $4, owner = $5, revealable = $6, \
             expires_at = $7, facts = $8, current_version = $9, versions_kept = $10, search = $11, updated_by = $12, \
             updated_at = $13, removed_at = $14, removed_by = CASE WHEN $14 IS NULL THEN NULL ELSE $12 END WHERE id = $15",
        )
        .bind(&s.environment)
        .bind(&s.folder)
        .bind(&s.tags)
        .bind(&s.description)
        .bind(&s.owner)
        .bind(s.revealable)
        .bind(s.expires_at)
        .bind(&s.facts)
        .bind(s.current_version)
        .bind(s.versions_kept)
        .bind(searchable(s))
        .bind(&s.updated_by)
        .bind(s.updated_at)
        .bind(s.removed_at)
        .bind(&s.id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Secret(&s.id)).await
    }

    /// Stores version `version` of secret `id` with its envelope.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_secret_version(
        tx: &mut Tx<'_>,
        id: &str,
        version: i64,
        envelope: &portcullis_crypto::envelope::Envelope,
        facts: &str,
        by: &str,
        at: i64,
        reason: &str,
        restored_from: Option<i64>,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO secret_versions (secret_id, version, data_key, ciphertext, facts, created_by, created_at, reason, \
             restored_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(version)
        .bind(&envelope.wrapped_data_key)
        .bind(&envelope.ciphertext)
        .bind(facts)
        .bind(by)
        .bind(at)
        .bind(reason)
        .bind(restored_from)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Destroys the envelopes of versions older than the newest `kept` (their history stays).
    pub async fn destroy_old_secret_versions(
        tx: &mut Tx<'_>,
        id: &str,
        current: i64,
        kept: i64,
        at: i64,
    ) -> Result<u64, StoreError> {
        Ok(on!(tx, ex => sqlx::query(
            "UPDATE secret_versions SET data_key = NULL, ciphertext = NULL, destroyed_at = $1 \
             WHERE secret_id = $2 AND version <= $3 AND destroyed_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(current - kept)
        .execute(ex).await.map(|r| r.rows_affected()))?)
    }

    /// The envelope of one version (`None`: no such version, or destroyed).
    pub async fn secret_envelope(
        tx: &mut Tx<'_>,
        id: &str,
        version: i64,
    ) -> Result<Option<portcullis_crypto::envelope::Envelope>, StoreError> {
        let found: Option<EnvelopeParts> = on!(tx, ex => sqlx::query_as(ENVELOPE_SELECT)
            .bind(id)
            .bind(version)
            .fetch_optional(ex).await)?;
        Ok(envelope_of(found))
    }

    /// Every name a secret or a target has (an import must take none of them).
    pub async fn taken_names(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let names: Vec<String> = on!(self, ex => sqlx::query_scalar(
            "SELECT name FROM secrets UNION SELECT name FROM targets",
        )
        .fetch_all(ex).await)?;
        Ok(names.into_iter().collect())
    }

    pub async fn secret_by_name(&self, name: &str) -> Result<Option<SecretRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{SECRET_SELECT} WHERE s.name = $1"))
            .bind(name)
            .fetch_optional(ex).await)?)
    }

    /// [`Store::secret_by_name`] inside a write transaction (what the change is decided on).
    pub async fn secret_by_name_in(tx: &mut Tx<'_>, name: &str) -> Result<Option<SecretRow>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_as(&format!("{SECRET_SELECT} WHERE s.name = $1"))
            .bind(name)
            .fetch_optional(ex).await)?)
    }

    /// A secret's versions, newest first; `creator` names resolved.
    pub async fn secret_versions(&self, id: &str) -> Result<Vec<SecretVersionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT v.version, v.facts, u.name AS created_by, v.created_at, v.reason, v.restored_from, v.destroyed_at \
             FROM secret_versions v JOIN users u ON u.id = v.created_by WHERE v.secret_id = $1 ORDER BY v.version DESC",
        )
        .bind(id)
        .fetch_all(ex).await)?)
    }

    /// An admin's purge (the caller records it): every version's value is destroyed; the secret
    /// and its history are deleted too unless requests name it (their story stays whole: the
    /// removed secret's metadata then stays, with no value). True when the rows were deleted.
    pub async fn purge_secret(tx: &mut Tx<'_>, rows: &RowKey, id: &str, at: i64) -> Result<bool, StoreError> {
        let requested: Option<i64> = on!(tx, ex => sqlx::query_scalar(
            "SELECT 1 FROM access_requests WHERE secret_id = $1 LIMIT 1",
        )
        .bind(id)
        .fetch_optional(ex).await)?;
        if requested.is_some() {
            on!(tx, ex => sqlx::query(
                "UPDATE secret_versions SET data_key = NULL, ciphertext = NULL, destroyed_at = $1 \
                 WHERE secret_id = $2 AND destroyed_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .execute(ex).await.map(|r| r.rows_affected()))?;
            return Ok(false);
        }
        on!(tx, ex => sqlx::query("DELETE FROM secret_versions WHERE secret_id = $1").bind(id).execute(ex).await.map(|r| r.rows_affected()))?;
        on!(tx, ex => sqlx::query("DELETE FROM secrets WHERE id = $1").bind(id).execute(ex).await.map(|r| r.rows_affected()))?;
        rows.forget(tx, Row::Secret(id)).await?;
        Ok(true)
    }

    /// The check-out of `secret_id` not checked in yet, if any (the newest).
    pub async fn open_checkout_in(tx: &mut Tx<'_>, secret_id: &str) -> Result<Option<CheckoutRow>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_as(
            "SELECT c.id, c.secret_id, c.grant_id, c.user_id, c.device_id, c.version, c.checked_out_at, c.until, \
             c.checked_in_at, c.ended_by, u.name AS holder, g.revoked_at AS grant_revoked_at FROM secret_checkouts c \
             JOIN users u ON u.id = c.user_id JOIN grants g ON g.id = c.grant_id \
             WHERE c.secret_id = $1 AND c.checked_in_at IS NULL ORDER BY c.checked_out_at DESC LIMIT 1",
        )
        .bind(secret_id)
        .fetch_optional(ex).await)?)
    }

    pub async fn insert_checkout(tx: &mut Tx<'_>, rows: &RowKey, c: &CheckoutRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO secret_checkouts (id, secret_id, grant_id, user_id, device_id, version, checked_out_at, until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(&c.secret_id)
        .bind(&c.grant_id)
        .bind(&c.user_id)
        .bind(&c.device_id)
        .bind(c.version)
        .bind(c.checked_out_at)
        .bind(c.until)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Checkout(&c.id)).await
    }

    /// The open check-out made under `grant_id`, if any.
    pub async fn open_checkout_of_grant(tx: &mut Tx<'_>, grant_id: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar(
            "SELECT id FROM secret_checkouts WHERE grant_id = $1 AND checked_in_at IS NULL",
        )
        .bind(grant_id)
        .fetch_optional(ex).await)?)
    }

    /// Ends a check-out (`checkin`, `grant_ended`, `revoked`).
    pub async fn end_checkout(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        id: &str,
        at: i64,
        ended_by: &str,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "UPDATE secret_checkouts SET checked_in_at = $1, ended_by = $2 WHERE id = $3 AND checked_in_at IS NULL",
        )
        .bind(at)
        .bind(ended_by)
        .bind(id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Checkout(id)).await
    }

    /// One page of secrets by name.
    pub async fn list_secrets(&self, f: &SecretFilter) -> Result<Vec<SecretRow>, StoreError> {
        // SQLite: words of three characters or more through the trigram index, as one phrase
        // each (a quote doubled); PostgreSQL's trigram index serves the LIKE below.
        let mut indexed: Vec<&String> = match self.kind() {
            crate::backend::Kind::Sqlite => f.words.iter().filter(|w| w.chars().count() >= 3).collect(),
            crate::backend::Kind::Postgres => Vec::new(),
        };
        let phrase =
            indexed.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" AND ");
        // The index pays off for selective words; for a common one (many hits) reading rows in
        // name order fills the page sooner than collecting every hit first.
        if !indexed.is_empty() {
            let hits: i64 = on!(self, ex => sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM (SELECT rowid FROM secrets_search WHERE secrets_search MATCH $1 LIMIT {SELECTIVE})"
            ))
            .bind(&phrase)
            .fetch_one(ex).await)?;
            if hits >= SELECTIVE {
                indexed.clear();
            }
        }
        Ok(on!(self, ex => {
            let mut sql = sqlx::QueryBuilder::new(SECRET_SELECT);
            sql.push(" WHERE 1 = 1");
            if !f.removed {
                sql.push(" AND s.removed_at IS NULL");
            }
            if let Some(kind) = &f.kind {
                sql.push(" AND s.kind = ").push_bind(kind.clone());
            }
            if let Some(env) = &f.environment {
                sql.push(" AND s.environment = ").push_bind(env.clone());
            }
            if let Some(folder) = &f.folder {
                sql.push(" AND (s.folder = ").push_bind(folder.clone());
                sql.push(" OR s.folder LIKE ").push_bind(format!("{}/%", like_literal(folder))).push(" ESCAPE '\\')");
            }
            if let Some(tag) = &f.tag {
                sql.push(" AND s.tags LIKE ").push_bind(format!("%,{},%", like_literal(tag))).push(" ESCAPE '\\'");
            }
            if !indexed.is_empty() {
                sql.push(" AND s.rowid IN (SELECT rowid FROM secrets_search WHERE secrets_search MATCH ")
                    .push_bind(phrase.clone())
                    .push(")");
            }
            for word in f.words.iter().filter(|w| !indexed.contains(w)) {
                sql.push(" AND s.search LIKE ").push_bind(format!("%{}%", like_literal(word))).push(" ESCAPE '\\'");
            }
            if let Some(before) = f.expiring_before {
                sql.push(" AND s.expires_at IS NOT NULL AND s.expires_at <= ").push_bind(before);
            }
            if let Some(after) = &f.after {
                sql.push(" AND s.name > ").push_bind(after.clone());
            }
            sql.push(" ORDER BY s.name LIMIT ").push_bind(f.limit);
            sql.build_query_as::<SecretRow>().fetch_all(ex).await
        })?)
    }

    pub async fn secret_by_id(&self, id: &str) -> Result<Option<SecretRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{SECRET_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(ex).await)?)
    }

    /// A secret by id inside a write transaction.
    pub async fn secret_by_id_in(tx: &mut Tx<'_>, id: &str) -> Result<Option<SecretRow>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_as(&format!("{SECRET_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(ex).await)?)
    }

    /// The live (not removed) secret holding `target_id`'s credential, if any.
    pub async fn secret_of_target(&self, target_id: &str) -> Result<Option<SecretRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!("{SECRET_SELECT} WHERE s.target_id = $1 AND s.removed_at IS NULL"))
            .bind(target_id)
            .fetch_optional(ex).await)?)
    }

    /// [`Store::secret_envelope`] outside a transaction.
    pub async fn current_secret_envelope(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<portcullis_crypto::envelope::Envelope>, StoreError> {
        let found: Option<EnvelopeParts> = on!(self, ex => sqlx::query_as(ENVELOPE_SELECT)
            .bind(id)
            .bind(version)
            .fetch_optional(ex).await)?;
        Ok(envelope_of(found))
    }

    /// Check-outs still open whose grant ended by `now` (ran out or was revoked), oldest first.
    pub async fn lapsed_checkouts(&self, now: i64, limit: i64) -> Result<Vec<CheckoutRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT c.id, c.secret_id, c.grant_id, c.user_id, c.device_id, c.version, c.checked_out_at, c.until, \
             c.checked_in_at, c.ended_by, u.name AS holder, g.revoked_at AS grant_revoked_at FROM secret_checkouts c \
             JOIN users u ON u.id = c.user_id JOIN grants g ON g.id = c.grant_id \
             WHERE c.checked_in_at IS NULL AND (c.until <= $1 OR g.revoked_at IS NOT NULL) \
             ORDER BY c.until LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(ex).await)?)
    }

    /// Starts a rotation (its candidate sealed by the caller as the next version). None when
    /// one is already pending for the secret: that one will rotate it.
    pub async fn insert_rotation(tx: &mut Tx<'_>, rows: &RowKey, r: &RotationRow) -> Result<bool, StoreError> {
        let pending: Option<String> = on!(tx, ex => sqlx::query_scalar(
            "SELECT id FROM secret_rotations WHERE secret_id = $1 AND state = 'pending'",
        )
        .bind(&r.secret_id)
        .fetch_optional(ex).await)?;
        if pending.is_some() {
            return Ok(false);
        }
        on!(tx, ex => sqlx::query(
            "INSERT INTO secret_rotations (id, secret_id, target_id, from_version, data_key, ciphertext, reason, state, \
             requested_by, created_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM secret_rotations WHERE secret_id = $2))",
        )
        .bind(&r.id)
        .bind(&r.secret_id)
        .bind(&r.target_id)
        .bind(r.from_version)
        .bind(&r.data_key)
        .bind(&r.ciphertext)
        .bind(&r.reason)
        .bind(&r.requested_by)
        .bind(r.created_at)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Rotation(&r.id)).await?;
        Ok(true)
    }

    /// The pending rotation of `secret_id`, if any.
    pub async fn pending_rotation_in(tx: &mut Tx<'_>, secret_id: &str) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar(
            "SELECT id FROM secret_rotations WHERE secret_id = $1 AND state = 'pending'",
        )
        .bind(secret_id)
        .fetch_optional(ex).await)?)
    }

    /// Pending rotations of targets reached through `gateway_id`, oldest first.
    pub async fn pending_rotations(&self, gateway_id: &str, limit: i64) -> Result<Vec<RotationRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!(
            "{ROTATION_SELECT} JOIN targets t ON t.id = r.target_id \
             WHERE r.state = 'pending' AND t.gateway_id = $1 ORDER BY r.created_at LIMIT $2"
        ))
        .bind(gateway_id)
        .bind(limit)
        .fetch_all(ex).await)?)
    }

    pub async fn rotation_in(tx: &mut Tx<'_>, id: &str) -> Result<Option<RotationRow>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_as(&format!("{ROTATION_SELECT} WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(ex).await)?)
    }

    /// A secret's rotations, newest first.
    pub async fn rotations_of(&self, secret_id: &str, limit: i64) -> Result<Vec<RotationRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(&format!(
            "{ROTATION_SELECT} WHERE r.secret_id = $1 ORDER BY r.seq DESC LIMIT $2"
        ))
        .bind(secret_id)
        .bind(limit)
        .fetch_all(ex).await)?)
    }

    /// Ends a pending rotation: `rotated` (with the version it made) or `failed` (with where and
    /// why). `keep_candidate` false destroys the candidate (the target surely kept the old value).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_rotation(
        tx: &mut Tx<'_>,
        rows: &RowKey,
        id: &str,
        state: &str,
        stage: Option<&str>,
        detail: Option<&str>,
        version: Option<i64>,
        keep_candidate: bool,
        at: i64,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "UPDATE secret_rotations SET state = $1, stage = $2, detail = $3, version = $4, finished_at = $5, \
             attempts = attempts + 1, \
             data_key = CASE WHEN $6 THEN data_key ELSE NULL END, ciphertext = CASE WHEN $6 THEN ciphertext ELSE NULL END \
             WHERE id = $7 AND state = 'pending'",
        )
        .bind(state)
        .bind(stage)
        .bind(detail)
        .bind(version)
        .bind(at)
        .bind(keep_candidate)
        .bind(id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        rows.seal(tx, Row::Rotation(id)).await
    }
}

/// A rotation of a bound secret (see the `secret_rotations` table).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RotationRow {
    pub id: String,
    pub secret_id: String,
    pub target_id: String,
    pub from_version: i64,
    pub data_key: Option<Vec<u8>>,
    pub ciphertext: Option<Vec<u8>>,
    pub reason: String,
    pub requested_by: String,
    /// Resolved when read.
    pub requested_by_name: String,
    pub state: String,
    pub stage: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub version: Option<i64>,
}

const ROTATION_SELECT: &str = "SELECT r.id, r.secret_id, r.target_id, r.from_version, r.data_key, r.ciphertext, \
     r.reason, r.requested_by, q.name AS requested_by_name, r.state, r.stage, r.detail, r.created_at, r.finished_at, \
     r.version FROM secret_rotations r JOIN users q ON q.id = r.requested_by";
