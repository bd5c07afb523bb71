-- Requests and grants for vault secrets: a request names a target (SSH access) or a secret
-- (`checkout` or `use`), never both. SQLite cannot drop NOT NULL, and a migration runs in a
-- transaction (where foreign keys cannot be switched off), so both tables are rebuilt under
-- their own names: their rows are stashed, the tables dropped and created anew, the rows put
-- back (rowids kept). The rows that reference them are orphaned only in between: foreign keys
-- are deferred to the commit, by which every one of them has its row again.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE stash_access_requests AS SELECT rowid AS stash_rowid, * FROM access_requests;
CREATE TABLE stash_grants AS SELECT rowid AS stash_rowid, * FROM grants;
DROP TABLE grants;
DROP TABLE access_requests;

CREATE TABLE access_requests (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users(id),
    device_id         TEXT NOT NULL REFERENCES devices(id),
    target_id         TEXT REFERENCES targets(id),
    duration_secs     INTEGER NOT NULL,
    reason            TEXT NOT NULL,
    status            TEXT NOT NULL,        -- pending | approved | denied (expired is derived)
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    decided_by        TEXT REFERENCES users(id),
    decided_at        INTEGER,
    decision_reason   TEXT,
    source_ip         TEXT,
    approvals_needed  INTEGER NOT NULL DEFAULT 1,
    approver_groups   TEXT NOT NULL DEFAULT '',
    permitted_by      TEXT NOT NULL DEFAULT '',
    policy_version    INTEGER,
    revoked_at        INTEGER,
    revoked_by        TEXT REFERENCES users(id),
    revoke_reason     TEXT,
    secret_id         TEXT REFERENCES secrets(id),
    access            TEXT NOT NULL DEFAULT 'ssh',   -- ssh | checkout | use
    CHECK ((target_id IS NULL) <> (secret_id IS NULL)),
    CHECK ((access = 'ssh') = (target_id IS NOT NULL))
);
INSERT INTO access_requests (rowid, id, user_id, device_id, target_id, duration_secs, reason, status, created_at,
    expires_at, decided_by, decided_at, decision_reason, source_ip, approvals_needed, approver_groups, permitted_by,
    policy_version, revoked_at, revoked_by, revoke_reason)
SELECT stash_rowid, id, user_id, device_id, target_id, duration_secs, reason, status, created_at,
    expires_at, decided_by, decided_at, decision_reason, source_ip, approvals_needed, approver_groups, permitted_by,
    policy_version, revoked_at, revoked_by, revoke_reason
FROM stash_access_requests;

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL UNIQUE REFERENCES access_requests(id),
    user_id       TEXT NOT NULL REFERENCES users(id),
    device_id     TEXT NOT NULL REFERENCES devices(id),
    target_id     TEXT REFERENCES targets(id),
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    signed        TEXT NOT NULL,              -- SignedGrant JSON
    revoked_at    INTEGER,
    revoke_reason TEXT,
    revoked_by    TEXT REFERENCES users(id),
    mac           BLOB,
    secret_id     TEXT REFERENCES secrets(id),
    access        TEXT NOT NULL DEFAULT 'ssh',
    CHECK ((target_id IS NULL) <> (secret_id IS NULL)),
    CHECK ((access = 'ssh') = (target_id IS NOT NULL))
);
INSERT INTO grants (rowid, id, request_id, user_id, device_id, target_id, not_before, not_after, signed, revoked_at,
    revoke_reason, revoked_by, mac)
SELECT stash_rowid, id, request_id, user_id, device_id, target_id, not_before, not_after, signed, revoked_at,
    revoke_reason, revoked_by, mac
FROM stash_grants;

DROP TABLE stash_grants;
DROP TABLE stash_access_requests;

CREATE INDEX access_requests_status ON access_requests(status, created_at);
CREATE INDEX access_requests_by_user ON access_requests(user_id, target_id, created_at);
CREATE INDEX grants_holder ON grants(user_id, device_id, target_id, not_after);
CREATE INDEX grants_secret_holder ON grants(user_id, device_id, secret_id, not_after);
CREATE INDEX grants_secret ON grants(secret_id, not_after);

-- Check-outs: who holds a secret's value now (one at a time when exclusive), under which grant,
-- and how it ended (checked in, the grant ended, revoked). The value itself is never here.
CREATE TABLE secret_checkouts (
    id             TEXT PRIMARY KEY,
    secret_id      TEXT NOT NULL REFERENCES secrets(id),
    grant_id       TEXT NOT NULL REFERENCES grants(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    device_id      TEXT NOT NULL REFERENCES devices(id),
    version        INTEGER NOT NULL,
    checked_out_at INTEGER NOT NULL,
    until          INTEGER NOT NULL,
    checked_in_at  INTEGER,
    ended_by       TEXT,                       -- checkin | grant_ended | revoked
    mac            BLOB
);
CREATE INDEX secret_checkouts_open ON secret_checkouts(secret_id, checked_in_at);
