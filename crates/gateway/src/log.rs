//! The gateway's record log: its own encrypted local database (SQLite; every record AES-256-GCM
//! under the gateway's local key, bound to its writer and sequence number), a Merkle log whose
//! every append is checkpointed and signed with the gateway's key, and the sync that uploads it
//! to the control server continuously: idempotent by (writer, sequence), in order, resumable
//! after any outage or crash; the server countersigns each checkpoint it verified.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::SymmetricKey;
use portcullis_crypto::identity::SigningIdentity;
use portcullis_localdb::LocalDb;
use portcullis_localdb::records::{LogWriter, Pending};
use portcullis_proto::{AuditPayload, GatewayHeartbeat, UploadBatch, UploadRecord};
use tokio::sync::Notify;

use crate::control::{ControlError, ControlPlane};
use crate::recorder::RecordSink;

pub struct RecordLog {
    db: LocalDb,
    key: SymmetricKey,
    writer_id: String,
    signer: SigningIdentity,
    /// The control server's key: its countersignatures on our checkpoints are checked with it.
    server_key: [u8; 32],
    appended: Notify,
    /// What this process appended and the server has not acknowledged yet, in memory up to
    /// [`HELD_BYTES`]: uploaded from here instead of read back and decrypted.
    held: std::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    records: BTreeMap<u64, String>,
    bytes: usize,
}

const HELD_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub uploaded: u64,
    pub duplicates: u64,
    pub pending: u64,
    /// Records sent again because the server asked (it was restored from an older backup).
    pub resent: u64,
}

/// Appends of more records than this are split into several transactions, each with its own
/// checkpoint, so an upload can always stop at a checkpoint.
const MAX_APPEND: usize = 64;

/// An upload batch: at most this many records, and about this many bytes.
const BATCH_RECORDS: i64 = 200;
const BATCH_BYTES: usize = 4 * 1024 * 1024;

impl RecordLog {
    /// Opens the log at gateway start: records from before Merkle logs get their leaves, and
    /// sessions a previous run left open (it was killed) are ended here, before any new one.
    pub async fn open(
        db: LocalDb,
        key: SymmetricKey,
        writer_id: &str,
        signer: SigningIdentity,
        server_key: [u8; 32],
    ) -> Result<Self, String> {
        let log = Self {
            db,
            key,
            writer_id: writer_id.to_string(),
            signer,
            server_key,
            appended: Notify::new(),
            held: Default::default(),
        };
        let upgraded = log.db.upgrade_log(&log.writer()).await.map_err(|e| e.to_string())?;
        if upgraded > 0 {
            tracing::info!(records = upgraded, "the record log is now a Merkle log");
        }
        let closed = log.close_interrupted_sessions().await?;
        if closed > 0 {
            tracing::warn!(sessions = closed, "sessions cut off when the gateway last stopped are marked ended");
        }
        Ok(log)
    }

    fn writer(&self) -> LogWriter<'_> {
        LogWriter { writer_id: &self.writer_id, key: &self.key, signer: &self.signer }
    }

    /// Appends a record (encrypted, durable before this returns); returns its sequence number.
    pub async fn append(&self, payload: &AuditPayload) -> Result<u64, String> {
        self.append_all(std::slice::from_ref(payload)).await
    }

    /// Appends records in one transaction (one durable write, one checkpoint) per
    /// [`MAX_APPEND`]; the last sequence number.
    pub async fn append_all(&self, payloads: &[AuditPayload]) -> Result<u64, String> {
        let jsons =
            payloads.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let mut seq = 0;
        let mut jsons = jsons.into_iter().peekable();
        while jsons.peek().is_some() {
            let chunk: Vec<String> = jsons.by_ref().take(MAX_APPEND).collect();
            let records: Vec<&str> = chunk.iter().map(String::as_str).collect();
            seq =
                self.db.append_records(&self.writer(), &records, crate::now_f64()).await.map_err(|e| e.to_string())?;
            self.hold(seq + 1 - chunk.len() as u64, chunk);
        }
        self.appended.notify_one();
        Ok(seq)
    }

    /// Keeps appended plaintexts (from sequence number `first` on) for the upload while there is room.
    fn hold(&self, first: u64, records: Vec<String>) {
        let Ok(mut held) = self.held.lock() else { return };
        for (seq, json) in (first..).zip(records) {
            if held.bytes + json.len() > HELD_BYTES {
                break;
            }
            held.bytes += json.len();
            held.records.insert(seq, json);
        }
    }

    /// The oldest held plaintexts, about as many as an upload batch takes.
    fn held_batch(&self) -> BTreeMap<u64, String> {
        let Ok(held) = self.held.lock() else { return BTreeMap::new() };
        let mut bytes = 0;
        held.records
            .iter()
            .take(BATCH_RECORDS as usize)
            .take_while(|(_, json)| {
                bytes += json.len();
                bytes <= BATCH_BYTES + json.len()
            })
            .map(|(seq, json)| (*seq, json.clone()))
            .collect()
    }

    /// The server has the records through `seq`: they need not be held any more.
    fn release_through(&self, seq: u64) {
        if let Ok(mut held) = self.held.lock() {
            let kept = held.records.split_off(&seq.saturating_add(1));
            let freed: usize = held.records.values().map(String::len).sum();
            held.records = kept;
            held.bytes -= freed;
        }
    }

    /// Sessions the log started but never ended (the gateway stopped under them): each gets
    /// its end now, so no recording stays open forever.
    pub async fn close_interrupted_sessions(&self) -> Result<usize, String> {
        let open = self.db.open_sessions(&self.key, &self.writer_id).await.map_err(|e| e.to_string())?;
        let ends: Vec<AuditPayload> = open
            .into_iter()
            .map(|session_id| {
                AuditPayload::SessionEnd(portcullis_proto::SessionEnd {
                    session_id,
                    ended_at: crate::now_f64(),
                    exit_status: None,
                    bytes_in: 0,
                    bytes_out: 0,
                    reason: "gateway stopped".into(),
                    streams: Vec::new(),
                    session_records: None,
                })
            })
            .collect();
        if !ends.is_empty() {
            self.append_all(&ends).await?;
        }
        Ok(ends.len())
    }

    /// How many sessions the log started.
    pub async fn started_sessions(&self) -> Result<u64, String> {
        self.db.count_kind("session_start").await.map_err(|e| e.to_string())
    }

    pub async fn pending(&self) -> Result<u64, String> {
        self.db.pending_count().await.map_err(|e| e.to_string())
    }

    /// How many records the log holds.
    pub async fn size(&self) -> Result<u64, String> {
        self.db.log_size().await.map_err(|e| e.to_string())
    }

    /// The newest checkpoint the server countersigned (the writer's proof of what it holds).
    pub async fn latest_cosigned(&self) -> Result<Option<String>, String> {
        self.db.latest_cosigned().await.map_err(|e| e.to_string())
    }

    /// Uploads every record the server has not acknowledged, in order, in batches that end at
    /// a checkpoint. With `announce`, tells the server the log's checkpoint even when nothing
    /// is pending (at start: a server restored from a backup, or a log restored from one, is
    /// noticed at once).
    pub async fn sync_once(&self, control: &dyn ControlPlane, announce: bool) -> Result<SyncReport, ControlError> {
        let local = |e: portcullis_localdb::LocalDbError| ControlError::Failed(format!("record log: {e}"));
        let mut report = SyncReport::default();
        let mut announce = announce;
        let mut resends = 0;
        loop {
            let held = self.held_batch();
            let (batch, note) =
                self.db.pending_batch(&self.writer(), BATCH_RECORDS, BATCH_BYTES, held).await.map_err(local)?;
            let Some(checkpoint) = note else { break };
            if batch.is_empty() && !announce {
                break;
            }
            announce = false;
            let last = batch.last().map(|(seq, _)| *seq);
            let records: Vec<UploadRecord> = batch.into_iter().map(|(seq, p)| upload_record(seq, p)).collect();
            let count = records.len() as u64;
            let acknowledged = self.db.latest_cosigned().await.map_err(local)?;
            let server_log = portcullis_tlog::server_log_id(&self.server_key);
            let server_witnessed = self.db.witnessed(&server_log).await.map_err(local)?;
            let ack = control.upload(&UploadBatch { records, checkpoint, acknowledged, server_witnessed }).await?;
            if let Some(note) = &ack.server_checkpoint
                && let Ok(cp) = portcullis_tlog::verify_checkpoint(note, &server_log, &self.server_key, None)
            {
                self.db.witness(&server_log, cp.size, note).await.map_err(local)?;
            }
            let cosigned = match &ack.checkpoint {
                Some(note) => Some(self.check_countersigned(note, ack.stored_through)?),
                None => None,
            };
            if let Some(from) = ack.resend_from {
                resends += 1;
                if resends > 3 {
                    return Err(ControlError::Failed(format!("the server keeps asking for records from {from}")));
                }
                tracing::warn!(from, "the control server asked for records again (was it restored from a backup?)");
                report.resent += self.db.mark_pending_from(from).await.map_err(local)?;
                announce = true;
                continue;
            }
            if let Some(last) = last
                && ack.stored_through < last
            {
                return Err(ControlError::Failed(format!(
                    "the server acknowledged records through {} of {last}",
                    ack.stored_through
                )));
            }
            self.db.mark_uploaded_through(ack.stored_through, cosigned, crate::now_f64()).await.map_err(local)?;
            self.release_through(ack.stored_through);
            report.duplicates += ack.duplicates;
            report.uploaded += count - ack.duplicates.min(count);
        }
        report.pending = self.db.pending_count().await.map_err(local)?;
        Ok(report)
    }

    /// The server's acknowledgement must be our own checkpoint, countersigned by the server we
    /// enrolled with, at the size it says it stored.
    fn check_countersigned<'a>(&self, note: &'a str, size: u64) -> Result<&'a str, ControlError> {
        match portcullis_tlog::verify_checkpoint(
            note,
            &self.writer_id,
            &self.signer.public_key(),
            Some(&self.server_key),
        ) {
            Ok(cp) if cp.countersigned && cp.size == size => Ok(note),
            Ok(_) => Err(ControlError::Failed(format!(
                "the server's acknowledgement of record {size} is not countersigned by the server's key"
            ))),
            Err(e) => Err(ControlError::Failed(format!("the server's acknowledgement does not verify: {e}"))),
        }
    }
}

fn upload_record(seq: u64, pending: Pending) -> UploadRecord {
    match pending {
        Pending::Payload(payload) => UploadRecord { seq, payload: Some(payload), lost_leaf: None, lost_reason: None },
        Pending::Lost { leaf, reason } => UploadRecord {
            seq,
            payload: None,
            lost_leaf: leaf.map(|l| portcullis_tlog::hash_b64(&l)),
            lost_reason: Some(reason),
        },
    }
}

impl RecordSink for Arc<RecordLog> {
    async fn append_all(&self, payloads: Vec<AuditPayload>) -> Result<(), String> {
        RecordLog::append_all(self, &payloads).await.map(|_| ())
    }
}

/// Uploads new records within moments of their writing (and retries with backoff while the
/// control server is away), and tells the server where the gateway listens and how far behind
/// it is, every few seconds.
pub async fn sync_forever(log: Arc<RecordLog>, control: Arc<dyn ControlPlane>, address: String, host_key: String) {
    let mut backoff = Duration::from_secs(1);
    let mut last_beat = None::<tokio::time::Instant>;
    let mut announced = false;
    loop {
        // Tell the server the log's checkpoint at start and with every heartbeat, even with
        // nothing to send: a server restored from a backup learns at once what it is missing.
        let announce = !announced || last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        let synced = log.sync_once(control.as_ref(), announce).await;
        if synced.is_ok() {
            announced = true;
        }
        match &synced {
            Ok(_) => backoff = Duration::from_secs(1),
            Err(e) => tracing::warn!(error = %e, "record upload failed; retrying"),
        }
        if last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) || synced.is_err() {
            let backlog = log.pending().await.unwrap_or(0);
            let beat = GatewayHeartbeat { address: address.clone(), host_key: host_key.clone(), backlog };
            if control.heartbeat(&beat).await.is_ok() {
                last_beat = Some(tokio::time::Instant::now());
            }
        }
        if synced.is_err() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        } else {
            let _ = tokio::time::timeout(Duration::from_secs(5), log.appended.notified()).await;
            // Let a burst of appends land before uploading them together.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
