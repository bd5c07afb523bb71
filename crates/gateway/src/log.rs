//! The gateway's record log: its own encrypted local database (SQLite; every record AES-256-GCM
//! under the gateway's local key, bound to its writer and sequence number), and the sync that
//! uploads it to the control server continuously: idempotent by (writer, sequence), in order,
//! resumable after any outage or crash.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_client::ClientError;
use portcullis_client::localdb::LocalDb;
use portcullis_crypto::{SecretBytes, SymmetricKey};
use portcullis_proto::{AuditPayload, GatewayHeartbeat, UploadBatch, UploadRecord};
use tokio::sync::Notify;

use crate::control::{ControlError, ControlPlane};
use crate::recorder::RecordSink;

pub struct RecordLog {
    db: LocalDb,
    key: SymmetricKey,
    writer_id: String,
    appended: Notify,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub uploaded: u64,
    pub duplicates: u64,
    pub pending: u64,
}

impl RecordLog {
    /// Opens the log at gateway start; sessions a previous run left open (it was killed) are
    /// ended here, before any new one starts.
    pub async fn open(path: &Path, key: SymmetricKey, writer_id: &str) -> Result<Self, String> {
        let db = LocalDb::open(path).await.map_err(|e| e.to_string())?;
        let log = Self { db, key, writer_id: writer_id.to_string(), appended: Notify::new() };
        let closed = log.close_interrupted_sessions().await?;
        if closed > 0 {
            tracing::warn!(sessions = closed, "sessions cut off when the gateway last stopped are marked ended");
        }
        Ok(log)
    }

    /// Keeps one of the gateway's own secrets (a gateway process keeps its keys here).
    pub async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), ClientError> {
        self.db.put_secret(&self.key, name, value).await
    }

    pub async fn secret(&self, name: &str) -> Result<SecretBytes, ClientError> {
        self.db.secret(&self.key, name).await
    }

    /// Appends a record (encrypted, durable before this returns); returns its sequence number.
    pub async fn append(&self, payload: &AuditPayload) -> Result<u64, String> {
        self.append_all(std::slice::from_ref(payload)).await
    }

    /// Appends records in one transaction (one durable write); the last sequence number.
    pub async fn append_all(&self, payloads: &[AuditPayload]) -> Result<u64, String> {
        let jsons =
            payloads.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let records: Vec<(&str, &str)> = payloads.iter().zip(&jsons).map(|(p, j)| (p.kind(), j.as_str())).collect();
        let seq = self
            .db
            .append_records(&self.key, &self.writer_id, &records, crate::now_f64())
            .await
            .map_err(|e| e.to_string())?;
        self.appended.notify_one();
        Ok(seq)
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
                })
            })
            .collect();
        if !ends.is_empty() {
            self.append_all(&ends).await?;
        }
        Ok(ends.len())
    }

    pub async fn pending(&self) -> Result<u64, String> {
        self.db.pending_count().await.map_err(|e| e.to_string())
    }

    /// Uploads every record the server has not acknowledged, in order, in batches.
    pub async fn sync_once(&self, control: &ControlPlane) -> Result<SyncReport, ControlError> {
        let local = |e: ClientError| ControlError::Failed(format!("record log: {e}"));
        let mut report = SyncReport::default();
        loop {
            let batch = self.db.pending_batch(&self.key, &self.writer_id, 200, 4 * 1024 * 1024).await.map_err(local)?;
            let Some(last) = batch.last().map(|(seq, _)| *seq) else { break };
            let records: Vec<_> = batch.into_iter().map(|(seq, payload)| UploadRecord { seq, payload }).collect();
            let count = records.len() as u64;
            let ack = control.upload(&UploadBatch { records }).await?;
            if ack.stored_through < last {
                return Err(ControlError::Failed(format!(
                    "the server acknowledged records through {} of {last}",
                    ack.stored_through
                )));
            }
            self.db.mark_uploaded_through(ack.stored_through, crate::now_f64()).await.map_err(local)?;
            report.duplicates += ack.duplicates;
            report.uploaded += count - ack.duplicates.min(count);
        }
        report.pending = self.db.pending_count().await.map_err(local)?;
        Ok(report)
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
pub async fn sync_forever(log: Arc<RecordLog>, control: Arc<ControlPlane>, address: String, host_key: String) {
    let mut backoff = Duration::from_secs(1);
    let mut last_beat = None::<tokio::time::Instant>;
    loop {
        let synced = log.sync_once(&control).await;
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
