//! Audit records a writer (a gateway) appends to its local log and uploads. A session is a
//! `session_start`, any number of `session_chunk`s (asciicast v2 events of a terminal),
//! `stream_chunk`s (an exec session's stdin/stdout/stderr, in full up to a limit) and
//! `file_transfer`s, `file_operations` (every other sftp request, with the target's answer) and
//! a `session_end`.

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
    StreamChunk(StreamChunk),
    FileTransfer(FileTransfer),
    FileOperations(FileOperations),
    AccessRefused(AccessRefused),
}

impl AuditPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            AuditPayload::SessionStart(_) => "session_start",
            AuditPayload::SessionChunk(_) => "session_chunk",
            AuditPayload::SessionEnd(_) => "session_end",
            AuditPayload::HostKeyMismatch(_) => "host_key_mismatch",
            AuditPayload::StreamChunk(_) => "stream_chunk",
            AuditPayload::FileTransfer(_) => "file_transfer",
            AuditPayload::FileOperations(_) => "file_operations",
            AuditPayload::AccessRefused(_) => "access_refused",
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match self {
            AuditPayload::SessionStart(s) => Some(&s.session_id),
            AuditPayload::SessionChunk(s) => Some(&s.session_id),
            AuditPayload::SessionEnd(s) => Some(&s.session_id),
            AuditPayload::StreamChunk(s) => Some(&s.session_id),
            AuditPayload::FileTransfer(s) => Some(&s.session_id),
            AuditPayload::FileOperations(s) => Some(&s.session_id),
            AuditPayload::HostKeyMismatch(_) | AuditPayload::AccessRefused(_) => None,
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
    /// `None` for an interactive shell (or a subsystem).
    pub command: Option<String>,
    /// `shell`, `exec` or `subsystem:NAME` (e.g. `subsystem:sftp`). (Not `kind`: that names
    /// the record's type.)
    #[serde(default)]
    pub channel: String,
    /// The gateway that brokered it.
    #[serde(default)]
    pub gateway: String,
    /// The user's address as the gateway saw it.
    #[serde(default)]
    pub client_addr: String,
    /// Set when the target offers no AEAD cipher and the gateway fell back to the weaker
    /// transport it names (`aes256-ctr + hmac-sha2-256-etm@openssh.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_transport_fallback: Option<String>,
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
    /// Why it ended: `exit`, `grant_expired`, `disconnected`, `closed`, `error: ...`.
    pub reason: String,
    /// Exec sessions: what went through each stream, whether or not recorded in full.
    #[serde(default)]
    pub streams: Vec<StreamSummary>,
    /// How many records of this session the gateway wrote before this one (start included), so
    /// a verifier knows the session is complete; `None` when the gateway stopped under it.
    #[serde(default)]
    pub session_records: Option<u64>,
}

/// Why a session ended, as recorded (`SessionEnd::reason`) and shown to its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The command or shell exited (with a status).
    Exit,
    /// The grant ran out; the gateway closed the session.
    GrantExpired,
    /// The connection went away before the session ended.
    Disconnected,
    /// The user closed the channel (a closed terminal tab).
    Closed,
    /// The gateway could not record, so it stopped the session.
    RecordingFailed,
    /// The grant was revoked (or its user disabled, device revoked, requester role removed).
    Revoked,
    /// An exec session sent more input than is recorded in full; the gateway stopped it.
    InputCap,
    /// A transfer protocol's stream broke its rules (an sftp packet the gateway cannot
    /// follow): what it was is the session's last `file_operations` entry.
    ProtocolViolation,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::GrantExpired => "grant_expired",
            EndReason::Disconnected => "disconnected",
            EndReason::Closed => "closed",
            EndReason::RecordingFailed => "error: recording failed",
            EndReason::Revoked => "revoked",
            EndReason::InputCap => "input_cap",
            EndReason::ProtocolViolation => "protocol_violation",
        }
    }
}

/// One stream of an exec session as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// `stdin`, `stdout` or `stderr`.
    pub stream: String,
    pub bytes: u64,
    /// SHA-256 of every byte of the stream, hex.
    pub sha256: String,
    /// How many of those bytes are in the recording (`stream_chunk`s); the rest only counted.
    pub recorded_bytes: u64,
}

/// Bytes of an exec session's stream, from `offset`, base64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamChunk {
    pub session_id: String,
    pub stream: String,
    pub offset: u64,
    /// Seconds since the session started, when these bytes went through.
    pub elapsed: f64,
    pub data: String,
}

/// A file copied through a session (scp in either mode, sftp).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileTransfer {
    pub session_id: String,
    /// `sftp` or `scp`.
    pub protocol: String,
    pub path: String,
    /// `upload` (to the target) or `download` (from it).
    pub direction: String,
    pub size: u64,
    /// SHA-256 of the file's bytes in order; empty when the transfer was not sequential (an
    /// sftp client reading or writing out of order), so no whole-file hash exists.
    pub sha256: String,
    /// False when the session ended before the file was closed.
    pub complete: bool,
    pub at: f64,
}

/// sftp requests other than reading and writing an open file's bytes (those are
/// [`FileTransfer`]s), in the order the client sent them, each with the target's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileOperations {
    pub session_id: String,
    /// `sftp`.
    pub protocol: String,
    pub operations: Vec<FileOperation>,
}

/// One request: what was asked (`open`, `stat`, `setstat`, `rename`, `remove`, `mkdir`,
/// `rmdir`, `symlink`, `hardlink`, `copy-data`, ...) on which path(s), and what the target
/// answered. Paths are as sent: valid UTF-8 as is, other bytes as `\xNN` (and `\` as `\\`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileOperation {
    /// Unix seconds with fractions, when the request went through.
    pub at: f64,
    pub request_id: u32,
    pub op: String,
    pub path: String,
    /// The second path of a rename, link or copy (where it goes / what a link points at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// How a file was opened (`read`, `write`, `append`, `create`, `truncate`, `exclusive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// Attributes the request set (mode, owner, times, size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<FileAttrs>,
    /// `ok`, the target's error (`no such file`, `permission denied`, `failure: <message>`),
    /// `unanswered` (the session ended first) or, for the request that ended the session,
    /// `refused: <why>`.
    pub status: String,
    /// What the answer said besides its status (a resolved path, a link's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// sftp file attributes as a request set them; absent fields were not set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Permission bits and file type, as the protocol carries them (e.g. `0o104755`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u32>,
    /// Names of extended attributes set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended: Vec<String>,
}

impl FileAttrs {
    pub fn is_empty(&self) -> bool {
        *self == FileAttrs::default()
    }
}

/// Something the gateway refused: a certificate, a forwarding or agent channel, a target it
/// could not reach. Raised as a security event on the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessRefused {
    /// `certificate`, `forwarding`, `agent`, `x11`, `target_unreachable`, ...
    pub what: String,
    pub user: Option<String>,
    pub target: Option<String>,
    pub message: String,
    pub client_addr: String,
    pub at: f64,
    /// Refusals before authentication are recorded in aggregate: the 1st, 8th, 16th… from one
    /// source within the hour, with how many there were (`None`: a single refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
}

/// Someone else's text as it may go into a record: at most `max` characters, control
/// characters escaped, and the length said when cut.
pub fn bounded_text(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", crate::printable(&text[..cut]), text.len()),
        None => crate::printable(text),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostKeyMismatch {
    pub target: String,
    pub host: String,
    pub port: u16,
    pub expected_fingerprint: String,
    pub presented_fingerprint: String,
    pub at: f64,
    /// Whose session was refused because of it.
    #[serde(default)]
    pub user: Option<String>,
}

/// One record as uploaded: the exact payload JSON the writer stored (its leaf commits to the
/// payload's SHA-256). A record the writer can no longer read (corrupt in its database) is sent
/// as its leaf hash alone, so the log stays whole and the records after it still sync.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadRecord {
    pub seq: u64,
    /// The record's plaintext (JSON), sent as JSON in place rather than as a string of JSON:
    /// neither side escapes or unescapes a bulk session's chunks. A string (older gateways)
    /// is taken too.
    #[serde(default, with = "inline_json")]
    pub payload: Option<String>,
    /// Base64 leaf hash; only for a record whose payload is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_leaf: Option<String>,
    /// Why the payload is lost (what the writer's database said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_reason: Option<String>,
}

/// `POST /v1/gateway/records`: records in order, and the writer's signed checkpoint of its log
/// at the last of them (or at its current size when there are none).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadBatch {
    pub records: Vec<UploadRecord>,
    /// C2SP checkpoint in a signed note, signed by the writer.
    pub checkpoint: String,
    /// The newest checkpoint the server countersigned for this writer, as the writer kept it:
    /// lets a server restored from an older backup notice and ask for the records again.
    #[serde(default)]
    pub acknowledged: Option<String>,
    /// The newest checkpoint of the server's own log this writer saw: a server whose own log
    /// was cut back (or restored) is noticed by its gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_witnessed: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadAck {
    /// Every record of this writer up to and including this sequence number is stored.
    pub stored_through: u64,
    /// How many of the batch were already stored (idempotent re-upload).
    pub duplicates: u64,
    /// The writer's checkpoint at `stored_through`, countersigned by the server.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// The server holds less than the writer sent after (a restored backup, a lost batch):
    /// send again from this sequence number.
    #[serde(default)]
    pub resend_from: Option<u64>,
    /// The newest checkpoint of the server's own log (signed by the server), for the writer to
    /// keep as a witness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_checkpoint: Option<String>,
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
    /// The gateway (or, for sessions recorded before gateways, the device) that recorded it.
    #[serde(default)]
    pub recorded_by: String,
    #[serde(default)]
    pub kind: String,
    /// Where its recording stands (`None` from servers before audit logs).
    #[serde(default)]
    pub verification: Option<RecordingState>,
}

/// `GET /v1/audit/sessions/{id}`: a session's summary, commands and file transfers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionDetail {
    pub summary: SessionSummary,
    /// Exec: the command. Terminal: the lines typed (as keystrokes, control keys shown escaped).
    pub commands: Vec<String>,
    pub transfers: Vec<FileTransfer>,
    /// sftp requests besides file bytes (older servers: none).
    #[serde(default)]
    pub operations: Vec<FileOperation>,
    pub streams: Vec<StreamSummary>,
    pub client_addr: String,
    /// The weaker transport the gateway fell back to with the target (no AEAD cipher there).
    #[serde(default)]
    pub target_transport_fallback: Option<String>,
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

/// `GET /v1/audit/events?...`: filters and paging, applied by the server. Newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventQuery {
    /// One kind, or several separated by commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The user who acted (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The gateway that reported it (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Unix seconds, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Only events older than this id (the next page after a page ending at it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// At most this many (default 100, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

pub const MAX_EVENTS_PAGE: u32 = 500;

/// `GET /v1/audit/verify`, `portcullis server verify --data`: what was checked end to end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditVerifyReport {
    pub writers: Vec<WriterReport>,
    /// Records checked, all writers.
    pub records: u64,
    /// The first problem of each writer whose log does not verify (empty: everything verified).
    pub problems: Vec<AuditProblem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriterReport {
    pub writer_id: String,
    pub name: String,
    pub records: u64,
    /// Records whose payload the writer could no longer read (their leaves still count).
    pub lost: u64,
    /// The newest signed checkpoint's size (`None`: none yet).
    pub checkpoint_size: Option<u64>,
    /// Base64 root of the records checked.
    pub root: String,
    pub countersigned: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditProblem {
    pub writer_id: String,
    pub writer_name: String,
    /// The first bad record (sequence number), when one can be named.
    pub index: Option<u64>,
    pub message: String,
}

/// A session's verification state as the auditor's view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
pub enum RecordingState {
    /// Every record is in the server's store under a countersigned checkpoint.
    Verified,
    /// The gateway has records of it the server has not received yet (still running, or the
    /// gateway is catching up).
    PendingUpload,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn someone_elses_text_is_cut_and_escaped() {
        let long = "x".repeat(300);
        let cases: &[(&str, usize, &str)] = &[
            ("web", 128, "web"),
            ("a\u{1b}[2Jb", 128, "a\\u{1b}[2Jb"),
            ("line\nbreak", 128, "line\\nbreak"),
            ("ééé", 2, "éé… (6 bytes in all)"),
            (&long, 3, "xxx… (300 bytes in all)"),
            ("", 8, ""),
        ];
        for (text, max, want) in cases {
            assert_eq!(bounded_text(text, *max), *want, "{text:?}");
        }
    }

    /// Every record kind survives the trip through JSON (its field names must not collide with
    /// the `kind` tag).
    #[test]
    fn every_payload_round_trips() {
        let start = SessionStart {
            session_id: "s".into(),
            user: "u".into(),
            device_id: "d".into(),
            target: "t".into(),
            login: "root".into(),
            grant_id: "g".into(),
            started_at: 1.5,
            width: 80,
            height: 24,
            term: "xterm".into(),
            command: Some("ls".into()),
            channel: "exec".into(),
            gateway: "embedded".into(),
            client_addr: "127.0.0.1:5".into(),
            target_transport_fallback: Some("aes256-ctr".into()),
        };
        let payloads = vec![
            AuditPayload::SessionStart(start),
            AuditPayload::SessionChunk(SessionChunk {
                session_id: "s".into(),
                events: vec![(0.1, "o".into(), "x".into())],
            }),
            AuditPayload::SessionEnd(SessionEnd {
                session_id: "s".into(),
                ended_at: 2.0,
                exit_status: Some(0),
                bytes_in: 1,
                bytes_out: 2,
                reason: "exit".into(),
                streams: vec![StreamSummary {
                    stream: "stdin".into(),
                    bytes: 1,
                    sha256: "ab".into(),
                    recorded_bytes: 1,
                }],
                session_records: Some(3),
            }),
            AuditPayload::HostKeyMismatch(HostKeyMismatch {
                target: "t".into(),
                host: "h".into(),
                port: 22,
                expected_fingerprint: "a".into(),
                presented_fingerprint: "b".into(),
                at: 1.0,
                user: Some("u".into()),
            }),
            AuditPayload::StreamChunk(StreamChunk {
                session_id: "s".into(),
                stream: "stdin".into(),
                offset: 0,
                elapsed: 0.5,
                data: "eA==".into(),
            }),
            AuditPayload::FileTransfer(FileTransfer {
                session_id: "s".into(),
                protocol: "sftp".into(),
                path: "/tmp/x".into(),
                direction: "upload".into(),
                size: 3,
                sha256: "cd".into(),
                complete: true,
                at: 1.0,
            }),
            AuditPayload::FileOperations(FileOperations {
                session_id: "s".into(),
                protocol: "sftp".into(),
                operations: vec![FileOperation {
                    at: 1.0,
                    request_id: 4,
                    op: "setstat".into(),
                    path: "/x".into(),
                    to: None,
                    flags: None,
                    attrs: Some(FileAttrs { mode: Some(0o4755), uid: Some(0), gid: Some(0), ..Default::default() }),
                    status: "ok".into(),
                    detail: None,
                }],
            }),
            AuditPayload::AccessRefused(AccessRefused {
                what: "forwarding".into(),
                user: None,
                target: Some("t".into()),
                message: "m".into(),
                client_addr: String::new(),
                at: 1.0,
                attempts: None,
            }),
        ];
        for payload in payloads {
            let json = serde_json::to_string(&payload).unwrap();
            let back: AuditPayload = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, payload);
            assert!(json.contains(&format!("\"kind\":\"{}\"", payload.kind())));
        }
    }
}

/// [`UploadRecord::payload`] on the wire: the JSON text itself, byte for byte (its leaf hashes
/// those bytes), or — from older writers, or a text that is not JSON — a JSON string of it.
mod inline_json {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(payload: &Option<String>, out: S) -> Result<S::Ok, S::Error> {
        match payload {
            None => out.serialize_none(),
            Some(text) => match serde_json::from_str::<&RawValue>(text) {
                // Only an object inline, and only when it is the whole text (the leaf hashes
                // every byte): a string or number would read back as a string's text.
                Ok(raw) if text.starts_with('{') && raw.get().len() == text.len() => out.serialize_some(raw),
                _ => out.serialize_some(text),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<String>, D::Error> {
        let Some(raw) = Option::<Box<RawValue>>::deserialize(input)? else { return Ok(None) };
        let text = raw.get();
        if text.starts_with('"') {
            serde_json::from_str::<String>(text).map(Some).map_err(serde::de::Error::custom)
        } else {
            Ok(Some(text.to_string()))
        }
    }

    #[cfg(test)]
    mod tests {
        use crate::UploadRecord;

        fn round_trip(payload: Option<&str>) -> (String, Option<String>) {
            let record =
                UploadRecord { seq: 1, payload: payload.map(str::to_string), lost_leaf: None, lost_reason: None };
            let wire = serde_json::to_string(&record).unwrap();
            let back: UploadRecord = serde_json::from_str(&wire).unwrap();
            (wire, back.payload)
        }

        #[test]
        fn payloads_travel_inline_byte_for_byte_and_old_strings_are_read() {
            let spaced = "{ \"kind\" :\"stream_chunk\",\n\"data\":\"q\\u00e9\" }";
            for (payload, inline) in [
                (Some(r#"{"kind":"session_end","reason":"a \"quoted\" reason"}"#), true),
                (Some(spaced), true),
                (Some("not json at all"), false),
                (Some(r#""a string""#), false),
                (Some("{ truncated"), false),
                (Some("{\"kind\":\"x\"} \n"), false),
                (None, false),
            ] {
                let (wire, back) = round_trip(payload);
                assert_eq!(back.as_deref(), payload, "{wire}");
                assert_eq!(wire.contains(&format!("\"payload\":{}", payload.unwrap_or("-"))), inline, "{wire}");
            }
            // What an older gateway sends: the payload as a string of JSON.
            let old = r#"{"seq":3,"payload":"{\"kind\":\"session_start\"}"}"#;
            let back: UploadRecord = serde_json::from_str(old).unwrap();
            assert_eq!(back.payload.as_deref(), Some(r#"{"kind":"session_start"}"#));
        }
    }
}
