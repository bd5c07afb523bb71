//! The live-event outbox: the table every replica's live streams read (see the migration
//! `live_events`). Publishing appends a row under the write lock — in the transaction of the
//! change it tells of, where there is one — (so the order of `seq` is the
//! order in which rows become visible, and a reader that saw `seq` never misses a smaller one);
//! a replica reads what is newer than the last row it saw.

use crate::{Backend, Store, StoreError, Tx, on};

/// The PostgreSQL channel that wakes replicas when an event is published.
const CHANNEL: &str = "portcullis_live";

/// How long published events are kept for clients that reconnect.
const KEEP_SECS: i64 = 3600;

impl Store {
    /// Appends an event (JSON) in a transaction of its own; its sequence number.
    pub async fn publish_live(&self, payload: &str, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let seq = Self::publish_live_in(&mut tx, payload, now).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Appends an event (JSON) to `tx`: it is published if and when `tx` commits — with the
    /// change it tells of, never without it (a transactional outbox).
    pub async fn publish_live_in(tx: &mut Tx<'_>, payload: &str, now: i64) -> Result<i64, StoreError> {
        let seq: i64 = on!(tx, ex => sqlx::query_scalar("INSERT INTO live_events (at, payload) VALUES ($1, $2) RETURNING seq")
            .bind(now)
            .bind(payload)
            .fetch_one(ex)
            .await)?;
        if seq % 256 == 0 {
            on!(tx, ex => sqlx::query("DELETE FROM live_events WHERE at < $1").bind(now - KEEP_SECS).execute(ex).await.map(|r| r.rows_affected()))?;
        }
        if let Backend::Postgres(ex) = tx.db() {
            // Delivered when the transaction commits; a hint only (the table is the truth).
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(seq.to_string()).execute(ex).await?;
        }
        Ok(seq)
    }

    /// Events after `after`, oldest first (at most `limit`).
    pub async fn live_since(&self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(on!(self, ex => sqlx::query_as("SELECT seq, payload FROM live_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(ex)
            .await)?)
    }

    /// The newest event's sequence number (0 for none).
    pub async fn live_head(&self) -> Result<i64, StoreError> {
        let head: Option<i64> =
            on!(self, ex => sqlx::query_scalar("SELECT MAX(seq) FROM live_events").fetch_one(ex).await)?;
        Ok(head.unwrap_or(0))
    }

    /// The oldest event kept (0 for none): a client that last saw an older one missed events.
    pub async fn live_oldest(&self) -> Result<i64, StoreError> {
        let oldest: Option<i64> =
            on!(self, ex => sqlx::query_scalar("SELECT MIN(seq) FROM live_events").fetch_one(ex).await)?;
        Ok(oldest.unwrap_or(0))
    }

    /// A wake-up source for new events: PostgreSQL's notifications (none on SQLite, where
    /// readers poll).
    pub async fn live_wakeups(&self) -> Result<Option<LiveWakeups>, StoreError> {
        match &self.pool {
            crate::backend::Pool::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(CHANNEL).await?;
                Ok(Some(LiveWakeups(listener)))
            }
            _ => Ok(None),
        }
    }
}

/// Notifications that events were published (PostgreSQL).
pub struct LiveWakeups(sqlx::postgres::PgListener);

impl LiveWakeups {
    /// Returns when an event may have been published: a notification arrived, or the listener
    /// lost its connection and reconnected (notifications sent meanwhile are lost, so the
    /// caller reads the table again either way).
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.0.try_recv().await?;
        Ok(())
    }
}
