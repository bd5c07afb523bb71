-- Cedar policies, groups, N-of-M reviews, revocation. Forward-only; never edit once landed.

-- Every policy set ever stored; the highest version is in force.
CREATE TABLE policy_sets (
    version     INTEGER PRIMARY KEY AUTOINCREMENT,
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT REFERENCES users(id)     -- NULL: the built-in default
);

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    created_by  TEXT REFERENCES users(id)
);

CREATE TABLE user_groups (
    user_id     TEXT NOT NULL REFERENCES users(id),
    group_id    TEXT NOT NULL REFERENCES groups(id),
    PRIMARY KEY (user_id, group_id)
);

ALTER TABLE users ADD COLUMN created_by TEXT REFERENCES users(id);
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- Who created a user or changed their roles or groups, and when: separation of duties reads it.
CREATE TABLE user_admin_changes (
    user_id     TEXT NOT NULL REFERENCES users(id),
    actor_id    TEXT NOT NULL REFERENCES users(id),
    at          INTEGER NOT NULL,
    change      TEXT NOT NULL                -- created | roles | groups
);
CREATE INDEX user_admin_changes_user ON user_admin_changes(user_id, actor_id, at);

-- Small server-wide facts (e.g. the standalone owner).
CREATE TABLE server_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- What the policy decided when the request was made.
ALTER TABLE access_requests ADD COLUMN source_ip TEXT;
ALTER TABLE access_requests ADD COLUMN approvals_needed INTEGER NOT NULL DEFAULT 1;
ALTER TABLE access_requests ADD COLUMN approver_groups TEXT NOT NULL DEFAULT '';   -- comma-separated
ALTER TABLE access_requests ADD COLUMN permitted_by TEXT NOT NULL DEFAULT '';      -- policy @ids, comma-separated
ALTER TABLE access_requests ADD COLUMN policy_version INTEGER;
-- A pending request withdrawn, or an approved one whose grant was revoked.
ALTER TABLE access_requests ADD COLUMN revoked_at INTEGER;
ALTER TABLE access_requests ADD COLUMN revoked_by TEXT REFERENCES users(id);
ALTER TABLE access_requests ADD COLUMN revoke_reason TEXT;

-- Each approver's review; one per approver and request.
CREATE TABLE reviews (
    request_id   TEXT NOT NULL REFERENCES access_requests(id),
    approver_id  TEXT NOT NULL REFERENCES users(id),
    device_id    TEXT,
    decision     TEXT NOT NULL,               -- approve | deny
    reason       TEXT,
    at           INTEGER NOT NULL,
    source_ip    TEXT,
    policies     TEXT NOT NULL DEFAULT '',    -- approve policies that permitted it, comma-separated
    step_up      TEXT,                        -- JSON evidence of a WebAuthn assertion, when one was needed
    PRIMARY KEY (request_id, approver_id)
);

-- Reviews of requests decided before reviews existed.
INSERT INTO reviews (request_id, approver_id, decision, reason, at)
    SELECT id, decided_by, CASE status WHEN 'approved' THEN 'approve' ELSE 'deny' END, decision_reason, decided_at
    FROM access_requests WHERE decided_by IS NOT NULL;

ALTER TABLE grants ADD COLUMN revoked_by TEXT REFERENCES users(id);

-- Security keys (WebAuthn credentials) for step-up: public data only.
CREATE TABLE security_keys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id),
    name           TEXT NOT NULL,
    credential_id  TEXT NOT NULL,             -- base64url, as the authenticator names it
    passkey        TEXT NOT NULL,             -- webauthn-rs Passkey JSON (public key, counter)
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    removed_at     INTEGER
);
CREATE INDEX security_keys_user ON security_keys(user_id);

-- Outstanding WebAuthn ceremonies: single use, short-lived, bound to who and what.
CREATE TABLE webauthn_challenges (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    purpose     TEXT NOT NULL,                -- register | approve
    request_id  TEXT,                         -- approve: the request
    decision    TEXT,                         -- approve: approve | deny
    key_name    TEXT,                         -- register: the name asked for
    state       TEXT NOT NULL,                -- webauthn-rs ceremony state JSON
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
