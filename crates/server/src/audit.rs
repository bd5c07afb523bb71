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
use portcullis_proto::{AuditProblem, AuditVerifyReport, WriterReport};
use portcullis_tlog::{Frontier, Hash};

use crate::ServerError;
use crate::store::{Store, Tx, record_aad};

/// The keys the audit store needs: the root key (wraps data keys) and the server's signing key
/// (signs its own log's checkpoints, countersigns the gateways').
pub(crate) struct Keys<'a> {
    pub root: &'a SymmetricKey,
    pub signing: &'a SigningIdentity,
}

/// The server's own log is named after its signing key, so two installations never share one.
pub fn server_writer_id(signing_public: &[u8; 32]) -> String {
    portcullis_tlog::server_log_id(signing_public)
}

/// Event kinds that are alarms: an audit log refused or damaged.
pub const ALARM_KINDS: &[&str] = &[
    "audit_gap",
    "audit_fork",
    "audit_rollback",
    "audit_inconsistent_checkpoint",
    "audit_bad_checkpoint",
    "audit_server_behind",
    "audit_record_lost",
    "audit_upload_refused",
];

fn tlog_err(e: portcullis_tlog::TlogError) -> ServerError {
    ServerError::Internal(e.to_string())
}

/// A security event's searchable row.
#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: i64,
    actor: Option<String>,
    device_id: Option<String>,
    kind: String,
    detail: String,
    seq: Option<i64>,
}

/// A stored record, as verification reads it.
#[derive(sqlx::FromRow)]
struct StoredRecord {
    seq: i64,
    kind: String,
    session_id: Option<String>,
    payload_sha256: String,
    payload: Vec<u8>,
    leaf: Option<Vec<u8>>,
    lost: Option<String>,
}

/// A writer's log as the server holds it.
pub(crate) struct LogState {
    pub frontier: Frontier,
    pub checkpoint: Option<String>,
}

pub(crate) async fn load_log(tx: &mut Tx<'_>, writer_id: &str) -> Result<LogState, ServerError> {
    let row: Option<(i64, Vec<u8>, Option<String>)> =
        sqlx::query_as("SELECT size, frontier, checkpoint FROM audit_logs WHERE writer_id = ?")
            .bind(writer_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match row {
        Some((size, frontier, checkpoint)) => {
            LogState { frontier: Frontier::from_bytes(size as u64, &frontier).map_err(tlog_err)?, checkpoint }
        }
        None => LogState { frontier: Frontier::new(), checkpoint: None },
    })
}

pub(crate) async fn save_log(
    tx: &mut Tx<'_>,
    writer_id: &str,
    frontier: &Frontier,
    checkpoint: Option<&str>,
    now: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO audit_logs (writer_id, size, root, frontier, checkpoint, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn data_key_aad(writer_id: &str, epoch: u64) -> Aad {
    Aad::for_field("audit_data_keys", &format!("{writer_id}/{epoch}"), 1, "wrapped")
}

/// The data key of `writer_id`'s records in `epoch`, made (and wrapped by the root key) on
/// first use inside the caller's transaction — so a key exists exactly when records under it do.
pub(crate) async fn data_key(
    tx: &mut Tx<'_>,
    root: &SymmetricKey,
    writer_id: &str,
    epoch: u64,
    now: i64,
) -> Result<SymmetricKey, ServerError> {
    let aad = data_key_aad(writer_id, epoch);
    let wrapped: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped FROM audit_data_keys WHERE writer_id = ? AND epoch = ?")
            .bind(writer_id)
            .bind(epoch as i64)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(wrapped) = wrapped {
        let raw = root.open(&wrapped, &aad).map_err(|_| {
            ServerError::Internal(format!("the data key of writer {writer_id}, epoch {epoch}, does not unwrap"))
        })?;
        return Ok(SymmetricKey::from_slice(raw.expose_secret())?);
    }
    let key = SymmetricKey::generate(&mut OsRng);
    let wrapped = root.seal(&mut OsRng, key.expose_bytes(), &aad)?;
    sqlx::query("INSERT INTO audit_data_keys (writer_id, epoch, wrapped, created_at) VALUES (?, ?, ?, ?)")
        .bind(writer_id)
        .bind(epoch as i64)
        .bind(wrapped)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(key)
}

/// Data keys of one writer, unwrapped as they are needed (one per epoch), read-only.
pub(crate) struct KeyRing<'a> {
    root: &'a SymmetricKey,
    keys: HashMap<(String, u64), SymmetricKey>,
}

impl<'a> KeyRing<'a> {
    pub fn new(root: &'a SymmetricKey) -> Self {
        Self { root, keys: HashMap::new() }
    }

    pub async fn open(
        &mut self,
        pool: &sqlx::SqlitePool,
        writer_id: &str,
        seq: u64,
        ct: &[u8],
    ) -> Result<Vec<u8>, String> {
        let epoch = portcullis_tlog::key_epoch(seq);
        let slot = (writer_id.to_string(), epoch);
        if !self.keys.contains_key(&slot) {
            let wrapped: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT wrapped FROM audit_data_keys WHERE writer_id = ? AND epoch = ?")
                    .bind(writer_id)
                    .bind(epoch as i64)
                    .fetch_optional(pool)
                    .await
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
pub(crate) async fn append_own(tx: &mut Tx<'_>, keys: &Keys<'_>, payload: &str, now: i64) -> Result<u64, ServerError> {
    let writer = server_writer_id(&keys.signing.public_key());
    let mut log = load_log(tx, &writer).await?;
    let seq = log.frontier.size() + 1;
    let (leaf, head) = portcullis_tlog::leaf_of(&writer, seq, payload.as_bytes()).map_err(tlog_err)?;
    let key = data_key(tx, keys.root, &writer, portcullis_tlog::key_epoch(seq), now).await?;
    let ct = key.seal(&mut OsRng, payload.as_bytes(), &record_aad(&writer, seq))?;
    let row = crate::store::NewRecord {
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
pub(crate) async fn record_event(
    tx: &mut Tx<'_>,
    keys: &Keys<'_>,
    now: i64,
    actor: Option<&str>,
    device_id: Option<&str>,
    kind: &str,
    detail: serde_json::Value,
) -> Result<(), ServerError> {
    let payload = event_payload(now, actor, device_id, kind, &detail);
    let seq = append_own(tx, keys, &payload, now).await?;
    Store::insert_event(tx, now, actor, device_id, kind, &detail.to_string(), Some(seq)).await
}

/// The record of a security event (the row must say the same).
fn event_payload(
    at: i64,
    actor: Option<&str>,
    device_id: Option<&str>,
    kind: &str,
    detail: &serde_json::Value,
) -> String {
    serde_json::json!({ "kind": kind, "at": at, "actor": actor, "device_id": device_id, "detail": detail }).to_string()
}

/// Brings a data directory from before Merkle logs up to date, once, in one transaction:
/// records sealed under the root key are re-sealed under their writer's data key and get
/// leaves; each writer's log state is rebuilt from them; events without a record become
/// records of the server's own log. Returns how many rows moved.
pub(crate) async fn migrate(store: &Store, keys: &Keys<'_>, now: i64) -> Result<u64, ServerError> {
    let mut tx = store.begin().await?;
    let old: Vec<(String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT writer_id, seq, payload FROM audit_records WHERE leaf IS NULL ORDER BY writer_id, seq")
            .fetch_all(&mut *tx)
            .await?;
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
        sqlx::query("UPDATE audit_records SET leaf = ?, payload = ?, lost = ? WHERE writer_id = ? AND seq = ?")
            .bind(&leaf.0[..])
            .bind(sealed)
            .bind(lost)
            .bind(writer)
            .bind(seq as i64)
            .execute(&mut *tx)
            .await?;
        if !touched.contains(writer) {
            touched.push(writer.clone());
        }
        moved += 1;
    }
    for writer in touched {
        let leaves: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, leaf FROM audit_records WHERE writer_id = ? ORDER BY seq")
                .bind(&writer)
                .fetch_all(&mut *tx)
                .await?;
        let mut frontier = Frontier::new();
        for (seq, leaf) in leaves {
            if seq as u64 != frontier.size() + 1 {
                return Err(ServerError::Internal(format!("writer {writer}'s records miss {}", frontier.size() + 1)));
            }
            frontier.append(Hash(leaf.try_into().unwrap_or([0; 32]))).map_err(tlog_err)?;
        }
        // No writer signature exists for what came before logs: the next upload's checkpoint,
        // signed by the writer, must match this state.
        save_log(&mut tx, &writer, &frontier, None, now).await?;
    }
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT id, at, actor, device_id, kind, detail, seq FROM server_events WHERE seq IS NULL ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    for EventRow { id, at, actor, device_id: device, kind, detail, .. } in events {
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
        let payload = event_payload(at, actor.as_deref(), device.as_deref(), &kind, &detail);
        let seq = append_own(&mut tx, keys, &payload, now).await?;
        sqlx::query("UPDATE server_events SET seq = ?, detail = ? WHERE id = ?")
            .bind(seq as i64)
            .bind(detail.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        moved += 1;
    }
    tx.commit().await?;
    Ok(moved)
}

type WriterKeys = HashMap<String, (String, Result<Option<[u8; 32]>, String>)>;

/// Public keys of the writers, to check their checkpoints — only from gateway rows whose
/// authentication holds (a key swapped in the database would otherwise vouch for forged logs).
async fn writer_keys(pool: &sqlx::SqlitePool, root: &SymmetricKey) -> Result<WriterKeys, ServerError> {
    let rows: Vec<(String, String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT id, name, sign_public_key FROM gateways").fetch_all(pool).await?;
    let macs = crate::rows::RowKey::new(root);
    let mut out = HashMap::new();
    let mut conn = pool.acquire().await?;
    for (id, name, key) in rows {
        let key = match macs.check(&mut conn, crate::rows::Row::Gateway(&id)).await {
            Ok(()) => Ok(key.and_then(|k| <[u8; 32]>::try_from(k).ok())),
            Err(e) => Err(e.to_string()),
        };
        out.insert(id, (name, key));
    }
    Ok(out)
}

const PAGE: i64 = 20_000;

/// Checks every log end to end: each record decrypts, matches its leaf and sits where its leaf
/// says; the leaves rebuild the stored tree and every stored checkpoint; the newest checkpoint
/// carries a valid writer signature and the server's countersignature; the searchable rows
/// (sessions, security events) agree with the records. Read-only.
pub(crate) async fn verify_all(
    store: &Store,
    root: &SymmetricKey,
    server_key: &[u8; 32],
) -> Result<AuditVerifyReport, ServerError> {
    let pool = &store.pool;
    let server_writer = server_writer_id(server_key);
    let names = writer_keys(pool, root).await?;
    let mut writers: Vec<String> =
        sqlx::query_scalar("SELECT writer_id FROM audit_logs UNION SELECT DISTINCT writer_id FROM audit_records")
            .fetch_all(pool)
            .await?;
    writers.sort_by_key(|w| (w != &server_writer, w.clone()));
    let mut report = AuditVerifyReport::default();
    let mut ring = KeyRing::new(root);
    for writer in writers {
        let (name, key) = if writer == server_writer {
            ("control server".to_string(), Ok(Some(*server_key)))
        } else {
            names.get(&writer).cloned().unwrap_or_else(|| ("unknown writer".into(), Ok(None)))
        };
        let problem = |index: Option<u64>, message: String| AuditProblem {
            writer_id: writer.clone(),
            writer_name: name.clone(),
            index,
            message,
        };
        let mut frontier = Frontier::new();
        let mut lost = 0u64;
        let mut first_problem: Option<AuditProblem> = None;
        let checkpoints: HashMap<i64, Vec<u8>> =
            sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT size, root FROM audit_checkpoints WHERE writer_id = ?")
                .bind(&writer)
                .fetch_all(pool)
                .await?
                .into_iter()
                .collect();
        let mut after = 0i64;
        'pages: loop {
            let rows: Vec<StoredRecord> = sqlx::query_as(
                "SELECT seq, kind, session_id, payload_sha256, payload, leaf, lost FROM audit_records \
                     WHERE writer_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            )
            .bind(&writer)
            .bind(after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
            let Some(last) = rows.last().map(|r| r.seq) else { break };
            after = last;
            for StoredRecord {
                seq,
                kind,
                session_id: session,
                payload_sha256: sha_hex,
                payload: ct,
                leaf,
                lost: lost_reason,
            } in rows
            {
                let seq_u = seq as u64;
                if seq_u != frontier.size() + 1 {
                    first_problem = Some(problem(
                        Some(frontier.size() + 1),
                        format!("record {} is missing (the next stored is {seq})", frontier.size() + 1),
                    ));
                    break 'pages;
                }
                let Some(stored_leaf) = leaf.and_then(|l| <[u8; 32]>::try_from(l).ok()).map(Hash) else {
                    first_problem = Some(problem(Some(seq_u), format!("record {seq} has no leaf")));
                    break 'pages;
                };
                if lost_reason.is_some() {
                    lost += 1;
                } else {
                    let checked = match ring.open(pool, &writer, seq_u, &ct).await {
                        Ok(plain) => match portcullis_tlog::leaf_of(&writer, seq_u, &plain) {
                            Ok((computed, head))
                                if computed == stored_leaf
                                    && head.kind == kind
                                    && head.session_id == session
                                    && portcullis_crypto::sha256_hex(&plain) == sha_hex =>
                            {
                                Ok(())
                            }
                            Ok(_) => Err("its content does not match its leaf or its index columns".to_string()),
                            Err(e) => Err(e.to_string()),
                        },
                        Err(e) => Err(e),
                    };
                    if let Err(why) = checked {
                        first_problem = Some(problem(Some(seq_u), format!("record {seq}: {why}")));
                        break 'pages;
                    }
                }
                frontier.append(stored_leaf).map_err(tlog_err)?;
                if let Some(root) = checkpoints.get(&seq)
                    && root[..] != frontier.root().0[..]
                {
                    first_problem = Some(problem(
                        Some(seq_u),
                        format!("the log up to record {seq} does not match the checkpoint accepted at that size"),
                    ));
                    break 'pages;
                }
            }
        }
        let state: Option<(i64, Vec<u8>, Option<String>)> =
            sqlx::query_as("SELECT size, root, checkpoint FROM audit_logs WHERE writer_id = ?")
                .bind(&writer)
                .fetch_optional(pool)
                .await?;
        let mut entry = WriterReport {
            writer_id: writer.clone(),
            name: name.clone(),
            records: frontier.size(),
            lost,
            checkpoint_size: None,
            root: portcullis_tlog::hash_b64(&frontier.root()),
            countersigned: false,
        };
        let key = match key {
            Ok(key) => key,
            Err(why) => {
                first_problem.get_or_insert(problem(None, why));
                None
            }
        };
        if first_problem.is_none() {
            first_problem = match state {
                None => Some(problem(None, "the log has records but no state".into())),
                Some((size, root, note)) => {
                    if size as u64 != frontier.size() || root[..] != frontier.root().0[..] {
                        Some(problem(
                            Some(frontier.size().min(size as u64) + 1),
                            format!(
                                "the log holds {} records but its state says {size}: records were removed, added or changed",
                                frontier.size()
                            ),
                        ))
                    } else {
                        match (note, key) {
                            (None, _) if size == 0 || writer != server_writer => {
                                // Empty, or upgraded from before logs and not yet checkpointed by the writer.
                                None
                            }
                            (None, _) => Some(problem(None, "the log has no signed checkpoint".into())),
                            (Some(_), None) => Some(problem(None, "the writer's public key is missing".into())),
                            (Some(note), Some(key)) => {
                                let cosigner = (writer != server_writer).then_some(server_key);
                                match portcullis_tlog::verify_checkpoint(&note, &writer, &key, cosigner) {
                                    Ok(cp) if cp.size == frontier.size() && cp.root == frontier.root() => {
                                        entry.checkpoint_size = Some(cp.size);
                                        entry.countersigned = cp.countersigned || writer == server_writer;
                                        (!entry.countersigned)
                                            .then(|| problem(None, "the newest checkpoint is not countersigned".into()))
                                    }
                                    Ok(cp) => Some(problem(
                                        Some(cp.size.min(frontier.size()) + 1),
                                        format!("the signed checkpoint covers {} records with another root", cp.size),
                                    )),
                                    Err(e) => Some(problem(None, format!("the newest checkpoint: {e}"))),
                                }
                            }
                        }
                    }
                }
            };
        }
        if let Some(p) = first_problem {
            report.problems.push(p);
        }
        report.records += entry.records;
        report.writers.push(entry);
    }
    verify_rows(store, &mut ring, &server_writer, &mut report).await?;
    verify_decision_rows(pool, root, &server_writer, &mut report).await?;
    Ok(report)
}

/// The searchable rows must agree with the records they index: every security event row with
/// its record in the server's log (and every event record with a row), every session with its
/// start record.
async fn verify_rows(
    store: &Store,
    ring: &mut KeyRing<'_>,
    server_writer: &str,
    report: &mut AuditVerifyReport,
) -> Result<(), ServerError> {
    let pool = &store.pool;
    let server_problem = |index: Option<u64>, message: String| AuditProblem {
        writer_id: server_writer.to_string(),
        writer_name: "control server".into(),
        index,
        message,
    };
    let rows: Vec<EventRow> =
        sqlx::query_as("SELECT id, at, actor, device_id, kind, detail, seq FROM server_events ORDER BY id")
            .fetch_all(pool)
            .await?;
    let mut seen = std::collections::HashSet::new();
    for EventRow { id, at, actor, device_id: device, kind, detail, seq } in rows {
        let Some(seq) = seq else {
            report.problems.push(server_problem(None, format!("security event {id} ({kind}) has no record")));
            return Ok(());
        };
        let ct: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT payload FROM audit_records WHERE writer_id = ? AND seq = ? AND lost IS NULL")
                .bind(server_writer)
                .bind(seq)
                .fetch_optional(pool)
                .await?;
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
        let expected = event_payload(at, actor.as_deref(), device.as_deref(), &kind, &detail);
        let matches = match ct {
            Some(ct) => ring.open(pool, server_writer, seq as u64, &ct).await.map(|p| p == expected.as_bytes()),
            None => Ok(false),
        };
        if matches != Ok(true) {
            report.problems.push(server_problem(
                Some(seq as u64),
                format!("security event {id} ({kind}) differs from record {seq} of the server's log (altered)"),
            ));
            return Ok(());
        }
        seen.insert(seq);
    }
    let records: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_records WHERE writer_id = ? ORDER BY seq")
        .bind(server_writer)
        .fetch_all(pool)
        .await?;
    if let Some(missing) = records.into_iter().find(|s| !seen.contains(s)) {
        report.problems.push(server_problem(
            Some(missing as u64),
            format!("the security event of record {missing} of the server's log was deleted"),
        ));
        return Ok(());
    }
    let orphans: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.id, s.writer_id FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM audit_records r \
         WHERE r.writer_id = s.writer_id AND r.session_id = s.id AND r.kind = 'session_start')",
    )
    .fetch_all(pool)
    .await?;
    if let Some((session, writer)) = orphans.into_iter().next() {
        report.problems.push(AuditProblem {
            writer_id: writer,
            writer_name: String::new(),
            index: None,
            message: format!("session {session} is listed but has no start record (added behind the server's back)"),
        });
    }
    Ok(())
}

/// The offline evidence of one session: its records, each with an inclusion proof under the
/// writer's newest countersigned checkpoint, and the public keys. Checked here first: a store
/// that no longer matches its checkpoint exports nothing and says where.
pub(crate) async fn session_bundle(
    store: &Store,
    root: &SymmetricKey,
    server_key: &[u8; 32],
    session: &crate::store::SessionRow,
) -> Result<portcullis_tlog::bundle::Bundle, ServerError> {
    use base64::Engine;
    let pool = &store.pool;
    let writer = &session.writer_id;
    let b64 = base64::engine::general_purpose::STANDARD;
    let gateway: Option<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT name, sign_public_key FROM gateways WHERE id = ?")
            .bind(writer)
            .fetch_optional(pool)
            .await?;
    let (name, Some(writer_key)) = gateway.unwrap_or_default() else {
        return Err(ServerError::Conflict(format!("the writer of session {} has no signing key", session.id)));
    };
    let writer_key: [u8; 32] =
        writer_key.try_into().map_err(|_| ServerError::Internal("malformed writer key".into()))?;
    crate::rows::RowKey::new(root).check(&mut *pool.acquire().await?, crate::rows::Row::Gateway(writer)).await?;
    let note: Option<Option<String>> = sqlx::query_scalar("SELECT checkpoint FROM audit_logs WHERE writer_id = ?")
        .bind(writer)
        .fetch_optional(pool)
        .await?;
    let Some(note) = note.flatten() else {
        return Err(ServerError::Conflict(format!(
            "the log of session {}'s gateway has no countersigned checkpoint yet; try again once it has synced",
            session.id
        )));
    };
    let invalid = |index: Option<u64>, why: String| {
        let at = index.map(|i| format!(" at record {i}")).unwrap_or_default();
        ServerError::Refused("audit_record_invalid", format!("the log of {name} does not verify{at}: {why}"))
    };
    let checkpoint = portcullis_tlog::verify_checkpoint(&note, writer, &writer_key, Some(server_key))
        .map_err(|e| invalid(None, e.to_string()))?;
    if !checkpoint.countersigned {
        return Err(invalid(None, "the newest checkpoint is not countersigned".into()));
    }
    let leaves: Vec<(i64, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT seq, leaf FROM audit_records WHERE writer_id = ? AND seq <= ? ORDER BY seq")
            .bind(writer)
            .bind(checkpoint.size as i64)
            .fetch_all(pool)
            .await?;
    let mut tree = portcullis_tlog::MemoryTree::new();
    for (seq, leaf) in leaves {
        if seq as u64 != tree.size() + 1 {
            return Err(invalid(Some(tree.size() + 1), "the record is missing".into()));
        }
        let leaf = leaf
            .and_then(|l| <[u8; 32]>::try_from(l).ok())
            .ok_or_else(|| invalid(Some(seq as u64), "no leaf".into()))?;
        tree.push(Hash(leaf)).map_err(tlog_err)?;
    }
    if tree.size() != checkpoint.size || tree.root_at(checkpoint.size).map_err(tlog_err)? != checkpoint.root {
        return Err(invalid(None, "the stored records do not rebuild the signed checkpoint".into()));
    }
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, payload, leaf FROM audit_records WHERE writer_id = ? AND session_id = ? AND seq <= ? ORDER BY seq",
    )
    .bind(writer)
    .bind(&session.id)
    .bind(checkpoint.size as i64)
    .fetch_all(pool)
    .await?;
    let mut ring = KeyRing::new(root);
    let mut records = Vec::new();
    for (seq, ct, leaf) in rows {
        let seq = seq as u64;
        let plain = ring.open(pool, writer, seq, &ct).await.map_err(|why| invalid(Some(seq), why))?;
        let payload = String::from_utf8(plain).map_err(|_| invalid(Some(seq), "not UTF-8".into()))?;
        match portcullis_tlog::leaf_of(writer, seq, payload.as_bytes()) {
            Ok((computed, _)) if computed.0[..] == leaf[..] => {}
            _ => return Err(invalid(Some(seq), "its content does not match its leaf".into())),
        }
        let proof = tree.inclusion_proof(seq - 1, checkpoint.size).map_err(tlog_err)?;
        records.push(portcullis_tlog::bundle::BundleRecord {
            seq,
            payload,
            proof: proof.iter().map(portcullis_tlog::hash_b64).collect(),
        });
    }
    Ok(portcullis_tlog::bundle::Bundle {
        format: portcullis_tlog::bundle::FORMAT.into(),
        session_id: session.id.clone(),
        writer: portcullis_tlog::bundle::BundleWriter { id: writer.clone(), name, public_key: b64.encode(writer_key) },
        server_key: b64.encode(server_key),
        checkpoint: note,
        records,
    })
}

/// Every row the server decides with must carry a valid MAC (see [`crate::rows`]): one added or
/// changed behind the server's back is reported here, before anything uses it.
async fn verify_decision_rows(
    pool: &sqlx::SqlitePool,
    root: &SymmetricKey,
    server_writer: &str,
    report: &mut AuditVerifyReport,
) -> Result<(), ServerError> {
    use crate::rows::Row;
    let macs = crate::rows::RowKey::new(root);
    let mut conn = pool.acquire().await?;
    let users: Vec<String> = sqlx::query_scalar("SELECT id FROM users ORDER BY id").fetch_all(&mut *conn).await?;
    let devices: Vec<String> = sqlx::query_scalar("SELECT id FROM devices ORDER BY id").fetch_all(&mut *conn).await?;
    let gateways: Vec<String> = sqlx::query_scalar("SELECT id FROM gateways ORDER BY id").fetch_all(&mut *conn).await?;
    let policies: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM policy_sets ORDER BY version").fetch_all(&mut *conn).await?;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT id FROM security_keys ORDER BY id").fetch_all(&mut *conn).await?;
    let rows = users
        .iter()
        .map(|id| Row::User(id))
        .chain(devices.iter().map(|id| Row::Device(id)))
        .chain(gateways.iter().map(|id| Row::Gateway(id)))
        .chain(policies.iter().map(|v| Row::Policy(*v)))
        .chain(keys.iter().map(|id| Row::SecurityKey(id)));
    for row in rows {
        if let Err(e) = macs.check(&mut conn, row).await {
            report.problems.push(AuditProblem {
                writer_id: match row {
                    Row::Gateway(id) => id.to_string(),
                    _ => server_writer.to_string(),
                },
                writer_name: "control server".into(),
                index: None,
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Marks `writer`'s uploads refused from `index` (a fork, rollback, inconsistent or bad
/// checkpoint, a refused record): until an upload continues its log again, no new session opens
/// through it. Kept outside the refused upload's transaction, which rolled back.
pub(crate) async fn mark_refused(
    store: &Store,
    writer: &str,
    index: u64,
    why: &str,
    now: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO audit_logs (writer_id, size, root, frontier, updated_at, refused_index, refused_reason) \
         VALUES (?, 0, ?, x'', ?, ?, ?) ON CONFLICT (writer_id) DO UPDATE SET \
         refused_index = excluded.refused_index, refused_reason = excluded.refused_reason",
    )
    .bind(writer)
    .bind(&Frontier::new().root().0[..])
    .bind(now)
    .bind(index as i64)
    .bind(why)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Writers whose uploads stay refused: (first bad index, why).
pub(crate) async fn refused_writers(pool: &sqlx::SqlitePool) -> Result<HashMap<String, (u64, String)>, ServerError> {
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT writer_id, refused_index, refused_reason FROM audit_logs WHERE refused_index IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(w, i, why)| (w, (i as u64, why.unwrap_or_default()))).collect())
}

/// Whether `writer`'s uploads stay refused (see [`mark_refused`]).
pub(crate) async fn writer_refused(
    pool: &sqlx::SqlitePool,
    writer: &str,
) -> Result<Option<(u64, String)>, ServerError> {
    Ok(refused_writers(pool).await?.remove(writer))
}

/// What the sessions list needs to say where each recording stands, read once per listing:
/// per writer the records covered by its newest countersigned checkpoint, the records lost at
/// the gateway, the uploads refused and not since overcome; per session its records' range.
pub(crate) struct LogFacts {
    covered: HashMap<String, u64>,
    lost: HashMap<String, Vec<(u64, String)>>,
    refused: HashMap<String, (u64, String)>,
    ranges: HashMap<(String, String), (u64, u64)>,
}

impl LogFacts {
    pub async fn load(pool: &sqlx::SqlitePool) -> Result<Self, ServerError> {
        let covered: Vec<(String, i64)> =
            sqlx::query_as("SELECT writer_id, size FROM audit_logs WHERE checkpoint IS NOT NULL")
                .fetch_all(pool)
                .await?;
        let mut lost: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for (w, seq, why) in sqlx::query_as::<_, (String, i64, String)>(
            "SELECT writer_id, seq, lost FROM audit_records WHERE lost IS NOT NULL",
        )
        .fetch_all(pool)
        .await?
        {
            lost.entry(w).or_default().push((seq as u64, why));
        }
        let refused = refused_writers(pool).await?;
        let ranges = sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT writer_id, session_id, MIN(seq), MAX(seq) FROM audit_records WHERE session_id IS NOT NULL \
             GROUP BY writer_id, session_id",
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(w, s, lo, hi)| ((w, s), (lo as u64, hi as u64)))
        .collect();
        Ok(Self { covered: covered.into_iter().map(|(w, s)| (w, s as u64)).collect(), lost, refused, ranges })
    }

    pub fn recording_state(&self, s: &crate::store::SessionRow) -> portcullis_proto::RecordingState {
        use portcullis_proto::RecordingState;
        let Some(&(lo, hi)) = self.ranges.get(&(s.writer_id.clone(), s.id.clone())) else {
            return RecordingState::Failed("the session is listed but none of its records is stored".into());
        };
        let end = if s.ended_at.is_some() { hi } else { u64::MAX };
        if let Some((seq, why)) =
            self.lost.get(&s.writer_id).and_then(|l| l.iter().find(|(q, _)| (lo..=end).contains(q)))
        {
            return RecordingState::Failed(format!("record {seq} of its gateway was lost before upload: {why}"));
        }
        if s.ended_at.is_none() {
            if let Some((index, message)) = self.refused.get(&s.writer_id) {
                return RecordingState::Failed(format!(
                    "its gateway's uploads are refused from record {index}: {message}"
                ));
            }
            return RecordingState::PendingUpload;
        }
        match self.covered.get(&s.writer_id) {
            Some(&size) if size >= hi => RecordingState::Verified,
            _ => RecordingState::PendingUpload,
        }
    }
}
