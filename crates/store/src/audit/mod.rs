//! The audit store's logs: one Merkle log per writer (each gateway, and the server itself for
//! its own events), records sealed under per-writer data keys, checkpoints signed by the writer
//! and countersigned by the server, and the end-to-end verification behind `audit verify` and
//! `server verify --data`.
//!
//! What an attacker who can edit the database cannot do unnoticed: change, delete, add, swap or
//! cut records or security events (every record is a leaf under a signed checkpoint; every
//! event row must match its record). What the writers witness: a server restored from an older
//! backup (they hold newer countersigned checkpoints, and the server asks them to re-send).

use std::collections::HashMap;

use portcullis_crypto::identity::SigningIdentity;
use portcullis_crypto::{Aad, OsRng, SymmetricKey};
use portcullis_tlog::{Frontier, Hash};

use crate::StoreError;
use crate::{Store, Tx, on, record_aad};

mod evidence;
mod verify;

pub use evidence::{LogFacts, mark_refused, session_bundle, writer_refused};
pub use verify::verify_all;

/// The keys the audit store needs: the root key (wraps data keys) and the server's signing key
/// (signs its own log's checkpoints, countersigns the gateways').
pub struct Keys<'a> {
    pub root: &'a SymmetricKey,
    pub signing: &'a SigningIdentity,
}

/// The server's own log is named after its signing key, so two installations never share one.
pub fn server_writer_id(signing_public: &[u8; 32]) -> String {
    portcullis_tlog::server_log_id(signing_public)
}

/// Event kinds that are alarms: an audit log refused or damaged, or a safeguard that one admin
/// passed alone (a one-admin installation confirming an account it created), a rotation that
/// failed (the old value stays; the target may need a look).
pub const ALARM_KINDS: &[&str] = &[
    "user_confirmed_alone",
    "gateway_confirmed_alone",
    "target_gateway_moved",
    "audit_gap",
    "audit_fork",
    "audit_rollback",
    "audit_inconsistent_checkpoint",
    "audit_bad_checkpoint",
    "audit_server_behind",
    "audit_record_lost",
    "audit_upload_refused",
    "session_id_reused",
    "secret_rotation_failed",
];

pub fn tlog_err(e: portcullis_tlog::TlogError) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A security event's searchable row.
#[derive(sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
    pub seq: Option<i64>,
    /// The row ledger's head when the event was recorded (events from before the ledger: none).
    pub rows_seq: Option<i64>,
    pub rows_head: Option<String>,
}

/// A writer's log as the server holds it.
pub struct LogState {
    pub frontier: Frontier,
    pub checkpoint: Option<String>,
}

pub async fn load_log(tx: &mut Tx<'_>, writer_id: &str) -> Result<LogState, StoreError> {
    let row: Option<(i64, Vec<u8>, Option<String>)> = on!(tx, ex => sqlx::query_as("SELECT size, frontier, checkpoint FROM audit_logs WHERE writer_id = $1")
            .bind(writer_id)
            .fetch_optional(ex).await)?;
    Ok(match row {
        Some((size, frontier, checkpoint)) => {
            LogState { frontier: Frontier::from_bytes(size as u64, &frontier).map_err(tlog_err)?, checkpoint }
        }
        None => LogState { frontier: Frontier::new(), checkpoint: None },
    })
}

pub async fn save_log(
    tx: &mut Tx<'_>,
    writer_id: &str,
    frontier: &Frontier,
    checkpoint: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    on!(tx, ex => sqlx::query(
        "INSERT INTO audit_logs (writer_id, size, root, frontier, checkpoint, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (writer_id) DO UPDATE SET size = excluded.size, root = excluded.root, \
         frontier = excluded.frontier, checkpoint = excluded.checkpoint, updated_at = excluded.updated_at, \
         refused_index = NULL, refused_reason = NULL",
    )
    .bind(writer_id)
    .bind(frontier.size() as i64)
    .bind(&frontier.root().0[..])
    .bind(frontier.to_bytes())
    .bind(checkpoint)
    .bind(now)
    .execute(ex).await.map(|r| r.rows_affected()))?;
    Ok(())
}

fn data_key_aad(writer_id: &str, epoch: u64) -> Aad {
    Aad::for_field("audit_data_keys", &format!("{writer_id}/{epoch}"), 1, "wrapped")
}

/// The data key of `writer_id`'s records in `epoch`, made (and wrapped by the root key) on
/// first use inside the caller's transaction — so a key exists exactly when records under it do.
pub async fn data_key(
    tx: &mut Tx<'_>,
    root: &SymmetricKey,
    writer_id: &str,
    epoch: u64,
    now: i64,
) -> Result<SymmetricKey, StoreError> {
    let aad = data_key_aad(writer_id, epoch);
    let wrapped: Option<Vec<u8>> = on!(tx, ex => sqlx::query_scalar("SELECT wrapped FROM audit_data_keys WHERE writer_id = $1 AND epoch = $2")
            .bind(writer_id)
            .bind(epoch as i64)
            .fetch_optional(ex).await)?;
    if let Some(wrapped) = wrapped {
        let raw = root.open(&wrapped, &aad).map_err(|_| {
            StoreError::Internal(format!("the data key of writer {writer_id}, epoch {epoch}, does not unwrap"))
        })?;
        return Ok(SymmetricKey::from_slice(raw.expose_secret())?);
    }
    let key = SymmetricKey::generate(&mut OsRng);
    let wrapped = root.seal(&mut OsRng, key.expose_bytes(), &aad)?;
    on!(tx, ex => sqlx::query("INSERT INTO audit_data_keys (writer_id, epoch, wrapped, created_at) VALUES ($1, $2, $3, $4)")
        .bind(writer_id)
        .bind(epoch as i64)
        .bind(wrapped)
        .bind(now)
        .execute(ex).await.map(|r| r.rows_affected()))?;
    Ok(key)
}

/// Data keys of one writer, unwrapped as they are needed (one per epoch), read-only.
pub struct KeyRing<'a> {
    root: &'a SymmetricKey,
    keys: HashMap<(String, u64), SymmetricKey>,
}

impl<'a> KeyRing<'a> {
    pub fn new(root: &'a SymmetricKey) -> Self {
        Self { root, keys: HashMap::new() }
    }

    pub async fn open(&mut self, pool: &Store, writer_id: &str, seq: u64, ct: &[u8]) -> Result<Vec<u8>, String> {
        let epoch = portcullis_tlog::key_epoch(seq);
        let slot = (writer_id.to_string(), epoch);
        if !self.keys.contains_key(&slot) {
            let wrapped: Option<Vec<u8>> =
                on!(pool, ex => sqlx::query_scalar("SELECT wrapped FROM audit_data_keys WHERE writer_id = $1 AND epoch = $2")
                    .bind(writer_id)
                    .bind(epoch as i64)
                    .fetch_optional(ex).await)
                    .map_err(|e| e.to_string())?;
            let wrapped = wrapped.ok_or_else(|| format!("the data key of epoch {epoch} is missing"))?;
            let raw = self
                .root
                .open(&wrapped, &data_key_aad(writer_id, epoch))
                .map_err(|_| format!("the data key of epoch {epoch} does not unwrap (altered)"))?;
            let key = SymmetricKey::from_slice(raw.expose_secret()).map_err(|e| e.to_string())?;
            self.keys.insert(slot.clone(), key);
        }
        let key = &self.keys[&slot];
        key.open(ct, &record_aad(writer_id, seq))
            .map(|p| p.expose_secret().clone())
            .map_err(|_| "it does not decrypt (altered, or moved from another place)".to_string())
    }
}

/// Appends one record to the server's own log and signs the new checkpoint, in the caller's
/// transaction: an event is durable exactly when its record and checkpoint are.
pub async fn append_own(tx: &mut Tx<'_>, keys: &Keys<'_>, payload: &str, now: i64) -> Result<u64, StoreError> {
    let writer = server_writer_id(&keys.signing.public_key());
    let mut log = load_log(tx, &writer).await?;
    let seq = log.frontier.size() + 1;
    let (leaf, head) = portcullis_tlog::leaf_of(&writer, seq, payload.as_bytes()).map_err(tlog_err)?;
    let key = data_key(tx, keys.root, &writer, portcullis_tlog::key_epoch(seq), now).await?;
    let ct = key.seal(&mut OsRng, payload.as_bytes(), &record_aad(&writer, seq))?;
    let row = crate::NewRecord {
        seq,
        kind: head.kind,
        session_id: None,
        payload_sha256: portcullis_crypto::sha256_hex(payload.as_bytes()),
        payload: ct,
        leaf,
        lost: None,
    };
    Store::insert_records(tx, &writer, std::slice::from_ref(&row), now).await?;
    log.frontier.append(leaf).map_err(tlog_err)?;
    let note = portcullis_tlog::sign_checkpoint(&writer, seq, log.frontier.root(), keys.signing).map_err(tlog_err)?;
    save_log(tx, &writer, &log.frontier, Some(&note), now).await?;
    Ok(seq)
}

/// Records a security event: a record of the server's own log, and the searchable row that
/// names it.
pub async fn record_event(
    tx: &mut Tx<'_>,
    keys: &Keys<'_>,
    now: i64,
    actor: Option<&str>,
    device_id: Option<&str>,
    kind: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    // The row ledger's head goes into the signed log with every event: the ledger cannot be
    // cut back to before it unnoticed.
    let rows = crate::rows::ledger_head(tx).await?;
    let payload = event_payload(now, actor, device_id, kind, &detail, rows.as_ref());
    let seq = append_own(tx, keys, &payload, now).await?;
    Store::insert_event(tx, now, actor, device_id, kind, &detail.to_string(), Some(seq), rows.as_ref()).await
}

/// The record of a security event (the row must say the same).
pub fn event_payload(
    at: i64,
    actor: Option<&str>,
    device_id: Option<&str>,
    kind: &str,
    detail: &serde_json::Value,
    rows: Option<&(i64, String)>,
) -> String {
    let mut payload =
        serde_json::json!({ "kind": kind, "at": at, "actor": actor, "device_id": device_id, "detail": detail });
    if let Some((seq, head)) = rows {
        payload["rows"] = serde_json::json!({ "seq": seq, "head": head });
    }
    payload.to_string()
}

/// Brings a data directory from before Merkle logs up to date, once, in one transaction:
/// records sealed under the root key are re-sealed under their writer's data key and get
/// leaves; each writer's log state is rebuilt from them; events without a record become
/// records of the server's own log. Returns how many rows moved.
pub async fn migrate(store: &Store, keys: &Keys<'_>, now: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    let old: Vec<(String, i64, Vec<u8>)> = on!(tx, ex => sqlx::query_as("SELECT writer_id, seq, payload FROM audit_records WHERE leaf IS NULL ORDER BY writer_id, seq")
            .fetch_all(ex).await)?;
    let mut moved = 0u64;
    let mut touched: Vec<String> = Vec::new();
    for (writer, seq, ct) in &old {
        let seq = *seq as u64;
        let aad = record_aad(writer, seq);
        let (leaf, sealed, lost) = match keys.root.open(ct, &aad) {
            Ok(plain) => {
                let plain = plain.expose_secret();
                let leaf = portcullis_tlog::leaf_of(writer, seq, plain).map(|(l, _)| l).unwrap_or_else(|_| {
                    portcullis_tlog::leaf_hash(writer, seq, "lost", None, &portcullis_crypto::sha256(plain))
                });
                let key = data_key(&mut tx, keys.root, writer, portcullis_tlog::key_epoch(seq), now).await?;
                (leaf, key.seal(&mut OsRng, plain, &aad)?, None)
            }
            Err(_) => (
                portcullis_tlog::leaf_hash(writer, seq, "lost", None, &portcullis_crypto::sha256(ct)),
                ct.clone(),
                Some("did not decrypt when the store was upgraded"),
            ),
        };
        on!(tx, ex => sqlx::query("UPDATE audit_records SET leaf = $1, payload = $2, lost = $3 WHERE writer_id = $4 AND seq = $5")
            .bind(&leaf.0[..])
            .bind(sealed)
            .bind(lost)
            .bind(writer)
            .bind(seq as i64)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        if !touched.contains(writer) {
            touched.push(writer.clone());
        }
        moved += 1;
    }
    for writer in touched {
        let leaves: Vec<(i64, Vec<u8>)> = on!(tx, ex => sqlx::query_as("SELECT seq, leaf FROM audit_records WHERE writer_id = $1 ORDER BY seq")
                .bind(&writer)
                .fetch_all(ex).await)?;
        let mut frontier = Frontier::new();
        for (seq, leaf) in leaves {
            if seq as u64 != frontier.size() + 1 {
                return Err(StoreError::Internal(format!("writer {writer}'s records miss {}", frontier.size() + 1)));
            }
            frontier.append(Hash(leaf.try_into().unwrap_or([0; 32]))).map_err(tlog_err)?;
        }
        // No writer signature exists for what came before logs: the next upload's checkpoint,
        // signed by the writer, must match this state.
        save_log(&mut tx, &writer, &frontier, None, now).await?;
    }
    let events: Vec<EventRow> = on!(tx, ex => sqlx::query_as(
        "SELECT id, at, actor, device_id, kind, detail, seq, rows_seq, rows_head FROM server_events \
         WHERE seq IS NULL ORDER BY id",
    )
    .fetch_all(ex).await)?;
    for EventRow { id, at, actor, device_id: device, kind, detail, .. } in events {
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
        let payload = event_payload(at, actor.as_deref(), device.as_deref(), &kind, &detail, None);
        let seq = append_own(&mut tx, keys, &payload, now).await?;
        on!(tx, ex => sqlx::query("UPDATE server_events SET seq = $1, detail = $2 WHERE id = $3")
            .bind(seq as i64)
            .bind(detail.to_string())
            .bind(id)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        moved += 1;
    }
    tx.commit().await?;
    Ok(moved)
}

/// The root of the checkpoint the server accepted for `writer_id` at `size`, if any.
pub async fn checkpoint_root(tx: &mut Tx<'_>, writer_id: &str, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(on!(tx, ex => sqlx::query_scalar("SELECT root FROM audit_checkpoints WHERE writer_id = $1 AND size = $2")
        .bind(writer_id)
        .bind(size as i64)
        .fetch_optional(ex)
        .await)?)
}

/// Keeps a countersigned checkpoint of `writer_id` (the first one accepted at its size).
pub async fn insert_checkpoint(
    tx: &mut Tx<'_>,
    writer_id: &str,
    size: u64,
    root: &[u8],
    note: &str,
    now: i64,
) -> Result<(), StoreError> {
    on!(tx, ex => sqlx::query(
        "INSERT INTO audit_checkpoints (writer_id, size, root, note, received_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(writer_id)
    .bind(size as i64)
    .bind(root)
    .bind(note)
    .bind(now)
    .execute(ex)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The newest checkpoint (signed note) the server holds for a writer's log.
pub async fn newest_checkpoint(store: &Store, writer_id: &str) -> Result<Option<String>, StoreError> {
    let note: Option<Option<String>> = on!(store, ex => sqlx::query_scalar("SELECT checkpoint FROM audit_logs WHERE writer_id = $1")
            .bind(writer_id)
            .fetch_optional(ex)
            .await)?;
    Ok(note.flatten())
}

/// How many records the server holds for a writer's log (0 for none).
pub async fn log_size(store: &Store, writer_id: &str) -> Result<u64, StoreError> {
    let size: Option<i64> = on!(store, ex => sqlx::query_scalar("SELECT size FROM audit_logs WHERE writer_id = $1")
        .bind(writer_id)
        .fetch_optional(ex)
        .await)?;
    Ok(size.unwrap_or(0).max(0) as u64)
}

/// Alarms of `kind` about record `index` of `writer_id`'s log raised after `since`.
pub async fn alarms_raised_since(
    tx: &mut Tx<'_>,
    kind: &str,
    since: i64,
    writer_id: &str,
    index: u64,
) -> Result<i64, StoreError> {
    // The one dialect difference here: reading fields of the JSON detail.
    let sql = match tx.kind() {
        crate::Kind::Sqlite => {
            "SELECT COUNT(*) FROM server_events WHERE kind = $1 AND at > $2 \
             AND json_extract(detail, '$.writer_id') = $3 AND json_extract(detail, '$.index') = $4"
        }
        crate::Kind::Postgres => {
            "SELECT COUNT(*) FROM server_events WHERE kind = $1 AND at > $2 \
             AND (detail::jsonb ->> 'writer_id') = $3 AND (detail::jsonb -> 'index') = to_jsonb($4::bigint)"
        }
    };
    Ok(on!(tx, ex => sqlx::query_scalar(sql)
        .bind(kind)
        .bind(since)
        .bind(writer_id)
        .bind(index as i64)
        .fetch_one(ex)
        .await)?)
}
