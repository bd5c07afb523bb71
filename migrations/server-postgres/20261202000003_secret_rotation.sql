-- A password secret bound to an SSH target is that target's credential: the gateway brokers
-- the target with the secret's current version, and a check-in rotates it on the target. At
-- most one secret per target.
ALTER TABLE secrets ADD COLUMN target_id TEXT REFERENCES targets(id);
CREATE UNIQUE INDEX secrets_by_target ON secrets(target_id) WHERE target_id IS NOT NULL;

-- One rotation of a bound secret, carried out by the target's gateway. The candidate is the
-- new value, sealed as the next version (its envelope); it becomes a version only when the
-- gateway has set it on the target and logged in with it. It is destroyed when the target
-- surely kept the old value, kept when the target may hold the new one (an admin recovers it).
CREATE TABLE secret_rotations (
    id             TEXT PRIMARY KEY,
    secret_id      TEXT NOT NULL REFERENCES secrets(id),
    seq            BIGINT NOT NULL,         -- the secret's rotations in order (1, 2, ...)
    target_id      TEXT NOT NULL REFERENCES targets(id),
    from_version   BIGINT NOT NULL,
    data_key       BYTEA,
    ciphertext     BYTEA,
    reason         TEXT NOT NULL,           -- checkin | revoked | grant_ended | admin
    state          TEXT NOT NULL,           -- pending | rotated | failed
    stage          TEXT,                    -- where it failed: login | change | verify | commit
    detail         TEXT,
    requested_by   TEXT NOT NULL REFERENCES users(id),   -- whose check-in (or admin) started it
    created_at     BIGINT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    finished_at    BIGINT,
    version        BIGINT,                  -- the version it made
    mac            BYTEA
);
CREATE INDEX secret_rotations_pending ON secret_rotations(state, target_id);
-- One pending rotation per secret, whichever replica started it.
CREATE UNIQUE INDEX secret_rotations_one_pending ON secret_rotations(secret_id) WHERE state = 'pending';
CREATE UNIQUE INDEX secret_rotations_by_secret ON secret_rotations(secret_id, seq);
