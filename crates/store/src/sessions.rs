//! Sessions and the records uploaded for them, sealed under their writer's data key.

use crate::{Store, StoreError, Tx, on};
use portcullis_crypto::Aad;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub writer_id: String,
    pub user_name: String,
    pub target: String,
    pub login: String,
    pub grant_id: String,
    pub command: Option<String>,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub exit_status: Option<i64>,
    pub end_reason: Option<String>,
    pub kind: String,
}

/// A record to store: `payload` is sealed under its writer's data key.
pub struct NewRecord {
    pub seq: u64,
    pub kind: String,
    pub session_id: Option<String>,
    pub payload_sha256: String,
    pub payload: Vec<u8>,
    pub leaf: portcullis_tlog::Hash,
    /// Why the payload is missing (the writer sent only the leaf).
    pub lost: Option<String>,
}

/// AAD of an uploaded record at rest on the server.
pub fn record_aad(writer_id: &str, seq: u64) -> Aad {
    Aad::for_field("audit_records", &format!("{writer_id}/{seq}"), 1, "payload")
}

impl Store {
    /// The leaf of a stored record.
    pub async fn record_leaf(tx: &mut Tx<'_>, writer_id: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT leaf FROM audit_records WHERE writer_id = $1 AND seq = $2")
            .bind(writer_id)
            .bind(seq as i64)
            .fetch_optional(ex).await)?
        .flatten())
    }

    /// Inserts a writer's records, many rows per statement (one round trip to SQLite each).
    pub async fn insert_records(
        tx: &mut Tx<'_>,
        writer_id: &str,
        rows: &[NewRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(200) {
            on!(tx, ex => {
                let mut sql = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_records (writer_id, seq, kind, session_id, payload_sha256, payload, received_at, \
                     leaf, lost) ",
                );
                sql.push_values(chunk, |mut row, r| {
                    row.push_bind(writer_id)
                        .push_bind(r.seq as i64)
                        .push_bind(&r.kind)
                        .push_bind(&r.session_id)
                        .push_bind(&r.payload_sha256)
                        .push_bind(&r.payload)
                        .push_bind(now)
                        .push_bind(&r.leaf.0[..])
                        .push_bind(&r.lost);
                });
                sql.build().execute(ex).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    pub async fn insert_session(tx: &mut Tx<'_>, s: &SessionRow) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO sessions (id, writer_id, user_name, target, login, grant_id, command, started_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&s.id)
        .bind(&s.writer_id)
        .bind(&s.user_name)
        .bind(&s.target)
        .bind(&s.login)
        .bind(&s.grant_id)
        .bind(&s.command)
        .bind(s.started_at)
        .bind(&s.kind)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn end_session(
        tx: &mut Tx<'_>,
        id: &str,
        writer_id: &str,
        ended_at: f64,
        exit_status: Option<u32>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let n = on!(tx, ex => sqlx::query(
            "UPDATE sessions SET ended_at = $1, exit_status = $2, end_reason = $3 WHERE id = $4 AND writer_id = $5 AND ended_at IS NULL",
        )
        .bind(ended_at)
        .bind(exit_status.map(i64::from))
        .bind(reason)
        .bind(id)
        .bind(writer_id)
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Latest first; all of them, or one user's.
    pub async fn sessions(&self, only_user: Option<&str>) -> Result<Vec<SessionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT * FROM sessions WHERE ($1 IS NULL OR user_name = $1) ORDER BY started_at DESC LIMIT 1000",
        )
        .bind(only_user)
        .fetch_all(ex).await)?)
    }

    /// Sessions of a grant the server has not seen end.
    pub async fn open_sessions_of_grant(&self, grant_id: &str) -> Result<u32, StoreError> {
        let n: i64 = on!(self, ex => sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE grant_id = $1 AND ended_at IS NULL")
            .bind(grant_id)
            .fetch_one(ex).await)?;
        Ok(n.max(0) as u32)
    }

    /// Sessions a grant opened, in order.
    pub async fn sessions_of_grant(&self, grant_id: &str) -> Result<Vec<SessionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as("SELECT * FROM sessions WHERE grant_id = $1 ORDER BY started_at")
            .bind(grant_id)
            .fetch_all(ex).await)?)
    }

    /// A session by (writer, id); without a writer, the one that used the id first.
    pub async fn session(&self, id: &str, writer_id: Option<&str>) -> Result<Option<SessionRow>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as(
            "SELECT * FROM sessions WHERE id = $1 AND ($2 IS NULL OR writer_id = $2) ORDER BY rowid LIMIT 1",
        )
        .bind(id)
        .bind(writer_id)
        .fetch_optional(ex).await)?)
    }

    /// The writers, other than `writer_id`, that already hold a session with this id.
    pub async fn session_id_holders(tx: &mut Tx<'_>, id: &str, writer_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            on!(tx, ex => sqlx::query_scalar("SELECT writer_id FROM sessions WHERE id = $1 AND writer_id <> $2 ORDER BY rowid")
            .bind(id)
            .bind(writer_id)
            .fetch_all(ex).await)?,
        )
    }

    /// (seq, encrypted payload) of a session's records, in order.
    pub async fn session_records(&self, writer_id: &str, session_id: &str) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Ok(
            on!(self, ex => sqlx::query_as("SELECT seq, payload FROM audit_records WHERE writer_id = $1 AND session_id = $2 ORDER BY seq")
            .bind(writer_id)
            .bind(session_id)
            .fetch_all(ex).await)?,
        )
    }
}

impl Store {
    /// The user a writer's session ran as.
    pub async fn session_user(
        tx: &mut Tx<'_>,
        writer_id: &str,
        session_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on!(tx, ex => sqlx::query_scalar("SELECT user_name FROM sessions WHERE id = $1 AND writer_id = $2")
            .bind(session_id)
            .bind(writer_id)
            .fetch_optional(ex)
            .await)?)
    }
}
