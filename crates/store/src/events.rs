//! Security events as rows (the server's own log holds them authenticated; see `audit`).

use crate::{Kind, Store, StoreError, Tx, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

impl Store {
    /// The searchable row of a security event; its record is `seq` of the server's own log
    /// (see `crate::audit::record_event`, the only caller).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_event(
        tx: &mut Tx<'_>,
        now: i64,
        actor: Option<&str>,
        device_id: Option<&str>,
        kind: &str,
        detail: &str,
        seq: Option<u64>,
        rows: Option<&(i64, String)>,
    ) -> Result<(), StoreError> {
        on!(tx, ex => sqlx::query(
            "INSERT INTO server_events (at, actor, device_id, kind, detail, seq, rows_seq, rows_head) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now)
        .bind(actor)
        .bind(device_id)
        .bind(kind)
        .bind(detail)
        .bind(seq.map(|s| s as i64))
        .bind(rows.map(|r| r.0))
        .bind(rows.map(|r| r.1.clone()))
        .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Events matching `q`, newest first; `actor` is resolved to the user name.
    pub async fn events(&self, q: &portcullis_proto::EventQuery) -> Result<Vec<EventRow>, StoreError> {
        // The one dialect difference here: reading a field of the JSON detail.
        let gateway_of_detail = match self.kind() {
            Kind::Sqlite => "json_extract(e.detail, '$.gateway')",
            Kind::Postgres => "(e.detail::jsonb ->> 'gateway')",
        };
        Ok(on!(self, ex => {
            let mut sql = sqlx::QueryBuilder::new(
                "SELECT e.id, e.at, u.name AS actor, e.device_id, e.kind, e.detail FROM server_events e \
                 LEFT JOIN users u ON u.id = e.actor WHERE 1 = 1",
            );
            if let Some(kinds) = &q.kind {
                sql.push(" AND e.kind IN (");
                let mut list = sql.separated(", ");
                for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    list.push_bind(kind.to_string());
                }
                sql.push(")");
            }
            if let Some(actor) = &q.actor {
                sql.push(" AND u.name = ").push_bind(actor.clone());
            }
            if let Some(gateway) = &q.gateway {
                sql.push(" AND ").push(gateway_of_detail).push(" = ").push_bind(gateway.clone());
            }
            if let Some(since) = q.since {
                sql.push(" AND e.at >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                sql.push(" AND e.at <= ").push_bind(until);
            }
            if let Some(before) = q.before {
                sql.push(" AND e.id < ").push_bind(before);
            }
            let limit = q.limit.unwrap_or(100).clamp(1, portcullis_proto::MAX_EVENTS_PAGE);
            sql.push(" ORDER BY e.id DESC LIMIT ").push_bind(i64::from(limit));
            sql.build_query_as().fetch_all(ex).await
        })?)
    }
}
