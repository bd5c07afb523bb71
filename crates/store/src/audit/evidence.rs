//! What auditors are shown about the logs: a session's offline evidence (bundle), where each
//! recording stands, and which gateways' uploads stay refused.

use std::collections::HashMap;

use portcullis_crypto::SymmetricKey;
use portcullis_tlog::{Frontier, Hash};

use super::{KeyRing, tlog_err};
use crate::StoreError;
use crate::{Store, on};

/// The offline evidence of one session: its records, each with an inclusion proof under the
/// writer's newest countersigned checkpoint, and the public keys. Checked here first: a store
/// that no longer matches its checkpoint exports nothing and says where.
pub async fn session_bundle(
    store: &Store,
    root: &SymmetricKey,
    server_key: &[u8; 32],
    session: &crate::SessionRow,
) -> Result<portcullis_tlog::bundle::Bundle, StoreError> {
    use base64::Engine;
    let pool = store;
    let writer = &session.writer_id;
    let b64 = base64::engine::general_purpose::STANDARD;
    let gateway: Option<(String, Option<Vec<u8>>)> = on!(pool, ex => sqlx::query_as("SELECT name, sign_public_key FROM gateways WHERE id = $1")
            .bind(writer)
            .fetch_optional(ex).await)?;
    let (name, Some(writer_key)) = gateway.unwrap_or_default() else {
        return Err(StoreError::Conflict(format!("the writer of session {} has no signing key", session.id)));
    };
    let writer_key: [u8; 32] =
        writer_key.try_into().map_err(|_| StoreError::Internal("malformed writer key".into()))?;
    crate::rows::RowKey::new(root).check(&mut pool.conn().await?, crate::rows::Row::Gateway(writer)).await?;
    let note: Option<Option<String>> = on!(pool, ex => sqlx::query_scalar("SELECT checkpoint FROM audit_logs WHERE writer_id = $1")
        .bind(writer)
        .fetch_optional(ex).await)?;
    let Some(note) = note.flatten() else {
        return Err(StoreError::Conflict(format!(
            "the log of session {}'s gateway has no countersigned checkpoint yet; try again once it has synced",
            session.id
        )));
    };
    let invalid = |index: Option<u64>, why: String| {
        let at = index.map(|i| format!(" at record {i}")).unwrap_or_default();
        StoreError::Refused("audit_record_invalid", format!("the log of {name} does not verify{at}: {why}"))
    };
    let checkpoint = portcullis_tlog::verify_checkpoint(&note, writer, &writer_key, Some(server_key))
        .map_err(|e| invalid(None, e.to_string()))?;
    if !checkpoint.countersigned {
        return Err(invalid(None, "the newest checkpoint is not countersigned".into()));
    }
    let leaves: Vec<(i64, Option<Vec<u8>>)> = on!(pool, ex => sqlx::query_as("SELECT seq, leaf FROM audit_records WHERE writer_id = $1 AND seq <= $2 ORDER BY seq")
            .bind(writer)
            .bind(checkpoint.size as i64)
            .fetch_all(ex).await)?;
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
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = on!(pool, ex => sqlx::query_as(
        "SELECT seq, payload, leaf FROM audit_records WHERE writer_id = $1 AND session_id = $2 AND seq <= $3 ORDER BY seq",
    )
    .bind(writer)
    .bind(&session.id)
    .bind(checkpoint.size as i64)
    .fetch_all(ex).await)?;
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

/// Marks `writer`'s uploads refused from `index` (a fork, rollback, inconsistent or bad
/// checkpoint, a refused record): until an upload continues its log again, no new session opens
/// through it. Kept outside the refused upload's transaction, which rolled back.
pub async fn mark_refused(store: &Store, writer: &str, index: u64, why: &str, now: i64) -> Result<(), StoreError> {
    on!(store, ex => sqlx::query(
        "INSERT INTO audit_logs (writer_id, size, root, frontier, updated_at, refused_index, refused_reason) \
         VALUES ($1, 0, $2, x'', $3, $4, $5) ON CONFLICT (writer_id) DO UPDATE SET \
         refused_index = excluded.refused_index, refused_reason = excluded.refused_reason",
    )
    .bind(writer)
    .bind(&Frontier::new().root().0[..])
    .bind(now)
    .bind(index as i64)
    .bind(why)
    .execute(ex).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Writers whose uploads stay refused: (first bad index, why).
pub async fn refused_writers(pool: &Store) -> Result<HashMap<String, (u64, String)>, StoreError> {
    let rows: Vec<(String, i64, Option<String>)> = on!(pool, ex => sqlx::query_as(
        "SELECT writer_id, refused_index, refused_reason FROM audit_logs WHERE refused_index IS NOT NULL",
    )
    .fetch_all(ex).await)?;
    Ok(rows.into_iter().map(|(w, i, why)| (w, (i as u64, why.unwrap_or_default()))).collect())
}

/// Whether `writer`'s uploads stay refused (see [`mark_refused`]).
pub async fn writer_refused(pool: &Store, writer: &str) -> Result<Option<(u64, String)>, StoreError> {
    Ok(refused_writers(pool).await?.remove(writer))
}

/// What the sessions list needs to say where each recording stands, read once per listing:
/// per writer the records covered by its newest countersigned checkpoint, the records lost at
/// the gateway, the uploads refused and not since overcome; per session its records' range.
pub struct LogFacts {
    covered: HashMap<String, u64>,
    lost: HashMap<String, Vec<(u64, String)>>,
    refused: HashMap<String, (u64, String)>,
    ranges: HashMap<(String, String), (u64, u64)>,
}

impl LogFacts {
    pub async fn load(pool: &Store) -> Result<Self, StoreError> {
        let covered: Vec<(String, i64)> = on!(pool, ex => sqlx::query_as("SELECT writer_id, size FROM audit_logs WHERE checkpoint IS NOT NULL")
                .fetch_all(ex).await)?;
        let mut lost: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for (w, seq, why) in on!(pool, ex => sqlx::query_as::<_, (String, i64, String)>(
            "SELECT writer_id, seq, lost FROM audit_records WHERE lost IS NOT NULL",
        )
        .fetch_all(ex).await)?
        {
            lost.entry(w).or_default().push((seq as u64, why));
        }
        let refused = refused_writers(pool).await?;
        let ranges = on!(pool, ex => sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT writer_id, session_id, MIN(seq), MAX(seq) FROM audit_records WHERE session_id IS NOT NULL \
             GROUP BY writer_id, session_id",
        )
        .fetch_all(ex).await)?
        .into_iter()
        .map(|(w, s, lo, hi)| ((w, s), (lo as u64, hi as u64)))
        .collect();
        Ok(Self { covered: covered.into_iter().map(|(w, s)| (w, s as u64)).collect(), lost, refused, ranges })
    }

    pub fn recording_state(&self, s: &crate::SessionRow) -> portcullis_proto::RecordingState {
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
