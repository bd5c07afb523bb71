//! The writer's audit log in the local database (a gateway's): records sealed under the local
//! key with associated data that binds each to its sequence number, as a Merkle log — every
//! record has a leaf, every append a signed checkpoint.

use portcullis_crypto::identity::SigningIdentity;
use portcullis_crypto::{Aad, OsRng, SymmetricKey};
use portcullis_proto::AuditPayload;

use crate::{LocalDb, LocalDbError, db_err};

fn record_aad(device_id: &str, seq: u64) -> Aad {
    Aad::for_field("records", &format!("{device_id}/{seq}"), 1, "payload")
}

/// Records of one epoch (2^28 records) share a key: the local key itself for the first epoch
/// (records from before epochs), a key derived from it for each later one — far below
/// AES-GCM's bound of 2^32 random nonces per key.
fn with_record_key<T>(local: &SymmetricKey, seq: u64, f: impl FnOnce(&SymmetricKey) -> T) -> T {
    match portcullis_tlog::key_epoch(seq) {
        0 => f(local),
        epoch => f(&local.derive(&format!("records/epoch/{epoch}"))),
    }
}

fn open_record(key: &SymmetricKey, writer_id: &str, seq: u64, ct: &[u8]) -> Result<String, LocalDbError> {
    let plain = with_record_key(key, seq, |k| k.open(ct, &record_aad(writer_id, seq)))
        .map_err(|_| LocalDbError(format!("local record {seq} fails verification (tampered or moved)")))?;
    String::from_utf8(plain.expose_secret().clone())
        .map_err(|_| LocalDbError(format!("local record {seq} is not UTF-8")))
}

/// The leaf of a record whose plaintext is gone: over its ciphertext, so it is still one value.
fn lost_leaf(writer_id: &str, seq: u64, ct: &[u8]) -> portcullis_tlog::Hash {
    portcullis_tlog::leaf_hash(writer_id, seq, "lost", None, &portcullis_crypto::sha256(ct))
}

async fn latest_frontier(conn: &mut sqlx::SqliteConnection) -> Result<portcullis_tlog::Frontier, LocalDbError> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT size, frontier FROM log_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    match row {
        Some((size, bytes)) => portcullis_tlog::Frontier::from_bytes(size as u64, &bytes)
            .map_err(|e| LocalDbError(format!("the local log's checkpoint: {e}"))),
        None => Ok(portcullis_tlog::Frontier::new()),
    }
}

async fn insert_checkpoint(
    conn: &mut sqlx::SqliteConnection,
    w: &LogWriter<'_>,
    frontier: &portcullis_tlog::Frontier,
) -> Result<(), LocalDbError> {
    let note = portcullis_tlog::sign_checkpoint(w.writer_id, frontier.size(), frontier.root(), w.signer)
        .map_err(|e| LocalDbError(e.to_string()))?;
    sqlx::query("INSERT OR REPLACE INTO log_checkpoints (size, note, frontier) VALUES (?, ?, ?)")
        .bind(frontier.size() as i64)
        .bind(note)
        .bind(frontier.to_bytes())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Who writes a log: its id, the key its records are sealed under, the key that signs its
/// checkpoints.
pub struct LogWriter<'a> {
    pub writer_id: &'a str,
    pub key: &'a SymmetricKey,
    pub signer: &'a SigningIdentity,
}

/// (seq, ciphertext — none when the caller holds the plaintext, leaf) as read for an upload.
type StoredRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// A record waiting for upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Payload(String),
    /// It no longer decrypts: only its leaf (if that survived) goes up, with why.
    Lost {
        leaf: Option<portcullis_tlog::Hash>,
        reason: String,
    },
}

impl LocalDb {
    /// Appends `payloads` (record JSON, in order) in one transaction — one durable write for
    /// the lot — as leaves of the writer's Merkle log, and signs a checkpoint at the new size in
    /// the same transaction. Returns the sequence number of the last one.
    pub async fn append_records(&self, w: &LogWriter<'_>, payloads: &[&str], now: f64) -> Result<u64, LocalDbError> {
        // Several processes of one writer append concurrently: take SQLite's write lock before
        // reading the log's size, so no two records share a sequence number.
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db_err)?;
        let appended = async {
            let mut frontier = latest_frontier(&mut conn).await?;
            let last: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM records").fetch_one(&mut *conn).await.map_err(db_err)?;
            if last.unwrap_or(0) as u64 != frontier.size() {
                return Err(LocalDbError(format!(
                    "the local log holds {} records but its last checkpoint covers {}",
                    last.unwrap_or(0),
                    frontier.size()
                )));
            }
            let mut seq = frontier.size();
            let mut rows = Vec::with_capacity(payloads.len());
            for payload in payloads {
                seq += 1;
                let (leaf, head) = portcullis_tlog::leaf_of(w.writer_id, seq, payload.as_bytes())
                    .map_err(|e| LocalDbError(format!("record {seq}: {e}")))?;
                let ct = with_record_key(w.key, seq, |k| {
                    k.seal(&mut OsRng, payload.as_bytes(), &record_aad(w.writer_id, seq))
                })?;
                frontier.append(leaf).map_err(|e| LocalDbError(e.to_string()))?;
                rows.push((seq, head.kind, ct, leaf));
            }
            // One statement per 64 records (a whole append from the gateway): each statement is
            // a round trip to SQLite's worker thread.
            for chunk in rows.chunks(64) {
                let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let sql = format!("INSERT INTO records (seq, kind, created_at, payload, leaf) VALUES {values}");
                let mut insert = sqlx::query(&sql);
                for (seq, kind, ct, leaf) in chunk {
                    insert = insert.bind(*seq as i64).bind(kind).bind(now).bind(ct).bind(&leaf.0[..]);
                }
                insert.execute(&mut *conn).await.map_err(db_err)?;
            }
            insert_checkpoint(&mut conn, w, &frontier).await?;
            Ok::<u64, LocalDbError>(seq)
        }
        .await;
        let end = if appended.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut *conn).await.map_err(db_err);
        let seq = appended?;
        ended?;
        Ok(seq)
    }

    /// Records written before logs were Merkle logs get their leaves, and the log its first
    /// checkpoint. A record that no longer decrypts gets a leaf over its ciphertext (kind
    /// `lost`), so it is reported instead of stopping the log. Returns how many were upgraded.
    pub async fn upgrade_log(&self, w: &LogWriter<'_>) -> Result<u64, LocalDbError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db_err)?;
        let upgraded = async {
            let missing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE leaf IS NULL")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err)?;
            if missing == 0 {
                return Ok(0);
            }
            let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> =
                sqlx::query_as("SELECT seq, payload, leaf FROM records ORDER BY seq")
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_err)?;
            let mut frontier = portcullis_tlog::Frontier::new();
            for (seq, ct, leaf) in rows {
                let seq = seq as u64;
                if seq != frontier.size() + 1 {
                    return Err(LocalDbError(format!("the local log misses record {}", frontier.size() + 1)));
                }
                let leaf = match leaf.and_then(|l| <[u8; 32]>::try_from(l).ok()) {
                    Some(l) => portcullis_tlog::Hash(l),
                    None => {
                        let leaf = match open_record(w.key, w.writer_id, seq, &ct) {
                            Ok(json) => portcullis_tlog::leaf_of(w.writer_id, seq, json.as_bytes())
                                .map(|(l, _)| l)
                                .unwrap_or_else(|_| lost_leaf(w.writer_id, seq, &ct)),
                            Err(_) => lost_leaf(w.writer_id, seq, &ct),
                        };
                        sqlx::query("UPDATE records SET leaf = ? WHERE seq = ?")
                            .bind(&leaf.0[..])
                            .bind(seq as i64)
                            .execute(&mut *conn)
                            .await
                            .map_err(db_err)?;
                        leaf
                    }
                };
                frontier.append(leaf).map_err(|e| LocalDbError(e.to_string()))?;
            }
            sqlx::query("DELETE FROM log_checkpoints").execute(&mut *conn).await.map_err(db_err)?;
            insert_checkpoint(&mut conn, w, &frontier).await?;
            Ok::<u64, LocalDbError>(missing as u64)
        }
        .await;
        let end = if upgraded.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut *conn).await.map_err(db_err);
        let n = upgraded?;
        ended?;
        Ok(n)
    }

    /// The oldest records not yet acknowledged, up to `max_records` / `max_bytes` and cut at a
    /// checkpoint, with the writer's signed checkpoint at the last of them. A record that does
    /// not decrypt comes as its leaf alone ([`Pending::Lost`]). With nothing pending: no records
    /// and the newest checkpoint.
    ///
    /// `held`: plaintexts this process appended and still holds in memory — those records are
    /// not read back and decrypted (a bulk session's records would otherwise cost that twice).
    pub async fn pending_batch(
        &self,
        w: &LogWriter<'_>,
        max_records: i64,
        max_bytes: usize,
        mut held: std::collections::BTreeMap<u64, String>,
    ) -> Result<(Vec<(u64, Pending)>, Option<String>), LocalDbError> {
        // Sizes first (SQLite reads a blob's length without its pages), then only the records
        // the batch takes: a bulk session's records are large, and reading a few hundred of them
        // to upload a few dozen cost more than the upload.
        let sizes: Vec<(i64, i64)> =
            sqlx::query_as("SELECT seq, length(payload) FROM records WHERE uploaded_at IS NULL ORDER BY seq LIMIT ?")
                .bind(max_records)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        let Some(first) = sizes.first().map(|r| r.0) else {
            let note: Option<String> =
                sqlx::query_scalar("SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
            return Ok((Vec::new(), note));
        };
        let mut last = first;
        let mut bytes = 0;
        for (i, (seq, len)) in sizes.iter().enumerate() {
            bytes += (*len).max(64) as usize;
            if i > 0 && bytes > max_bytes {
                break;
            }
            last = *seq;
        }
        // Cut at the newest checkpoint inside the batch; without one (the batch ended inside one
        // append), at the first checkpoint after it — an append is at most a few dozen records.
        let inside: Option<(i64, String)> = sqlx::query_as(
            "SELECT size, note FROM log_checkpoints WHERE size >= ? AND size <= ? ORDER BY size DESC LIMIT 1",
        )
        .bind(first)
        .bind(last)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let (size, note) = match inside {
            Some(found) => found,
            None => {
                let after: Option<(i64, String)> =
                    sqlx::query_as("SELECT size, note FROM log_checkpoints WHERE size > ? ORDER BY size LIMIT 1")
                        .bind(last)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                after.ok_or_else(|| LocalDbError(format!("no checkpoint covers record {last} of the local log")))?
            }
        };
        let in_memory: Vec<u64> = held.range(first as u64..=size as u64).map(|(seq, _)| *seq).collect();
        let in_memory = serde_json::to_string(&in_memory).map_err(|e| LocalDbError(e.to_string()))?;
        let rows: Vec<StoredRecord> = sqlx::query_as(
            "SELECT seq, CASE WHEN seq IN (SELECT value FROM json_each(?3)) THEN NULL ELSE payload END, leaf \
             FROM records WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
        )
        .bind(first)
        .bind(size)
        .bind(in_memory)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let out = rows
            .into_iter()
            .map(|(seq, ct, leaf)| {
                let seq = seq as u64;
                let opened = match (held.remove(&seq), ct) {
                    (Some(plain), _) => Ok(plain),
                    (None, Some(ct)) => open_record(w.key, w.writer_id, seq, &ct),
                    (None, None) => Err(LocalDbError(format!("local record {seq} has no payload"))),
                };
                let pending = match opened {
                    Ok(plain) => Pending::Payload(plain),
                    Err(e) => Pending::Lost {
                        leaf: leaf.and_then(|l| <[u8; 32]>::try_from(l).ok()).map(portcullis_tlog::Hash),
                        reason: e.to_string(),
                    },
                };
                (seq, pending)
            })
            .collect();
        Ok((out, Some(note)))
    }

    /// The server stored everything through `seq` and countersigned the checkpoint there.
    pub async fn mark_uploaded_through(&self, seq: u64, cosigned: Option<&str>, now: f64) -> Result<(), LocalDbError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("UPDATE records SET uploaded_at = ? WHERE seq <= ? AND uploaded_at IS NULL")
            .bind(now)
            .bind(seq as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if let Some(note) = cosigned {
            sqlx::query("UPDATE log_checkpoints SET cosigned = ? WHERE size = ?")
                .bind(note)
                .bind(seq as i64)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// The server asked for everything from `seq` again (it was restored from a backup).
    pub async fn mark_pending_from(&self, seq: u64) -> Result<u64, LocalDbError> {
        let done = sqlx::query("UPDATE records SET uploaded_at = NULL WHERE seq >= ?")
            .bind(seq as i64)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// Keeps `note` (a checkpoint of `log`, verified by the caller) if it is the newest seen.
    pub async fn witness(&self, log: &str, size: u64, note: &str) -> Result<(), LocalDbError> {
        sqlx::query(
            "INSERT INTO witnessed (log, size, note) VALUES (?, ?, ?) \
             ON CONFLICT (log) DO UPDATE SET size = excluded.size, note = excluded.note WHERE excluded.size >= size",
        )
        .bind(log)
        .bind(size as i64)
        .bind(note)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn witnessed(&self, log: &str) -> Result<Option<String>, LocalDbError> {
        sqlx::query_scalar("SELECT note FROM witnessed WHERE log = ?")
            .bind(log)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    /// The newest checkpoint the server countersigned.
    pub async fn latest_cosigned(&self) -> Result<Option<String>, LocalDbError> {
        sqlx::query_scalar("SELECT cosigned FROM log_checkpoints WHERE cosigned IS NOT NULL ORDER BY size DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    /// How many records the log holds (its size).
    pub async fn log_size(&self) -> Result<u64, LocalDbError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM records").fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// How many records of `kind` the log holds (the kind is stored beside each record).
    pub async fn count_kind(&self, kind: &str) -> Result<u64, LocalDbError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE kind = ?")
            .bind(kind)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(n as u64)
    }

    pub async fn pending_count(&self) -> Result<u64, LocalDbError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(n as u64)
    }

    /// Sessions this log started and never ended (their writer stopped under them), in order.
    pub async fn open_sessions(&self, key: &SymmetricKey, writer_id: &str) -> Result<Vec<String>, LocalDbError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, payload FROM records WHERE kind IN ('session_start', 'session_end') ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut open: Vec<String> = Vec::new();
        let mut ended = std::collections::HashSet::new();
        for (seq, ct) in rows {
            // A record that no longer decrypts is reported when it is uploaded; here it is skipped.
            let Ok(json) = open_record(key, writer_id, seq as u64, &ct) else { continue };
            match serde_json::from_str(&json).map_err(|e| LocalDbError(format!("local record {seq}: {e}")))? {
                AuditPayload::SessionStart(s) => open.push(s.session_id),
                AuditPayload::SessionEnd(e) => {
                    ended.insert(e.session_id);
                }
                _ => {}
            }
        }
        open.retain(|id| !ended.contains(id));
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use portcullis_crypto::identity::SigningIdentity;

    fn record(n: usize) -> String {
        format!(
            r#"{{"kind":"stream_chunk","session_id":"s","stream":"stdin","offset":{n},"elapsed":0.0,"data":"{}"}}"#,
            "A".repeat(n * 100)
        )
    }

    /// An upload batch is what was appended, cut at a checkpoint within its byte budget; a
    /// record that no longer decrypts goes as its leaf — unless this process still holds its
    /// plaintext, which is then what goes up, and the damaged row is not read.
    #[tokio::test]
    async fn pending_batches_are_cut_at_checkpoints_and_use_held_plaintexts() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalDb::open(&dir.path().join("local.db")).await.unwrap();
        let key = SymmetricKey::generate(&mut OsRng);
        let signer = SigningIdentity::generate(&mut OsRng);
        let w = LogWriter { writer_id: "gw", key: &key, signer: &signer };
        let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&db.pool).await.unwrap();
        assert_eq!(page, 16 * 1024, "a new database has the larger pages");
        let records: Vec<String> = (1..=5).map(record).collect();
        // Two appends: records 1–2 (one checkpoint), then 3–5 (another).
        db.append_records(&w, &[&records[0], &records[1]], 1.0).await.unwrap();
        db.append_records(&w, &[&records[2], &records[3], &records[4]], 2.0).await.unwrap();

        let payloads = |batch: &[(u64, Pending)]| batch.iter().map(|(seq, _)| *seq).collect::<Vec<_>>();
        let (all, note) = db.pending_batch(&w, 200, 1 << 20, BTreeMap::new()).await.unwrap();
        assert!(note.is_some());
        assert_eq!(payloads(&all), [1, 2, 3, 4, 5]);
        for ((_, pending), sent) in all.iter().zip(&records) {
            assert_eq!(pending, &Pending::Payload(sent.clone()));
        }
        // A budget of one record: the batch still ends at a checkpoint (record 2).
        let (small, _) = db.pending_batch(&w, 200, 1, BTreeMap::new()).await.unwrap();
        assert_eq!(payloads(&small), [1, 2]);

        sqlx::query("UPDATE records SET payload = zeroblob(length(payload)) WHERE seq = 4")
            .execute(&db.pool)
            .await
            .unwrap();
        let (damaged, _) = db.pending_batch(&w, 200, 1 << 20, BTreeMap::new()).await.unwrap();
        assert!(matches!(&damaged[3].1, Pending::Lost { leaf: Some(_), .. }), "{:?}", damaged[3]);
        let held = BTreeMap::from([(4, records[3].clone()), (9, "not in this batch".to_string())]);
        let (from_memory, _) = db.pending_batch(&w, 200, 1 << 20, held).await.unwrap();
        assert_eq!(from_memory[3], (4, Pending::Payload(records[3].clone())));
        assert_eq!(payloads(&from_memory), [1, 2, 3, 4, 5]);
    }
}
