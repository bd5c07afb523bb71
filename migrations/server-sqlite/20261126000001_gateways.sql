-- Gateways broker every session; user certificates; grants bound to what was approved.
-- Forward-only; never edit once landed.

-- Where brokered sessions run: 'embedded' (inside the server process) or an enrolled gateway
-- process near the targets. A remote gateway's keys are public halves only.
CREATE TABLE gateways (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    embedded         INTEGER NOT NULL DEFAULT 0,
    sign_public_key  BLOB,                  -- Ed25519: signs its API calls (NULL until enrolled)
    seal_public_key  BLOB,                  -- X25519: credentials are sealed to it per session
    host_key         TEXT,                  -- its SSH host key (OpenSSH line), pinned by clients
    address          TEXT,                  -- host:port users connect to, as it last reported
    created_at       INTEGER NOT NULL,
    created_by       TEXT REFERENCES users(id),
    enrolled_at      INTEGER,
    last_contact_at  INTEGER,
    backlog          INTEGER NOT NULL DEFAULT 0,
    revoked_at       INTEGER
);

CREATE TABLE gateway_enrolment_codes (
    code_hash   TEXT PRIMARY KEY,
    gateway_id  TEXT NOT NULL REFERENCES gateways(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

-- NULL: the embedded gateway.
ALTER TABLE targets ADD COLUMN gateway_id TEXT REFERENCES gateways(id);

-- Why a grant stopped counting early (e.g. target_changed).
ALTER TABLE grants ADD COLUMN revoke_reason TEXT;

-- User certificates the user CA signed: one per ephemeral key and grant.
CREATE TABLE user_certificates (
    serial           INTEGER PRIMARY KEY,
    grant_id         TEXT NOT NULL REFERENCES grants(id),
    key_fingerprint  TEXT NOT NULL,
    issued_at        INTEGER NOT NULL,
    valid_before     INTEGER NOT NULL
);
CREATE INDEX user_certificates_grant ON user_certificates(grant_id);

-- Records are written by gateways now (devices before): the writer is no longer a device row.
CREATE TABLE audit_records_v2 (
    writer_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    session_id      TEXT,
    payload_sha256  TEXT NOT NULL,
    payload         BLOB NOT NULL,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (writer_id, seq)
);
INSERT INTO audit_records_v2 SELECT device_id, seq, kind, session_id, payload_sha256, payload, received_at
    FROM audit_records;
DROP TABLE audit_records;
ALTER TABLE audit_records_v2 RENAME TO audit_records;
CREATE INDEX audit_records_session ON audit_records(session_id, writer_id, seq);

CREATE TABLE sessions_v2 (
    id            TEXT PRIMARY KEY,
    writer_id     TEXT NOT NULL,            -- the gateway (or, before gateways, the device)
    user_name     TEXT NOT NULL,
    target        TEXT NOT NULL,
    login         TEXT NOT NULL,
    grant_id      TEXT NOT NULL,
    command       TEXT,
    started_at    REAL NOT NULL,
    ended_at      REAL,
    exit_status   INTEGER,
    end_reason    TEXT,
    kind          TEXT NOT NULL DEFAULT 'shell'
);
INSERT INTO sessions_v2 (id, writer_id, user_name, target, login, grant_id, command, started_at, ended_at,
        exit_status, end_reason, kind)
    SELECT id, device_id, user_name, target, login, grant_id, command, started_at, ended_at, exit_status,
        end_reason, CASE WHEN command IS NULL THEN 'shell' ELSE 'exec' END
    FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v2 RENAME TO sessions;
CREATE INDEX sessions_started ON sessions(started_at);
