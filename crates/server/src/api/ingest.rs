//! Uploads from gateways: verified against the writer's log before anything is acknowledged.
//!
//! A batch continues the writer's log and ends at a checkpoint the writer signed. The server
//! appends each record's leaf to the tree it holds for that writer (a consistency check by
//! recomputation: the new root must be the signed one), stores the records sealed under the
//! writer's data key, countersigns the checkpoint and returns it. Nothing of a batch that fails
//! is kept, and the failure is raised as an alarm naming the writer and the first bad index.

use portcullis_crypto::OsRng;
use portcullis_proto::{AuditPayload, UploadAck, UploadBatch};

use crate::audit::{self, load_log, save_log};
use crate::store::{GatewayRow, NewRecord, SessionRow, Store, Tx, record_aad};
use crate::{ServerError, ServerState};

pub const MAX_BATCH_RECORDS: usize = 1000;

/// Why a batch was refused: an alarm kind, the first bad index, the message.
struct Refusal {
    kind: &'static str,
    index: u64,
    message: String,
}

fn refuse(kind: &'static str, index: u64, message: impl Into<String>) -> Refusal {
    Refusal { kind, index, message: message.into() }
}

/// Stores a batch of a gateway's records (see the module's contract).
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
    state.rows.check(&mut state.db.conn().await?, crate::rows::Row::Gateway(&gateway.id)).await?;
    let writer_key: [u8; 32] = gateway
        .sign_public_key
        .clone()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ServerError::Unauthorized(format!("gateway {} has no signing key", gateway.name)))?;
    let now = state.clock.now();
    let checkpoint = match portcullis_tlog::verify_checkpoint(&batch.checkpoint, writer_id, &writer_key, None) {
        Ok(cp) => cp,
        Err(e) => {
            let index = batch.records.first().map(|r| r.seq).unwrap_or(0);
            return Err(
                alarm(state, &gateway, refuse("audit_bad_checkpoint", index, format!("checkpoint: {e}")), now).await
            );
        }
    };
    check_witness(state, &gateway, batch.server_witnessed.as_deref(), now).await?;
    let mut tx = state.db.begin().await?;
    let log = load_log(&mut tx, writer_id).await?;
    let held = log.frontier.size();
    let first = batch.records.first().map(|r| r.seq);
    // The server holds less than the writer already sent: a restored backup (the writer holds a
    // newer checkpoint we countersigned) or a lost acknowledgement. Ask for the rest again.
    if first.map_or(checkpoint.size > held, |f| f > held + 1) {
        drop(tx);
        let restored = batch.acknowledged.as_deref().and_then(|note| {
            portcullis_tlog::verify_checkpoint(note, writer_id, &writer_key, Some(&state.signing.public_key())).ok()
        });
        let refusal = match restored {
            Some(cp) if cp.countersigned && cp.size > held => refuse(
                "audit_server_behind",
                held + 1,
                format!(
                    "the server holds {held} records of this writer but countersigned {} before (restored from a \
                     backup?); asked the writer to send them again",
                    cp.size
                ),
            ),
            _ => {
                refuse("audit_gap", held + 1, format!("expected record {} next, got {}", held + 1, first.unwrap_or(0)))
            }
        };
        let _ = alarm(state, &gateway, refusal, now).await;
        return Ok(UploadAck {
            stored_through: held,
            duplicates: 0,
            checkpoint: log.checkpoint,
            resend_from: Some(held + 1),
            server_checkpoint: own_checkpoint(state).await?,
        });
    }
    match append_batch(state, &mut tx, &gateway, batch, &checkpoint, log, now).await {
        Ok(Appended { size, duplicates, note, lost }) => {
            for (seq, reason) in lost {
                state
                    .record_event(
                        &mut tx,
                        now,
                        None,
                        None,
                        "audit_record_lost",
                        serde_json::json!({ "gateway": gateway.name, "writer_id": writer_id, "index": seq,
                            "message": format!("record {seq} could not be read at the gateway: {reason}") }),
                    )
                    .await?;
            }
            tx.commit().await?;
            let stored = (batch.records.len() as u64).saturating_sub(duplicates);
            metrics::counter!(crate::metrics::RECORDS_INGESTED).increment(stored);
            Ok(UploadAck {
                stored_through: size,
                duplicates,
                checkpoint: note,
                resend_from: None,
                server_checkpoint: own_checkpoint(state).await?,
            })
        }
        Err(Ok(refusal)) => {
            drop(tx);
            Err(alarm(state, &gateway, refusal, now).await)
        }
        Err(Err(e)) => Err(e),
    }
}

struct Appended {
    size: u64,
    duplicates: u64,
    /// The countersigned checkpoint at `size` (`None`: a log upgraded from before checkpoints,
    /// not yet checkpointed by its writer).
    note: Option<String>,
    lost: Vec<(u64, String)>,
}

/// Appends the batch in `tx`; `Err(Ok(_))` is a refusal to raise, `Err(Err(_))` a failure.
async fn append_batch(
    state: &ServerState,
    tx: &mut Tx<'_>,
    gateway: &GatewayRow,
    batch: &UploadBatch,
    checkpoint: &portcullis_tlog::Checkpoint,
    log: audit::LogState,
    now: i64,
) -> Result<Appended, Result<Refusal, ServerError>> {
    let writer_id = gateway.id.as_str();
    let mut frontier = log.frontier;
    let held = frontier.size();
    let mut duplicates = 0;
    let mut lost = Vec::new();
    let mut key: Option<(u64, portcullis_crypto::SymmetricKey)> = None;
    let mut rows = Vec::with_capacity(batch.records.len());
    for record in &batch.records {
        let seq = record.seq;
        let (leaf, payload) = match (&record.payload, &record.lost_leaf) {
            (Some(payload), _) => match portcullis_tlog::leaf_with_digest(writer_id, seq, payload.as_bytes()) {
                Ok((leaf, head, sha)) => (leaf, Some((payload, head, sha))),
                Err(e) => return Err(Ok(refuse("audit_upload_refused", seq, format!("record {seq}: {e}")))),
            },
            (None, Some(leaf)) => match portcullis_tlog::parse_hash_b64(leaf) {
                Ok(leaf) => (leaf, None),
                Err(e) => return Err(Ok(refuse("audit_upload_refused", seq, format!("record {seq}: {e}")))),
            },
            (None, None) => {
                return Err(Ok(refuse(
                    "audit_record_lost",
                    seq,
                    format!("record {seq} came with neither payload nor leaf"),
                )));
            }
        };
        if seq <= held {
            let stored = Store::record_leaf(tx, writer_id, seq).await.map_err(|e| Err(e.into()))?;
            if stored.as_deref() == Some(&leaf.0[..]) {
                duplicates += 1;
                continue;
            }
            let (kind, message) = if checkpoint.size < held {
                (
                    "audit_rollback",
                    format!(
                        "record {seq} differs from the one already acknowledged: the writer's log is at {} records, \
                         the server holds {held} (its database was restored from an older copy)",
                        checkpoint.size
                    ),
                )
            } else {
                (
                    "audit_fork",
                    format!("record {seq} differs from the one already acknowledged: the writer's log was rewritten"),
                )
            };
            return Err(Ok(refuse(kind, seq, message)));
        }
        if seq != frontier.size() + 1 {
            return Err(Ok(refuse(
                "audit_gap",
                frontier.size() + 1,
                format!("expected record {} next, got {seq}", frontier.size() + 1),
            )));
        }
        let epoch = portcullis_tlog::key_epoch(seq);
        if key.as_ref().is_none_or(|(e, _)| *e != epoch) {
            key = Some((
                epoch,
                audit::data_key(tx, &state.root_key, writer_id, epoch, now).await.map_err(|e| Err(e.into()))?,
            ));
        }
        let Some((_, data_key)) = &key else { unreachable!("set above") };
        match payload {
            Some((payload, head, sha)) => {
                index_payload(state, tx, writer_id, &gateway.name, &head.kind, payload).await.map_err(|e| match e {
                    ServerError::BadRequest(m) | ServerError::Conflict(m) => {
                        Ok(refuse("audit_upload_refused", seq, format!("record {seq}: {m}")))
                    }
                    other => Err(other),
                })?;
                let ct = data_key
                    .seal(&mut OsRng, payload.as_bytes(), &record_aad(writer_id, seq))
                    .map_err(|e| Err(e.into()))?;
                rows.push(NewRecord {
                    seq,
                    kind: head.kind,
                    session_id: head.session_id,
                    payload_sha256: hex::encode(sha),
                    payload: ct,
                    leaf,
                    lost: None,
                });
            }
            None => {
                let reason = record.lost_reason.clone().unwrap_or_else(|| "unreadable at the gateway".into());
                rows.push(NewRecord {
                    seq,
                    kind: "lost".into(),
                    session_id: None,
                    payload_sha256: String::new(),
                    payload: Vec::new(),
                    leaf,
                    lost: Some(reason.clone()),
                });
                lost.push((seq, reason));
            }
        }
        frontier.append(leaf).map_err(|e| Err(ServerError::Internal(e.to_string())))?;
    }
    Store::insert_records(tx, writer_id, &rows, now).await.map_err(|e| Err(e.into()))?;
    // The signed checkpoint must be exactly the tree the records make.
    if checkpoint.size > frontier.size() || (checkpoint.size == frontier.size() && checkpoint.root != frontier.root()) {
        return Err(Ok(refuse(
            "audit_inconsistent_checkpoint",
            held + 1,
            format!(
                "the writer's checkpoint (size {}) does not match the {} records it covers",
                checkpoint.size,
                frontier.size()
            ),
        )));
    }
    // The checkpoint the server accepted at this size before, if any (a fork when roots differ).
    let known = audit::checkpoint_root(tx, writer_id, checkpoint.size).await.map_err(|e| Err(e.into()))?;
    if checkpoint.size < frontier.size() {
        // A re-upload of what is stored (every record matched its stored leaf): acknowledged
        // with the newest countersigned checkpoint the server holds; nothing new is signed.
        if !batch.records.is_empty()
            && duplicates == batch.records.len() as u64
            && batch.records.last().map(|r| r.seq) == Some(checkpoint.size)
        {
            return Ok(Appended { size: held, duplicates, note: log.checkpoint, lost });
        }
        // Otherwise the writer's log is behind the server's.
        let how = match known {
            Some(root) if root[..] != checkpoint.root.0[..] => "with another root (a fork)",
            _ => "behind what the server holds",
        };
        return Err(Ok(refuse(
            "audit_rollback",
            checkpoint.size + 1,
            format!(
                "the writer's log is at {} records, {how}; the server holds {}: the writer's database was restored \
                 from an older copy",
                checkpoint.size,
                frontier.size()
            ),
        )));
    }
    if let Some(root) = &known
        && root[..] != checkpoint.root.0[..]
    {
        return Err(Ok(refuse("audit_fork", checkpoint.size, "two checkpoints of one size with different roots")));
    }
    let note = portcullis_tlog::countersign(&batch.checkpoint, &state.signing)
        .map_err(|e| Err(ServerError::Internal(e.to_string())))?;
    if known.is_none() {
        audit::insert_checkpoint(tx, writer_id, checkpoint.size, &checkpoint.root.0[..], &note, now)
            .await
            .map_err(|e| Err(e.into()))?;
    }
    save_log(tx, writer_id, &frontier, Some(&note), now).await.map_err(|e| Err(e.into()))?;
    Ok(Appended { size: frontier.size(), duplicates, note: Some(note), lost })
}

/// The newest checkpoint of the server's own log, for gateways to keep as witnesses.
async fn own_checkpoint(state: &ServerState) -> Result<Option<String>, ServerError> {
    let own = audit::server_writer_id(&state.signing.public_key());
    Ok(audit::newest_checkpoint(&state.db, &own).await?)
}

/// A gateway shows the newest checkpoint of the server's own log it was given: if the server now
/// holds less, its database was restored from an older copy or its events were cut — an alarm
/// naming the server's log and the first missing event. (Uploads go on: the gateway's records
/// are not at fault.)
async fn check_witness(
    state: &ServerState,
    gateway: &GatewayRow,
    witnessed: Option<&str>,
    now: i64,
) -> Result<(), ServerError> {
    let Some(note) = witnessed else { return Ok(()) };
    let own = audit::server_writer_id(&state.signing.public_key());
    let Ok(seen) = portcullis_tlog::verify_checkpoint(note, &own, &state.signing.public_key(), None) else {
        return Ok(());
    };
    let held = audit::log_size(&state.db, &own).await?;
    if seen.size > held {
        let r = refuse(
            "audit_server_behind",
            held + 1,
            format!(
                "gateway {} was shown this server's own log at {} events, signed by this server; the server now \
                 holds {held}: its database was restored from an older copy or its events were cut",
                gateway.name, seen.size
            ),
        );
        record_alarm(state, &own, &gateway.name, &r, now).await;
    }
    Ok(())
}

/// Raises a refusal as an alarm (once per writer, kind and index an hour) and returns the error
/// the writer gets.
async fn alarm(state: &ServerState, gateway: &GatewayRow, r: Refusal, now: i64) -> ServerError {
    record_alarm(state, &gateway.id, &gateway.name, &r, now).await;
    if !matches!(r.kind, "audit_gap" | "audit_server_behind" | "audit_record_lost")
        && let Err(e) = audit::mark_refused(&state.db, &gateway.id, r.index, &r.message, now).await
    {
        tracing::error!(error = %e, "could not mark a gateway's log refused");
    }
    ServerError::Refused(r.kind, format!("audit upload refused: {}", r.message))
}

/// Records an alarm about `writer_id`'s log, unless the same one was raised within the hour.
async fn record_alarm(state: &ServerState, writer_id: &str, gateway: &str, r: &Refusal, now: i64) {
    tracing::warn!(%gateway, kind = r.kind, index = r.index, message = %r.message, "audit alarm");
    let raised = async {
        let mut tx = state.db.begin().await?;
        let recent = audit::alarms_raised_since(&mut tx, r.kind, now - 3600, writer_id, r.index).await?;
        if recent == 0 {
            state
                .record_event(
                    &mut tx,
                    now,
                    None,
                    None,
                    r.kind,
                    serde_json::json!({ "gateway": gateway, "writer_id": writer_id, "index": r.index,
                        "message": r.message }),
                )
                .await?;
        }
        tx.commit().await?;
        Ok::<(), ServerError>(())
    }
    .await;
    if let Err(e) = raised {
        tracing::error!(error = %e, "could not record an audit alarm");
    }
}

/// How far a session may seem to start before the server authorised it (clocks differ).
const START_SKEW_SECS: f64 = 300.0;

/// A gateway's `SessionStart` must be one the server allowed: an authorisation issued to this
/// writer for this grant, user, target and login, no later than the session's start (with
/// clock skew). A compromised gateway cannot make up a session for anyone — nor put its own
/// sessions under another gateway's name. A session from before the server kept authorisations
/// (a gateway's backlog at an upgrade) is taken when its grant is real, is that user's for that
/// target, was issued before then, and the session's claimed start lies within it.
async fn check_session_start(
    state: &ServerState,
    tx: &mut Tx<'_>,
    writer_id: &str,
    s: &portcullis_proto::SessionStart,
) -> Result<(), ServerError> {
    let until = (s.started_at + START_SKEW_SECS) as i64;
    let found = Store::session_authorizations(tx, writer_id, &s.grant_id, &s.user, &s.target, &s.login, until).await?;
    for id in &found {
        state.rows.check(&mut *tx, crate::rows::Row::SessionAuthorization(id)).await?;
    }
    if !found.is_empty() {
        return Ok(());
    }
    // When checks began decides whether an unauthorised start may pass as a legacy one.
    state.rows.check(&mut *tx, crate::rows::Row::Setting(crate::store::SETTING_SESSION_CHECKS_SINCE)).await?;
    let since = Store::setting_in(tx, crate::store::SETTING_SESSION_CHECKS_SINCE).await?;
    if let Some(since) = since.and_then(|v| v.parse::<i64>().ok()) {
        let legacy = Store::grant_covers(tx, &s.grant_id, &s.user, &s.target, since, s.started_at as i64).await?;
        if legacy {
            return Ok(());
        }
    }
    Err(ServerError::BadRequest(format!(
        "session {} claims user {:?}, target {:?}, login {:?} and grant {} — the server authorised no such session \
         through this gateway",
        s.session_id,
        portcullis_proto::printable(&s.user),
        portcullis_proto::printable(&s.target),
        portcullis_proto::printable(&s.login),
        portcullis_proto::printable(&s.grant_id)
    )))
}

/// Indexes what the server searches by (sessions) and raises what gateways report (file
/// transfers, host-key mismatches, refusals) as security events. Chunks are only stored.
async fn index_payload(
    state: &ServerState,
    tx: &mut Tx<'_>,
    writer_id: &str,
    gateway: &str,
    kind: &str,
    json: &str,
) -> Result<(), ServerError> {
    if matches!(kind, "session_chunk" | "stream_chunk" | "file_operations") {
        return Ok(());
    }
    let payload: AuditPayload =
        serde_json::from_str(json).map_err(|e| ServerError::BadRequest(format!("malformed record: {e}")))?;
    let event = |kind: &'static str, value: serde_json::Value| (kind, value);
    let raised = match &payload {
        AuditPayload::SessionStart(s) => {
            check_session_start(state, tx, writer_id, s).await?;
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
            let holders = Store::session_id_holders(tx, &s.session_id, writer_id).await?;
            Store::insert_session(tx, &row)
                .await
                .map_err(|_| ServerError::Conflict(format!("session {} already exists", s.session_id)))?;
            // Kept under this writer (sessions are keyed by writer and id), but ids are random:
            // one that another writer already used is a gateway making up or replaying sessions.
            (!holders.is_empty()).then(|| {
                event(
                    "session_id_reused",
                    serde_json::json!({ "session": s.session_id, "gateway": gateway, "writer_id": writer_id,
                        "first_writer_id": holders[0], "user": s.user, "target": s.target,
                        "message": format!("gateway {gateway} started a session under an id another writer already \
                            used; the id alone shows the first, ?writer={writer_id} this one") }),
                )
            })
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
        AuditPayload::SessionChunk(_) | AuditPayload::StreamChunk(_) | AuditPayload::FileOperations(_) => None,
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
        let at = match &payload {
            AuditPayload::FileTransfer(t) => t.at,
            AuditPayload::HostKeyMismatch(m) => m.at,
            AuditPayload::AccessRefused(r) => r.at,
            AuditPayload::SessionStart(s) => s.started_at,
            _ => 0.0,
        };
        let actor = match &payload {
            AuditPayload::HostKeyMismatch(m) => m.user.clone(),
            AuditPayload::AccessRefused(r) => r.user.clone(),
            AuditPayload::SessionStart(s) => Some(s.user.clone()),
            // A file transfer is its session's user's.
            AuditPayload::FileTransfer(t) => Store::session_user(tx, writer_id, &t.session_id).await?,
            _ => None,
        };
        let actor_id = match actor {
            Some(name) => Store::user_id_named(tx, &name).await?,
            None => None,
        };
        let detail = checked_report(tx, &payload, detail, at, state.clock.now()).await?;
        // The event is dated when the server received it; what the gateway claimed is kept
        // beside it, so a wrong or forged clock cannot move an event in the log.
        state.record_event(tx, state.clock.now(), actor_id.as_deref(), None, kind, detail).await?;
    }
    Ok(())
}

/// Reports are checked against what the server knows: the target named must exist and the time
/// claimed must be near the server's (within ten minutes, or in the past of a gateway that was
/// offline). What does not hold is said in the event (`checked`), never silently trusted.
async fn checked_report(
    tx: &mut Tx<'_>,
    payload: &AuditPayload,
    mut detail: serde_json::Value,
    claimed: f64,
    now: i64,
) -> Result<serde_json::Value, ServerError> {
    let mut problems = Vec::new();
    let target = match payload {
        AuditPayload::HostKeyMismatch(m) => Some(m.target.as_str()),
        AuditPayload::AccessRefused(r) => r.target.as_deref(),
        _ => None,
    };
    if let Some(name) = target {
        let known = Store::target_id_named(tx, name).await?;
        if known.is_none() {
            problems.push(format!("no target is named {name:?}"));
        }
    }
    let skew = claimed - now as f64;
    if skew > 600.0 {
        problems.push(format!("its time is {skew:.0} s ahead of the server's"));
    }
    detail["reported_at"] = serde_json::json!(claimed as i64);
    detail["checked"] = serde_json::json!(if problems.is_empty() { "ok".to_string() } else { problems.join("; ") });
    Ok(detail)
}
