-- Portcullis server, embedded SQLite store. Forward-only; never edit once landed.

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,          -- 'signing_key' | 'sealing_key' | 'tls_key'
    ciphertext  BLOB NOT NULL              -- AES-256-GCM under the root key, AAD binds the name
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    roles       TEXT NOT NULL,             -- comma-separated
    created_at  INTEGER NOT NULL
);

CREATE TABLE enrolment_codes (
    code_hash   TEXT PRIMARY KEY,          -- SHA-256 of the secret part, hex
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    name            TEXT NOT NULL,
    sign_public_key BLOB NOT NULL,
    seal_public_key BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);

CREATE TABLE targets (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    host                 TEXT NOT NULL,
    port                 INTEGER NOT NULL,
    login                TEXT NOT NULL,
    host_key             TEXT NOT NULL,
    credential_kind      TEXT NOT NULL,
    credential_version   INTEGER NOT NULL,
    credential_data_key  BLOB NOT NULL,     -- data key wrapped by the root key
    credential           BLOB NOT NULL,     -- credential under the data key
    created_by           TEXT NOT NULL REFERENCES users(id),
    created_at           INTEGER NOT NULL
);

CREATE TABLE access_requests (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users(id),
    device_id         TEXT NOT NULL REFERENCES devices(id),
    target_id         TEXT NOT NULL REFERENCES targets(id),
    duration_secs     INTEGER NOT NULL,
    reason            TEXT NOT NULL,
    status            TEXT NOT NULL,        -- pending | approved | denied (expired is derived)
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    decided_by        TEXT REFERENCES users(id),
    decided_at        INTEGER,
    decision_reason   TEXT
);
CREATE INDEX access_requests_status ON access_requests(status, created_at);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL UNIQUE REFERENCES access_requests(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    device_id   TEXT NOT NULL REFERENCES devices(id),
    target_id   TEXT NOT NULL REFERENCES targets(id),
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    signed      TEXT NOT NULL,              -- SignedGrant JSON
    revoked_at  INTEGER
);
CREATE INDEX grants_holder ON grants(user_id, device_id, target_id, not_after);

-- Seen request nonces, for replay protection within the clock-skew window.
CREATE TABLE request_nonces (
    device_id   TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
);

-- Records uploaded by devices, stored encrypted under the root key.
CREATE TABLE audit_records (
    device_id       TEXT NOT NULL REFERENCES devices(id),
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    session_id      TEXT,
    payload_sha256  TEXT NOT NULL,
    payload         BLOB NOT NULL,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX audit_records_session ON audit_records(session_id, device_id, seq);

-- Searchable index of sessions; the content stays in audit_records.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices(id),
    user_name     TEXT NOT NULL,
    target        TEXT NOT NULL,
    login         TEXT NOT NULL,
    grant_id      TEXT NOT NULL,
    command       TEXT,
    started_at    REAL NOT NULL,
    ended_at      REAL,
    exit_status   INTEGER,
    end_reason    TEXT
);

-- Security events the server itself witnessed.
CREATE TABLE server_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT,                       -- user id, when known
    device_id   TEXT,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL               -- JSON, never a secret
);
