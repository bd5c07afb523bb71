//! Audit records uploaded by devices, and the auditor's view of sessions.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use portcullis_crypto::OsRng;
use portcullis_proto::{AuditPayload, Role, ServerEvent, SessionSummary, UploadAck, UploadBatch};

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::store::{SessionRow, Store, record_aad};

pub const MAX_BATCH_RECORDS: usize = 1000;

/// Stores a batch of a device's records. Sequence numbers must continue the device's log
/// without gaps; a record already stored is accepted again only if it is byte-for-byte the
/// same (idempotent retry). A gap or a rewrite rejects the whole batch and raises an alarm.
pub async fn upload(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(batch): Json<UploadBatch>,
) -> ApiResult<UploadAck> {
    if batch.records.len() > MAX_BATCH_RECORDS {
        return Err(ServerError::BadRequest(format!("at most {MAX_BATCH_RECORDS} records per upload")));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let mut stored = Store::stored_through(&mut tx, &caller.device_id).await?;
    let mut duplicates = 0;
    let mut alarm = None;
    for record in &batch.records {
        let hash = portcullis_crypto::sha256_hex(record.payload.as_bytes());
        if record.seq == 0 {
            return Err(ServerError::BadRequest("sequence numbers start at 1".into()));
        }
        if record.seq <= stored {
            match Store::record_hash(&mut tx, &caller.device_id, record.seq).await? {
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
        index_payload(&mut tx, &caller, &payload).await?;
        let ct =
            state.root_key.seal(&mut OsRng, record.payload.as_bytes(), &record_aad(&caller.device_id, record.seq))?;
        Store::insert_record(
            &mut tx,
            &caller.device_id,
            record.seq,
            payload.kind(),
            payload.session_id(),
            &hash,
            &ct,
            now,
        )
        .await?;
        stored = record.seq;
    }
    if let Some((kind, message)) = alarm {
        drop(tx);
        let mut tx = state.db.begin().await?;
        Store::record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            kind,
            serde_json::json!({ "message": message }),
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(device = %caller.device_id, %kind, %message, "audit upload rejected");
        return Err(ServerError::Refused(kind, format!("audit upload rejected: {message}")));
    }
    tx.commit().await?;
    Ok(Json(UploadAck { stored_through: stored, duplicates }))
}

async fn index_payload(
    tx: &mut crate::store::Tx<'_>,
    caller: &Caller,
    payload: &AuditPayload,
) -> Result<(), ServerError> {
    match payload {
        AuditPayload::SessionStart(s) => {
            if s.device_id != caller.device_id || s.user != caller.user_name {
                return Err(ServerError::BadRequest("session start names another device or user".into()));
            }
            let row = SessionRow {
                id: s.session_id.clone(),
                device_id: caller.device_id.clone(),
                user_name: caller.user_name.clone(),
                target: s.target.clone(),
                login: s.login.clone(),
                grant_id: s.grant_id.clone(),
                command: s.command.clone(),
                started_at: s.started_at,
                ended_at: None,
                exit_status: None,
                end_reason: None,
            };
            Store::insert_session(tx, &row)
                .await
                .map_err(|_| ServerError::Conflict(format!("session {} already exists", s.session_id)))?;
        }
        AuditPayload::SessionEnd(e) => {
            if !Store::end_session(tx, &e.session_id, &caller.device_id, e.ended_at, e.exit_status, &e.reason).await? {
                return Err(ServerError::BadRequest(format!(
                    "session {} was not started or already ended",
                    e.session_id
                )));
            }
        }
        AuditPayload::SessionChunk(_) => {}
        AuditPayload::HostKeyMismatch(m) => {
            Store::record_event(
                tx,
                m.at as i64,
                Some(&caller.user_id),
                Some(&caller.device_id),
                "host_key_mismatch",
                serde_json::to_value(m).map_err(|e| ServerError::Internal(e.to_string()))?,
            )
            .await?;
        }
    }
    Ok(())
}

fn summary(s: SessionRow) -> SessionSummary {
    SessionSummary {
        session_id: s.id,
        user: s.user_name,
        device_id: s.device_id,
        target: s.target,
        login: s.login,
        grant_id: s.grant_id,
        command: s.command,
        started_at: s.started_at,
        ended_at: s.ended_at,
        exit_status: s.exit_status.map(|x| x as u32),
        end_reason: s.end_reason,
    }
}

fn require_auditor(caller: &Caller) -> Result<(), ServerError> {
    if caller.has(Role::Auditor) || caller.has(Role::Admin) {
        Ok(())
    } else {
        Err(ServerError::Forbidden(format!("{} is not an auditor", caller.user_name)))
    }
}

pub async fn list_sessions(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Vec<SessionSummary>> {
    require_auditor(&caller)?;
    Ok(Json(state.db.sessions().await?.into_iter().map(summary).collect()))
}

/// The session as an asciicast v2 file: a header line, then one JSON array per event.
pub async fn export_cast(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ServerError> {
    require_auditor(&caller)?;
    let session = state.db.session(&id).await?.ok_or_else(|| ServerError::NotFound(format!("no session {id}")))?;
    let mut out = String::new();
    for (seq, ct) in state.db.session_records(&session.device_id, &id).await? {
        let plain = state.root_key.open(&ct, &record_aad(&session.device_id, seq as u64)).map_err(|_| {
            ServerError::Internal(format!("record {seq} of device {} fails verification", session.device_id))
        })?;
        let payload: AuditPayload = serde_json::from_slice(plain.expose_secret())
            .map_err(|e| ServerError::Internal(format!("stored record {seq}: {e}")))?;
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
            AuditPayload::SessionEnd(_) | AuditPayload::HostKeyMismatch(_) => {}
        }
    }
    let mut tx = state.db.begin().await?;
    Store::record_event(
        &mut tx,
        state.clock.now(),
        Some(&caller.user_id),
        Some(&caller.device_id),
        "session_exported",
        serde_json::json!({ "session": id }),
    )
    .await?;
    tx.commit().await?;
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
