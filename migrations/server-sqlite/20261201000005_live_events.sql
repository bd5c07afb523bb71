-- Live events (request created, approved, revoked; a user's streams closed) go through this
-- table, so every replica's live streams see every replica's events: each replica reads what
-- is new after the last one it saw (on PostgreSQL, NOTIFY only wakes it up). Rows are kept an
-- hour, for clients that reconnect with the last event they saw.
CREATE TABLE live_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    payload  TEXT NOT NULL          -- JSON: the event and whom it concerns; never a secret
);
