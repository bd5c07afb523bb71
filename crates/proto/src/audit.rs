//! Audit records a device appends locally and uploads. A session is a `session_start`, any
//! number of `session_chunk`s (asciicast v2 events) and a `session_end`.

use serde::{Deserialize, Serialize};

/// One asciicast v2 event: seconds since start, code (`o` output, `i` input, `r` resize), data.
pub type CastEvent = (f64, String, String);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditPayload {
    SessionStart(SessionStart),
    SessionChunk(SessionChunk),
    SessionEnd(SessionEnd),
    HostKeyMismatch(HostKeyMismatch),
}

impl AuditPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            AuditPayload::SessionStart(_) => "session_start",
            AuditPayload::SessionChunk(_) => "session_chunk",
            AuditPayload::SessionEnd(_) => "session_end",
            AuditPayload::HostKeyMismatch(_) => "host_key_mismatch",
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match self {
            AuditPayload::SessionStart(s) => Some(&s.session_id),
            AuditPayload::SessionChunk(s) => Some(&s.session_id),
            AuditPayload::SessionEnd(s) => Some(&s.session_id),
            AuditPayload::HostKeyMismatch(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub session_id: String,
    pub user: String,
    pub device_id: String,
    pub target: String,
    pub login: String,
    pub grant_id: String,
    /// Unix seconds with fractions.
    pub started_at: f64,
    pub width: u16,
    pub height: u16,
    pub term: String,
    /// `None` for an interactive shell.
    pub command: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionChunk {
    pub session_id: String,
    pub events: Vec<CastEvent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session_id: String,
    pub ended_at: f64,
    pub exit_status: Option<u32>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why it ended: `exit`, `grant_expired`, `disconnected`, `error: ...`.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostKeyMismatch {
    pub target: String,
    pub host: String,
    pub port: u16,
    pub expected_fingerprint: String,
    pub presented_fingerprint: String,
    pub at: f64,
}

/// One record as uploaded: the exact payload JSON the device stored, so the server can check
/// an idempotent re-upload byte for byte.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadRecord {
    pub seq: u64,
    pub payload: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadBatch {
    pub records: Vec<UploadRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadAck {
    /// Every record of this device up to and including this sequence number is stored.
    pub stored_through: u64,
    /// How many of the batch were already stored (idempotent re-upload).
    pub duplicates: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub user: String,
    pub device_id: String,
    pub target: String,
    pub login: String,
    pub grant_id: String,
    pub command: Option<String>,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub exit_status: Option<u32>,
    pub end_reason: Option<String>,
}

/// A security event the server witnessed (enrolment, review, credential release, host-key
/// mismatch reported by a device, rejected upload, ...). Never contains a secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerEvent {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: serde_json::Value,
}
