//! The offline evidence of one session (`portcullis audit export SESSION --bundle FILE`),
//! checked with no server (`portcullis audit verify --bundle FILE`).
//!
//! Format `portcullis-audit-bundle/1`, one JSON object:
//!
//! ```text
//! format           "portcullis-audit-bundle/1"
//! session_id       the session
//! writer           { id, name, public_key }   the gateway that recorded it; Ed25519, base64
//! server_key       the control server's Ed25519 public key, base64
//! checkpoint       a C2SP checkpoint of the writer's log (origin portcullis.audit/<writer id>)
//!                  in a signed note: the writer's signature and the server's countersignature
//! records          [{ seq, payload, proof }]: every record of the session in log order; payload
//!                  is the exact JSON the gateway wrote, proof the RFC 6962 inclusion proof
//!                  (base64 hashes) of its leaf in the checkpoint's tree
//! ```
//!
//! A leaf is [`crate::leaf_hash`] of (writer id, seq, the payload's `kind`, its `session_id`,
//! SHA-256 of the payload). The session is complete when it opens with `session_start`, closes
//! with `session_end`, and the end counts the session's records before it (`session_records`).

use serde::{Deserialize, Serialize};

use crate::{Checkpoint, TlogError, check_inclusion, leaf_of, parse_hash_b64, verify_checkpoint};

pub const FORMAT: &str = "portcullis-audit-bundle/1";
/// Bundles larger than this are refused before parsing.
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleWriter {
    pub id: String,
    pub name: String,
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleRecord {
    pub seq: u64,
    pub payload: String,
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub session_id: String,
    pub writer: BundleWriter,
    pub server_key: String,
    pub checkpoint: String,
    pub records: Vec<BundleRecord>,
}

/// What a bundle proved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleReport {
    pub session_id: String,
    pub writer_id: String,
    pub writer_name: String,
    pub records: usize,
    pub log_size: u64,
    pub root: String,
    /// SHA-256 of the writer's and the server's public keys, hex: compare with `audit verify`.
    pub writer_fingerprint: String,
    pub server_fingerprint: String,
    /// `None`: complete (start to end, every record counted); otherwise why completeness is not
    /// attested (e.g. the gateway stopped under the session, so its end counts nothing).
    pub incomplete: Option<String>,
}

pub fn key_fingerprint(public_key: &[u8]) -> String {
    portcullis_crypto::sha256_hex(public_key)[..32].to_string()
}

fn public_key(b64: &str, whose: &str) -> Result<[u8; 32], TlogError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| TlogError::MalformedCheckpoint(format!("the {whose} public key is not a base64 Ed25519 key")))
}

/// Parses and verifies a bundle. `server_key`: the server key the auditor trusts (base64); when
/// given, the bundle's must be it.
pub fn verify_bundle(bytes: &[u8], server_key: Option<&str>) -> Result<BundleReport, TlogError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(TlogError::MalformedRecord(format!("a bundle is at most {MAX_BUNDLE_BYTES} bytes")));
    }
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| TlogError::MalformedRecord(format!("not a bundle: {e}")))?;
    if bundle.format != FORMAT {
        return Err(TlogError::MalformedRecord(format!("unknown bundle format {:?}", bundle.format)));
    }
    if let Some(trusted) = server_key
        && trusted.trim() != bundle.server_key
    {
        return Err(TlogError::NotCountersigned);
    }
    let writer_key = public_key(&bundle.writer.public_key, "writer's")?;
    let server = public_key(&bundle.server_key, "server's")?;
    let Checkpoint { size, root, countersigned } =
        verify_checkpoint(&bundle.checkpoint, &bundle.writer.id, &writer_key, Some(&server))?;
    if !countersigned {
        return Err(TlogError::NotCountersigned);
    }
    let mut last_seq = 0;
    for record in &bundle.records {
        if record.seq <= last_seq {
            return Err(TlogError::BadProof(format!("record {} is out of order", record.seq)));
        }
        last_seq = record.seq;
        if record.seq == 0 || record.seq > size {
            return Err(TlogError::BadProof(format!("record {} is not in a log of {size} records", record.seq)));
        }
        let (leaf, head) = leaf_of(&bundle.writer.id, record.seq, record.payload.as_bytes())
            .map_err(|e| TlogError::BadProof(format!("record {}: {e}", record.seq)))?;
        if head.session_id.as_deref() != Some(bundle.session_id.as_str()) {
            return Err(TlogError::BadProof(format!("record {} belongs to another session", record.seq)));
        }
        let proof = record.proof.iter().map(|h| parse_hash_b64(h)).collect::<Result<Vec<_>, _>>()?;
        check_inclusion(&proof, record.seq - 1, leaf, size, root).map_err(|_| {
            TlogError::BadProof(format!(
                "record {} does not match the writer's signed log (altered, or not the record at that place)",
                record.seq
            ))
        })?;
    }
    Ok(BundleReport {
        session_id: bundle.session_id.clone(),
        writer_id: bundle.writer.id.clone(),
        writer_name: bundle.writer.name.clone(),
        records: bundle.records.len(),
        log_size: size,
        root: crate::hash_b64(&root),
        writer_fingerprint: key_fingerprint(&writer_key),
        server_fingerprint: key_fingerprint(&server),
        incomplete: completeness(&bundle.records),
    })
}

fn completeness(records: &[BundleRecord]) -> Option<String> {
    let kind = |r: &BundleRecord| crate::record_head(r.payload.as_bytes()).map(|h| h.kind).unwrap_or_default();
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Some("the bundle holds no records".into());
    };
    if kind(first) != "session_start" {
        return Some("the session's start record is missing".into());
    }
    if kind(last) != "session_end" {
        return Some("the session has no end record (still running, or cut short)".into());
    }
    let counted = serde_json::from_str::<serde_json::Value>(&last.payload)
        .ok()
        .and_then(|v| v.get("session_records").and_then(|n| n.as_u64()));
    match counted {
        Some(n) if n as usize == records.len() - 1 => None,
        Some(n) => Some(format!("the end record counts {n} records before it, the bundle holds {}", records.len() - 1)),
        None => Some("the end record does not count the session's records (the gateway stopped under it)".into()),
    }
}
