//! End-to-end verification of the audit store (`audit verify`, `server verify --data`): every
//! log rebuilt from its records, the searchable rows checked against them, every authenticated
//! row's MAC. Read-only.

use std::collections::HashMap;

use portcullis_crypto::SymmetricKey;
use portcullis_proto::{AuditProblem, AuditVerifyReport, WriterReport};
use portcullis_tlog::{Frontier, Hash};

use super::{EventRow, KeyRing, event_payload, server_writer_id, tlog_err};
use crate::StoreError;
use crate::{Store, on};

/// A stored record, as verification reads it.
#[derive(sqlx::FromRow)]
struct StoredRecord {
    seq: i64,
    kind: String,
    session_id: Option<String>,
    payload_sha256: String,
    payload: Vec<u8>,
    leaf: Option<Vec<u8>>,
    lost: Option<String>,
}
type WriterKeys = HashMap<String, (String, Result<Option<[u8; 32]>, String>)>;

/// Public keys of the writers, to check their checkpoints — only from gateway rows whose
/// authentication holds (a key swapped in the database would otherwise vouch for forged logs).
async fn writer_keys(pool: &Store, root: &SymmetricKey) -> Result<WriterKeys, StoreError> {
    let rows: Vec<(String, String, Option<Vec<u8>>)> =
        on!(pool, ex => sqlx::query_as("SELECT id, name, sign_public_key FROM gateways").fetch_all(ex).await)?;
    let macs = crate::rows::RowKey::new(root);
    let mut out = HashMap::new();
    let mut conn = pool.conn().await?;
    for (id, name, key) in rows {
        let key = match macs.check(&mut conn, crate::rows::Row::Gateway(&id)).await {
            Ok(()) => Ok(key.and_then(|k| <[u8; 32]>::try_from(k).ok())),
            Err(e) => Err(e.to_string()),
        };
        out.insert(id, (name, key));
    }
    Ok(out)
}

const PAGE: i64 = 20_000;

/// Checks every log end to end: each record decrypts, matches its leaf and sits where its leaf
/// says; the leaves rebuild the stored tree and every stored checkpoint; the newest checkpoint
/// carries a valid writer signature and the server's countersignature; the searchable rows
/// (sessions, security events) agree with the records. Read-only.
pub async fn verify_all(
    store: &Store,
    root: &SymmetricKey,
    server_key: &[u8; 32],
) -> Result<AuditVerifyReport, StoreError> {
    let pool = store;
    let server_writer = server_writer_id(server_key);
    let names = writer_keys(pool, root).await?;
    let mut writers: Vec<String> = on!(pool, ex => sqlx::query_scalar("SELECT writer_id FROM audit_logs UNION SELECT DISTINCT writer_id FROM audit_records")
            .fetch_all(ex).await)?;
    writers.sort_by_key(|w| (w != &server_writer, w.clone()));
    let mut report = AuditVerifyReport::default();
    let mut ring = KeyRing::new(root);
    for writer in writers {
        let (name, key) = if writer == server_writer {
            ("control server".to_string(), Ok(Some(*server_key)))
        } else {
            names.get(&writer).cloned().unwrap_or_else(|| ("unknown writer".into(), Ok(None)))
        };
        let problem = |index: Option<u64>, message: String| AuditProblem {
            writer_id: writer.clone(),
            writer_name: name.clone(),
            index,
            message,
        };
        let mut frontier = Frontier::new();
        let mut lost = 0u64;
        let mut first_problem: Option<AuditProblem> = None;
        let checkpoints: HashMap<i64, Vec<u8>> =
            on!(pool, ex => sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT size, root FROM audit_checkpoints WHERE writer_id = $1")
                .bind(&writer)
                .fetch_all(ex).await)?
                .into_iter()
                .collect();
        let mut after = 0i64;
        'pages: loop {
            let rows: Vec<StoredRecord> = on!(pool, ex => sqlx::query_as(
                "SELECT seq, kind, session_id, payload_sha256, payload, leaf, lost FROM audit_records \
                     WHERE writer_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(&writer)
            .bind(after)
            .bind(PAGE)
            .fetch_all(ex).await)?;
            let Some(last) = rows.last().map(|r| r.seq) else { break };
            after = last;
            for StoredRecord {
                seq,
                kind,
                session_id: session,
                payload_sha256: sha_hex,
                payload: ct,
                leaf,
                lost: lost_reason,
            } in rows
            {
                let seq_u = seq as u64;
                if seq_u != frontier.size() + 1 {
                    first_problem = Some(problem(
                        Some(frontier.size() + 1),
                        format!("record {} is missing (the next stored is {seq})", frontier.size() + 1),
                    ));
                    break 'pages;
                }
                let Some(stored_leaf) = leaf.and_then(|l| <[u8; 32]>::try_from(l).ok()).map(Hash) else {
                    first_problem = Some(problem(Some(seq_u), format!("record {seq} has no leaf")));
                    break 'pages;
                };
                if lost_reason.is_some() {
                    lost += 1;
                } else {
                    let checked = match ring.open(pool, &writer, seq_u, &ct).await {
                        Ok(plain) => match portcullis_tlog::leaf_of(&writer, seq_u, &plain) {
                            Ok((computed, head))
                                if computed == stored_leaf
                                    && head.kind == kind
                                    && head.session_id == session
                                    && portcullis_crypto::sha256_hex(&plain) == sha_hex =>
                            {
                                Ok(())
                            }
                            Ok(_) => Err("its content does not match its leaf or its index columns".to_string()),
                            Err(e) => Err(e.to_string()),
                        },
                        Err(e) => Err(e),
                    };
                    if let Err(why) = checked {
                        first_problem = Some(problem(Some(seq_u), format!("record {seq}: {why}")));
                        break 'pages;
                    }
                }
                frontier.append(stored_leaf).map_err(tlog_err)?;
                if let Some(root) = checkpoints.get(&seq)
                    && root[..] != frontier.root().0[..]
                {
                    first_problem = Some(problem(
                        Some(seq_u),
                        format!("the log up to record {seq} does not match the checkpoint accepted at that size"),
                    ));
                    break 'pages;
                }
            }
        }
        let state: Option<(i64, Vec<u8>, Option<String>)> = on!(pool, ex => sqlx::query_as("SELECT size, root, checkpoint FROM audit_logs WHERE writer_id = $1")
                .bind(&writer)
                .fetch_optional(ex).await)?;
        let mut entry = WriterReport {
            writer_id: writer.clone(),
            name: name.clone(),
            records: frontier.size(),
            lost,
            checkpoint_size: None,
            root: portcullis_tlog::hash_b64(&frontier.root()),
            countersigned: false,
        };
        let key = match key {
            Ok(key) => key,
            Err(why) => {
                first_problem.get_or_insert(problem(None, why));
                None
            }
        };
        if first_problem.is_none() {
            first_problem = match state {
                None => Some(problem(None, "the log has records but no state".into())),
                Some((size, root, note)) => {
                    if size as u64 != frontier.size() || root[..] != frontier.root().0[..] {
                        Some(problem(
                            Some(frontier.size().min(size as u64) + 1),
                            format!(
                                "the log holds {} records but its state says {size}: records were removed, added or changed",
                                frontier.size()
                            ),
                        ))
                    } else {
                        match (note, key) {
                            (None, _) if size == 0 || writer != server_writer => {
                                // Empty, or upgraded from before logs and not yet checkpointed by the writer.
                                None
                            }
                            (None, _) => Some(problem(None, "the log has no signed checkpoint".into())),
                            (Some(_), None) => Some(problem(None, "the writer's public key is missing".into())),
                            (Some(note), Some(key)) => {
                                let cosigner = (writer != server_writer).then_some(server_key);
                                match portcullis_tlog::verify_checkpoint(&note, &writer, &key, cosigner) {
                                    Ok(cp) if cp.size == frontier.size() && cp.root == frontier.root() => {
                                        entry.checkpoint_size = Some(cp.size);
                                        entry.countersigned = cp.countersigned || writer == server_writer;
                                        (!entry.countersigned)
                                            .then(|| problem(None, "the newest checkpoint is not countersigned".into()))
                                    }
                                    Ok(cp) => Some(problem(
                                        Some(cp.size.min(frontier.size()) + 1),
                                        format!("the signed checkpoint covers {} records with another root", cp.size),
                                    )),
                                    Err(e) => Some(problem(None, format!("the newest checkpoint: {e}"))),
                                }
                            }
                        }
                    }
                }
            };
        }
        if let Some(p) = first_problem {
            report.problems.push(p);
        }
        report.records += entry.records;
        report.writers.push(entry);
    }
    verify_rows(store, &mut ring, &server_writer, &mut report).await?;
    verify_decision_rows(pool, root, &server_writer, &mut report).await?;
    Ok(report)
}

/// The searchable rows must agree with the records they index: every security event row with
/// its record in the server's log (and every event record with a row), every session with its
/// start record.
async fn verify_rows(
    store: &Store,
    ring: &mut KeyRing<'_>,
    server_writer: &str,
    report: &mut AuditVerifyReport,
) -> Result<(), StoreError> {
    let pool = store;
    let server_problem = |index: Option<u64>, message: String| AuditProblem {
        writer_id: server_writer.to_string(),
        writer_name: "control server".into(),
        index,
        message,
    };
    let rows: Vec<EventRow> = on!(pool, ex => sqlx::query_as(
        "SELECT id, at, actor, device_id, kind, detail, seq, rows_seq, rows_head FROM server_events ORDER BY id",
    )
    .fetch_all(ex).await)?;
    let mut seen = std::collections::HashSet::new();
    for EventRow { id, at, actor, device_id: device, kind, detail, seq, rows_seq, rows_head } in rows {
        let Some(seq) = seq else {
            report.problems.push(server_problem(None, format!("security event {id} ({kind}) has no record")));
            return Ok(());
        };
        let ct: Option<Vec<u8>> = on!(pool, ex => sqlx::query_scalar("SELECT payload FROM audit_records WHERE writer_id = $1 AND seq = $2 AND lost IS NULL")
                .bind(server_writer)
                .bind(seq)
                .fetch_optional(ex).await)?;
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
        let rows = rows_seq.zip(rows_head);
        let expected = event_payload(at, actor.as_deref(), device.as_deref(), &kind, &detail, rows.as_ref());

        let matches = match ct {
            Some(ct) => ring.open(pool, server_writer, seq as u64, &ct).await.map(|p| p == expected.as_bytes()),
            None => Ok(false),
        };
        if matches != Ok(true) {
            report.problems.push(server_problem(
                Some(seq as u64),
                format!("security event {id} ({kind}) differs from record {seq} of the server's log (altered)"),
            ));
            return Ok(());
        }
        seen.insert(seq);
    }
    let records: Vec<i64> = on!(pool, ex => sqlx::query_scalar("SELECT seq FROM audit_records WHERE writer_id = $1 ORDER BY seq")
        .bind(server_writer)
        .fetch_all(ex).await)?;
    if let Some(missing) = records.into_iter().find(|s| !seen.contains(s)) {
        report.problems.push(server_problem(
            Some(missing as u64),
            format!("the security event of record {missing} of the server's log was deleted"),
        ));
        return Ok(());
    }
    let orphans: Vec<(String, String)> = on!(pool, ex => sqlx::query_as(
        "SELECT s.id, s.writer_id FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM audit_records r \
         WHERE r.writer_id = s.writer_id AND r.session_id = s.id AND r.kind = 'session_start')",
    )
    .fetch_all(ex).await)?;
    if let Some((session, writer)) = orphans.into_iter().next() {
        report.problems.push(AuditProblem {
            writer_id: writer,
            writer_name: String::new(),
            index: None,
            message: format!("session {session} is listed but has no start record (added behind the server's back)"),
        });
    }
    verify_session_index(pool, ring, report).await
}

/// A session's index row, as lists and searches show it.
#[derive(sqlx::FromRow)]
struct SessionIndexRow {
    id: String,
    writer_id: String,
    user_name: String,
    target: String,
    login: String,
    grant_id: String,
    command: Option<String>,
    started_at: f64,
    ended_at: Option<f64>,
    exit_status: Option<i64>,
    end_reason: Option<String>,
    kind: String,
}

/// Every session's index row must say what its start and end records say: who, which target
/// and login, under which grant, which command, when, and how it ended. An edited row (a session
/// moved to another user, a command changed, an end rewritten) is named with the field.
async fn verify_session_index(
    pool: &Store,
    ring: &mut KeyRing<'_>,
    report: &mut AuditVerifyReport,
) -> Result<(), StoreError> {
    use portcullis_proto::AuditPayload;
    let sessions: Vec<SessionIndexRow> = on!(pool, ex => sqlx::query_as(
        "SELECT id, writer_id, user_name, target, login, grant_id, command, started_at, ended_at, exit_status, \
         end_reason, kind FROM sessions ORDER BY started_at, id",
    )
    .fetch_all(ex).await)?;
    for row in sessions {
        let records: Vec<(i64, Vec<u8>)> = on!(pool, ex => sqlx::query_as(
            "SELECT seq, payload FROM audit_records WHERE writer_id = $1 AND session_id = $2 \
             AND kind IN ('session_start', 'session_end') AND lost IS NULL ORDER BY seq",
        )
        .bind(&row.writer_id)
        .bind(&row.id)
        .fetch_all(ex).await)?;
        let (mut start, mut end) = (None, None);
        for (seq, ct) in records {
            // A record that does not open is reported by the log check above.
            let Ok(plain) = ring.open(pool, &row.writer_id, seq as u64, &ct).await else { continue };
            match serde_json::from_slice::<AuditPayload>(&plain) {
                Ok(AuditPayload::SessionStart(s)) => start = Some(s),
                Ok(AuditPayload::SessionEnd(e)) => end = Some(e),
                _ => {}
            }
        }
        let Some(start) = start else { continue };
        let kind = if start.channel.is_empty() { "shell".to_string() } else { start.channel.clone() };
        let differs: Option<(&str, String, String)> = [
            ("user", row.user_name.clone(), start.user.clone()),
            ("target", row.target.clone(), start.target.clone()),
            ("login", row.login.clone(), start.login.clone()),
            ("grant", row.grant_id.clone(), start.grant_id.clone()),
            ("command", format!("{:?}", row.command), format!("{:?}", start.command)),
            ("kind", row.kind.clone(), kind),
            ("start", row.started_at.to_string(), start.started_at.to_string()),
            ("end", format!("{:?}", row.ended_at), format!("{:?}", end.as_ref().map(|e| e.ended_at))),
            (
                "exit status",
                format!("{:?}", row.exit_status),
                format!("{:?}", end.as_ref().and_then(|e| e.exit_status).map(i64::from)),
            ),
            ("end reason", format!("{:?}", row.end_reason), format!("{:?}", end.as_ref().map(|e| e.reason.clone()))),
        ]
        .into_iter()
        .find(|(_, listed, recorded)| listed != recorded);
        if let Some((field, listed, recorded)) = differs {
            report.problems.push(AuditProblem {
                writer_id: row.writer_id.clone(),
                writer_name: String::new(),
                index: None,
                message: format!(
                    "session {}'s listed {field} ({}) differs from its records ({}): the index was edited",
                    row.id,
                    portcullis_proto::printable(&listed),
                    portcullis_proto::printable(&recorded)
                ),
            });
        }
    }
    Ok(())
}

/// Every row the server decides with must carry a valid MAC (see [`crate::rows`]): one added or
/// changed behind the server's back is reported here, before anything uses it.
async fn verify_decision_rows(
    pool: &Store,
    root: &SymmetricKey,
    server_writer: &str,
    report: &mut AuditVerifyReport,
) -> Result<(), StoreError> {
    use crate::rows::Row;
    let macs = crate::rows::RowKey::new(root);
    let mut conn = pool.conn().await?;
    let all: Vec<&str> = crate::rows::AUTHENTICATED_TABLES.iter().map(|(table, _)| *table).collect();
    let keys = crate::rows::ledger_keys(&mut conn, &all, "TRUE").await?;
    // The ledger: its chain intact, every anchor the signed log holds still in it, and no row it
    // holds gone from the database.
    let ledger_problem = |message: String| AuditProblem {
        writer_id: server_writer.to_string(),
        writer_name: "control server".into(),
        index: None,
        message,
    };
    if let Some(problem) = macs.ledger_problem(&mut conn).await? {
        report.problems.push(ledger_problem(problem));
    }
    let anchors: Vec<(i64, i64, String)> = on!(conn, ex => sqlx::query_as(
        "SELECT seq, rows_seq, rows_head FROM server_events WHERE rows_seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_all(ex).await)?;
    for (event_seq, ledger_seq, head) in anchors {
        if macs.ledger_chain_at(&mut conn, ledger_seq).await?.as_deref() != Some(head.as_str()) {
            report.problems.push(ledger_problem(format!(
                "the row ledger was cut back or rewritten: record {event_seq} of the server's log anchors \
                 its entry {ledger_seq}, which is gone or differs"
            )));
        }
    }
    let held: Vec<String> = on!(conn, ex => sqlx::query_scalar(
        "SELECT l.row FROM row_ledger l WHERE l.mac IS NOT NULL \
         AND l.seq = (SELECT MAX(seq) FROM row_ledger m WHERE m.row = l.row) ORDER BY l.row",
    )
    .fetch_all(ex).await)?;
    for key in &held {
        if let Some(row) = crate::rows::row_of_ledger_key(key)
            && let Err(e) = macs.check(&mut conn, row).await
            && e.to_string().contains("deleted outside")
        {
            report.problems.push(ledger_problem(e.to_string()));
        }
    }
    for row in keys.iter().filter_map(|key| crate::rows::row_of_ledger_key(key)) {
        if let Err(e) = macs.check(&mut conn, row).await {
            report.problems.push(AuditProblem {
                writer_id: match row {
                    Row::Gateway(id) => id.to_string(),
                    _ => server_writer.to_string(),
                },
                writer_name: "control server".into(),
                index: None,
                message: e.to_string(),
            });
        }
    }
    Ok(())
}
