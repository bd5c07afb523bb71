//! Audit records uploaded by gateways, and the auditor's view of sessions.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use base64::Engine;
use portcullis_proto::{
    AuditPayload, AuditVerifyReport, Role, ServerEvent, SessionDetail, SessionSummary, StreamSummary,
};

use super::{ApiResult, AppState};
use crate::audit::KeyRing;
use crate::auth::Caller;
use crate::store::SessionRow;
use crate::{ServerError, ServerState};

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
        verification: None,
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
    let logs = crate::audit::LogFacts::load(&state.db).await?;
    Ok(Json(
        state
            .db
            .sessions(only)
            .await?
            .into_iter()
            .map(|s| {
                let w = name_of(&s.writer_id);
                let state = logs.recording_state(&s);
                SessionSummary { verification: Some(state), ..summary(s, &w) }
            })
            .collect(),
    ))
}

/// A session's records, decrypted, in order.
async fn session_payloads(state: &ServerState, session: &SessionRow) -> Result<Vec<AuditPayload>, ServerError> {
    let mut out = Vec::new();
    let mut ring = KeyRing::new(&state.root_key);
    for (seq, ct) in state.db.session_records(&session.writer_id, &session.id).await? {
        let plain = ring.open(&state.db, &session.writer_id, seq as u64, &ct).await.map_err(|why| {
            ServerError::Refused(
                "audit_record_invalid",
                format!(
                    "record {seq} of session {} (writer {}) fails verification: {why}",
                    session.id, session.writer_id
                ),
            )
        })?;
        out.push(
            serde_json::from_slice(&plain).map_err(|e| ServerError::Internal(format!("stored record {seq}: {e}")))?,
        );
    }
    Ok(out)
}

/// Which writer's session an id means: sessions are keyed by (writer, id), and an id alone
/// means the writer that used it first (a second writer using it raised `session_id_reused`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct SessionOf {
    pub writer: Option<String>,
}

async fn audited_session(
    state: &ServerState,
    caller: &Caller,
    id: &str,
    of: &SessionOf,
) -> Result<SessionRow, ServerError> {
    require_auditor(caller)?;
    state.db.session(id, of.writer.as_deref()).await?.ok_or_else(|| ServerError::NotFound(format!("no session {id}")))
}

async fn record_export(state: &ServerState, caller: &Caller, id: &str, kind: &str) -> Result<(), ServerError> {
    let mut tx = state.db.begin().await?;
    state
        .record_event(
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
    Query(of): Query<SessionOf>,
) -> ApiResult<SessionDetail> {
    let session = audited_session(&state, &caller, &id, &of).await?;
    let payloads = session_payloads(&state, &session).await?;
    let writer = state.db.gateway(&session.writer_id).await?.map(|g| g.name).unwrap_or_else(|| "device".into());
    let mut events = Vec::new();
    let mut transfers = Vec::new();
    let mut operations = Vec::new();
    let mut streams: Vec<StreamSummary> = Vec::new();
    let mut client_addr = String::new();
    let mut target_transport_fallback = None;
    for payload in payloads {
        match payload {
            AuditPayload::SessionStart(s) => {
                client_addr = s.client_addr;
                target_transport_fallback = s.target_transport_fallback;
            }
            AuditPayload::SessionChunk(c) => events.extend(c.events),
            AuditPayload::FileTransfer(t) => transfers.push(t),
            AuditPayload::FileOperations(o) => operations.extend(o.operations),
            AuditPayload::SessionEnd(e) => streams = e.streams,
            _ => {}
        }
    }
    let commands = match &session.command {
        Some(command) => vec![command.clone()],
        None => typed_lines(&events),
    };
    record_export(&state, &caller, &id, "session_viewed").await?;
    Ok(Json(SessionDetail {
        summary: summary(session, &writer),
        commands,
        transfers,
        operations,
        streams,
        client_addr,
        target_transport_fallback,
    }))
}

/// The session as an asciicast v2 file: a header line, then one JSON array per event. An exec
/// session's recorded streams become output (`o`) and input (`i`) events.
pub async fn export_cast(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(of): Query<SessionOf>,
) -> Result<impl IntoResponse, ServerError> {
    let session = audited_session(&state, &caller, &id, &of).await?;
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
            // A terminal's input as bytes: its keystrokes are already events of the cast.
            AuditPayload::StreamChunk(c) if c.stream.starts_with("terminal_") => {}
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

/// `GET /v1/audit/verify`: every log checked end to end (auditors).
pub async fn verify_logs(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<AuditVerifyReport> {
    require_auditor(&caller)?;
    let report = crate::audit::verify_all(&state.db, &state.root_key, &state.signing.public_key()).await?;
    let mut tx = state.db.begin().await?;
    state
        .record_event(
            &mut tx,
            state.clock.now(),
            Some(&caller.user_id),
            Some(&caller.device_id),
            "audit_verified",
            serde_json::json!({ "writers": report.writers.len(), "records": report.records,
                "problems": report.problems.len() }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(report))
}

/// `GET /v1/audit/sessions/{id}/bundle`: the session's records with inclusion proofs under the
/// writer's newest countersigned checkpoint, and the public keys — checkable offline.
pub async fn session_bundle(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(of): Query<SessionOf>,
) -> ApiResult<portcullis_tlog::bundle::Bundle> {
    let session = audited_session(&state, &caller, &id, &of).await?;
    let bundle =
        crate::audit::session_bundle(&state.db, &state.root_key, &state.signing.public_key(), &session).await?;
    record_export(&state, &caller, &id, "session_bundle_exported").await?;
    Ok(Json(bundle))
}

/// `GET /v1/audit/alarms`: gaps, forks, rollbacks, refused uploads and lost records, newest first.
pub async fn list_alarms(State(state): AppState, Extension(caller): Extension<Caller>) -> ApiResult<Vec<ServerEvent>> {
    require_auditor(&caller)?;
    let query = portcullis_proto::EventQuery {
        kind: Some(crate::audit::ALARM_KINDS.join(",")),
        limit: Some(portcullis_proto::MAX_EVENTS_PAGE),
        ..Default::default()
    };
    let rows = state.db.events(&query).await?;
    Ok(Json(rows.into_iter().map(server_event).collect()))
}

fn server_event(e: crate::store::EventRow) -> ServerEvent {
    ServerEvent {
        id: e.id,
        at: e.at,
        actor: e.actor,
        device_id: e.device_id,
        kind: e.kind,
        detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
    }
}

/// `GET /v1/audit/events`: filtered and paged here, not in the client.
pub async fn list_events(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(query): axum::extract::Query<portcullis_proto::EventQuery>,
) -> ApiResult<Vec<ServerEvent>> {
    require_auditor(&caller)?;
    let rows = state.db.events(&query).await?;
    Ok(Json(rows.into_iter().map(server_event).collect()))
}
