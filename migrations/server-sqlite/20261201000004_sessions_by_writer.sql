-- Sessions are keyed by (writer, id): a session id is the gateway's (or device's) own, so one
-- writer's session can never be confused with, ended by or shadowed by another's. A session id
-- that a second writer also uses is stored under that writer and raises an alarm; lookups by id
-- alone answer the writer that used it first.
CREATE TABLE sessions_v3 (
    id            TEXT NOT NULL,
    writer_id     TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    target        TEXT NOT NULL,
    login         TEXT NOT NULL,
    grant_id      TEXT NOT NULL,
    command       TEXT,
    started_at    REAL NOT NULL,
    ended_at      REAL,
    exit_status   INTEGER,
    end_reason    TEXT,
    kind          TEXT NOT NULL DEFAULT 'shell',
    PRIMARY KEY (writer_id, id)
);
INSERT INTO sessions_v3 (id, writer_id, user_name, target, login, grant_id, command, started_at, ended_at,
        exit_status, end_reason, kind)
    SELECT id, writer_id, user_name, target, login, grant_id, command, started_at, ended_at, exit_status,
        end_reason, kind
    FROM sessions ORDER BY rowid;
DROP TABLE sessions;
ALTER TABLE sessions_v3 RENAME TO sessions;
CREATE INDEX sessions_started ON sessions(started_at);
CREATE INDEX sessions_by_id ON sessions(id);
CREATE INDEX sessions_by_grant ON sessions(grant_id);
