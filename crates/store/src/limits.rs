//! Failure windows shared by every replica (the policy — limits, sparse recording — is the
//! server's `limits`).

use crate::{Store, StoreError, on};

impl Store {
    /// Counts one more failure of `source` at `what`: its window's (failures, start), a new
    /// window when the last one is `window_secs` old. One statement: replicas counting at once
    /// each get their own count. Every 64th count also deletes expired windows and, past
    /// `max_sources`, the oldest.
    pub async fn count_failure(
        &self,
        what: &str,
        source: &str,
        now: i64,
        window_secs: i64,
        max_sources: i64,
    ) -> Result<(u64, i64), StoreError> {
        let _turn = self.sqlite_turn().await;
        let (failures, start): (i64, i64) = on!(self, ex => sqlx::query_as(
            "INSERT INTO failure_windows (what, source, start, failures) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (what, source) DO UPDATE SET \
             failures = CASE WHEN failure_windows.start <= $3 - $4 THEN 1 ELSE failure_windows.failures + 1 END, \
             start = CASE WHEN failure_windows.start <= $3 - $4 THEN $3 ELSE failure_windows.start END \
             RETURNING failures, start",
        )
        .bind(what)
        .bind(source)
        .bind(now)
        .bind(window_secs)
        .fetch_one(ex)
        .await)?;
        if failures % 64 == 1 {
            on!(self, ex => sqlx::query(
                "DELETE FROM failure_windows WHERE start <= $1 OR start < \
                 (SELECT start FROM failure_windows ORDER BY start DESC LIMIT 1 OFFSET $2)",
            )
            .bind(now - window_secs)
            .bind(max_sources)
            .execute(ex)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok((failures.max(0) as u64, start))
    }

    /// `source`'s current window at `what`: (failures, start).
    pub async fn failure_window(&self, what: &str, source: &str) -> Result<Option<(u64, i64)>, StoreError> {
        let found: Option<(i64, i64)> = on!(self, ex => sqlx::query_as("SELECT failures, start FROM failure_windows WHERE what = $1 AND source = $2")
                .bind(what)
                .bind(source)
                .fetch_optional(ex)
                .await)?;
        Ok(found.map(|(f, s)| (f.max(0) as u64, s)))
    }
}
