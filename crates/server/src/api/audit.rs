//! Audit records uploaded by gateways, and the auditor's view of sessions.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use base64::Engine;
use portcullis_crypto::OsRng;
use portcullis_proto::{
    AuditPayload, Role, ServerEvent, SessionDetail, SessionSummary, StreamSummary, UploadAck, UploadBatch,
};

use super::{ApiResult, AppState};
use crate::auth::Caller;
use crate::store::{SessionRow, Store, record_aad};
use crate::{ServerError, ServerState};

pub const MAX_BATCH_RECORDS: usize = 1000;

/// Stores a batch of a gateway's records. Sequence numbers must continue the writer's log
/// without gaps; a record already stored is accepted again only if it is byte-for-byte the
/// same (idempotent retry). A gap or a rewrite rejects the whole batch and raises an alarm.
pub async fn ingest_records(
    state: &ServerState,
    writer_id: &str,
    batch: &UploadBatch,
) -> Result<UploadAck, ServerError> {
    if batch.records.len() > MAX_BATCH_RECORDS {
        return Err(ServerError::BadRequest(format!("at most {MAX_BATCH_RECORDS} records per upload")));
    }
    let gateway =
        state.db.gateway(writer_id).await?.ok_or_else(|| ServerError::Unauthorized("unknown gateway".into()))?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let mut stored = Store::stored_through(&mut tx, writer_id).await?;
    let mut duplicates = 0;
    let mut alarm = None;
    for record in &batch.records {
        let hash = portcullis_crypto::sha256_hex(record.payload.as_bytes());
        if record.seq == 0 {
            return Err(ServerError::BadRequest("sequence numbers start at 1".into()));
        }
        if record.seq <= stored {
            match Store::record_hash(&mut tx, writer_id, record.seq).await? {
                Some(existing) if existing == hash => {
                    duplicates += 1;
                    continue;
                }
                _ => {
                    alarm =
                        Some(("audit_rewrite", format!("record {} differs from the one already stored", record.seq)));
                    break;
                }
            }
        }
        if record.seq != stored + 1 {
            alarm = Some(("audit_gap", format!("expected record {} next, got {}", stored + 1, record.seq)));
            break;
        }
        let payload: AuditPayload = serde_json::from_str(&record.payload)
            .map_err(|e| ServerError::BadRequest(format!("record {} is malformed: {e}", record.seq)))?;
        index_payload(&mut tx, writer_id, &gateway.name, &payload).await?;
        let ct = state.root_key.seal(&mut OsRng, record.payload.as_bytes(), &record_aad(writer_id, record.seq))?;
        Store::insert_record(&mut tx, writer_id, record.seq, payload.kind(), payload.session_id(), &hash, &ct, now)
            .await?;
        stored = record.seq;
    }
    if let Some((kind, message)) = alarm {
        drop(tx);
        let mut tx = state.db.begin().await?;
        Store::record_event(
            &mut tx,
            now,
            None,
            None,
            kind,
            serde_json::json!({ "gateway": gateway.name, "message": message }),
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(gateway = %gateway.name, %kind, %message, "audit upload rejected");
        return Err(ServerError::Refused(kind, format!("audit upload rejected: {message}")));
    }
    tx.commit().await?;
    Ok(UploadAck { stored_through: stored, duplicates })
}

async fn index_payload(
    tx: &mut crate::store::Tx<'_>,
    writer_id: &str,
    gateway: &str,
    payload: &AuditPayload,
) -> Result<(), ServerError> {
    let event = |kind: &'static str, value: serde_json::Value| (kind, value);
    let raised = match payload {
        AuditPayload::SessionStart(s) => {
            let row = SessionRow {
                id: s.session_id.clone(),
                writer_id: writer_id.to_string(),
                user_name: s.user.clone(),
                target: s.target.clone(),
                login: s.login.clone(),
                grant_id: s.grant_id.clone(),
                command: s.command.clone(),
                started_at: s.started_at,
                ended_at: None,
                exit_status: None,
                end_reason: None,
                kind: if s.channel.is_empty() { "shell".into() } else { s.channel.clone() },
            };
            Store::insert_session(tx, &row)
                .await
                .map_err(|_| ServerError::Conflict(format!("session {} already exists", s.session_id)))?;
            None
        }
        AuditPayload::SessionEnd(e) => {
            if !Store::end_session(tx, &e.session_id, writer_id, e.ended_at, e.exit_status, &e.reason).await? {
                return Err(ServerError::BadRequest(format!(
                    "session {} was not started or already ended",
                    e.session_id
                )));
            }
            None
        }
        AuditPayload::SessionChunk(_) | AuditPayload::StreamChunk(_) => None,
        AuditPayload::FileTransfer(t) => Some(event(
            "file_transfer",
            serde_json::json!({ "session": t.session_id, "protocol": t.protocol, "path": t.path,
                "direction": t.direction, "size": t.size, "sha256": t.sha256, "gateway": gateway }),
        )),
        AuditPayload::HostKeyMismatch(m) => Some(event("host_key_mismatch", {
            let mut v = serde_json::to_value(m).map_err(|e| ServerError::Internal(e.to_string()))?;
            v["gateway"] = gateway.into();
            v
        })),
        AuditPayload::AccessRefused(r) => {
            Some(event(if r.what == "target_unreachable" { "target_unreachable" } else { "gateway_refused" }, {
                let mut v = serde_json::to_value(r).map_err(|e| ServerError::Internal(e.to_string()))?;
                v["gateway"] = gateway.into();
                v
            }))
        }
    };
    if let Some((kind, detail)) = raised {
        let at = match payload {
            AuditPayload::FileTransfer(t) => t.at,
            AuditPayload::HostKeyMismatch(m) => m.at,
            AuditPayload::AccessRefused(r) => r.at,
            _ => 0.0,
        };
        let actor = match payload {
            AuditPayload::HostKeyMismatch(m) => m.user.clone(),
            AuditPayload::AccessRefused(r) => r.user.clone(),
            // A file transfer is its session's user's.
            AuditPayload::FileTransfer(t) => {
                sqlx::query_scalar::<_, String>("SELECT user_name FROM sessions WHERE id = ? AND writer_id = ?")
                    .bind(&t.session_id)
                    .bind(writer_id)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            _ => None,
        };
        let actor_id = match actor {
            Some(name) => {
                sqlx::query_scalar::<_, String>("SELECT id FROM users WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            None => None,
        };
        Store::record_event(tx, at as i64, actor_id.as_deref(), None, kind, detail).await?;
    }
    Ok(())
}

pub(crate) fn summary(s: SessionRow, writer: &str) -> SessionSummary {
    SessionSummary {
        session_id: s.id,
        user: s.user_name,
        device_id: String::new(),
        target: s.target,
        login: s.login,
        grant_id: s.grant_id,
        command: s.command,
        started_at: s.started_at,
        ended_at: s.ended_at,
        exit_status: s.exit_status.map(|x| x as u32),
        end_reason: s.end_reason,
        recorded_by: writer.to_string(),
        kind: s.kind,
    }
}

fn require_auditor(caller: &Caller) -> Result<(), ServerError> {
    if caller.has(Role::Auditor) || caller.has(Role::Admin) {
        Ok(())
    } else {
        Err(ServerError::Forbidden(format!("{} is not an auditor", caller.user_name)))
    }
}

/// Every session (auditors and admins).
pub async fn list_sessions(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Vec<SessionSummary>> {
    require_auditor(&caller)?;
    sessions(&state, None).await
}

/// The caller's own sessions.
pub async fn my_sessions(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Vec<SessionSummary>> {
    sessions(&state, Some(&caller.user_name)).await
}

async fn sessions(state: &ServerState, only: Option<&str>) -> ApiResult<Vec<SessionSummary>> {
    let writers = state.db.gateways().await?;
    let name_of =
        |id: &str| writers.iter().find(|g| g.id == id).map(|g| g.name.clone()).unwrap_or_else(|| "device".into());
    Ok(Json(
        state
            .db
            .sessions(only)
            .await?
            .into_iter()
            .map(|s| {
                let w = name_of(&s.writer_id);
                summary(s, &w)
            })
            .collect(),
    ))
}

/// A session's records, decrypted, in order.
async fn session_payloads(state: &ServerState, session: &SessionRow) -> Result<Vec<AuditPayload>, ServerError> {
    let mut out = Vec::new();
    for (seq, ct) in state.db.session_records(&session.writer_id, &session.id).await? {
        let plain = state.root_key.open(&ct, &record_aad(&session.writer_id, seq as u64)).map_err(|_| {
            ServerError::Internal(format!("record {seq} of writer {} fails verification", session.writer_id))
        })?;
        out.push(
            serde_json::from_slice(plain.expose_secret())
                .map_err(|e| ServerError::Internal(format!("stored record {seq}: {e}")))?,
        );
    }
    Ok(out)
}

async fn audited_session(state: &ServerState, caller: &Caller, id: &str) -> Result<SessionRow, ServerError> {
    require_auditor(caller)?;
    state.db.session(id).await?.ok_or_else(|| ServerError::NotFound(format!("no session {id}")))
}

async fn record_export(state: &ServerState, caller: &Caller, id: &str, kind: &str) -> Result<(), ServerError> {
    let mut tx = state.db.begin().await?;
    Store::record_event(
        &mut tx,
        state.clock.now(),
        Some(&caller.user_id),
        Some(&caller.device_id),
        kind,
        serde_json::json!({ "session": id }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The lines typed in a terminal session, split at Enter; control keys stay escaped.
fn typed_lines(events: &[(f64, String, String)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for (_, code, data) in events {
        if code != "i" {
            continue;
        }
        for c in data.chars() {
            match c {
                '\r' | '\n' => {
                    if !current.trim().is_empty() {
                        lines.push(std::mem::take(&mut current));
                    }
                    current.clear();
                }
                '\u{7f}' | '\u{8}' => {
                    current.pop();
                }
                c if c.is_control() => current.push_str(&c.escape_default().to_string()),
                c => current.push(c),
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

/// `GET /v1/audit/sessions/{id}`: summary, commands, file transfers and stream totals.
pub async fn session_detail(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<SessionDetail> {
    let session = audited_session(&state, &caller, &id).await?;
    let payloads = session_payloads(&state, &session).await?;
    let writer = state.db.gateway(&session.writer_id).await?.map(|g| g.name).unwrap_or_else(|| "device".into());
    let mut events = Vec::new();
    let mut transfers = Vec::new();
    let mut streams: Vec<StreamSummary> = Vec::new();
    let mut client_addr = String::new();
    for payload in payloads {
        match payload {
            AuditPayload::SessionStart(s) => client_addr = s.client_addr,
            AuditPayload::SessionChunk(c) => events.extend(c.events),
            AuditPayload::FileTransfer(t) => transfers.push(t),
            AuditPayload::SessionEnd(e) => streams = e.streams,
            _ => {}
        }
    }
    let commands = match &session.command {
        Some(command) => vec![command.clone()],
        None => typed_lines(&events),
    };
    record_export(&state, &caller, &id, "session_viewed").await?;
    Ok(Json(SessionDetail { summary: summary(session, &writer), commands, transfers, streams, client_addr }))
}

/// The session as an asciicast v2 file: a header line, then one JSON array per event. An exec
/// session's recorded streams become output (`o`) and input (`i`) events.
pub async fn export_cast(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ServerError> {
    let session = audited_session(&state, &caller, &id).await?;
    let mut out = String::new();
    for payload in session_payloads(&state, &session).await? {
        match payload {
            AuditPayload::SessionStart(s) => {
                let title = match &s.command {
                    Some(c) => format!("{}@{} ({}): {}", s.login, s.target, s.user, c),
                    None => format!("{}@{} ({})", s.login, s.target, s.user),
                };
                let header = serde_json::json!({
                    "version": 2, "width": s.width, "height": s.height,
                    "timestamp": s.started_at as i64, "title": title,
                    "env": { "TERM": s.term },
                });
                out.push_str(&header.to_string());
                out.push('\n');
            }
            AuditPayload::SessionChunk(c) => {
                for event in c.events {
                    out.push_str(&serde_json::to_string(&event).map_err(|e| ServerError::Internal(e.to_string()))?);
                    out.push('\n');
                }
            }
            AuditPayload::StreamChunk(c) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(&c.data).unwrap_or_default();
                let code = if c.stream == "stdin" { "i" } else { "o" };
                let event = (c.elapsed, code, String::from_utf8_lossy(&bytes));
                out.push_str(&serde_json::to_string(&event).map_err(|e| ServerError::Internal(e.to_string()))?);
                out.push('\n');
            }
            _ => {}
        }
    }
    record_export(&state, &caller, &id, "session_exported").await?;
    Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], out))
}

pub async fn list_events(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<ServerEvent>> {
    require_auditor(&caller)?;
    let rows = state.db.events(1000).await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| ServerEvent {
                id: e.id,
                at: e.at,
                actor: e.actor,
                device_id: e.device_id,
                kind: e.kind,
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    ))
}
