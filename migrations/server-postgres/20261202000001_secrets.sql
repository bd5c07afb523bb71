-- Typed secrets (crates/vault): one row per secret with its metadata and public facts, one row
-- per version with its envelope (data key wrapped by the root key; the value's associated data
-- names the secret, the version and the kind). A version past the number kept loses its
-- envelope (destroyed_at) and keeps its history. `search` is the lowercased name, folder, tags
-- and description: what search reads, never a value.
CREATE TABLE secrets (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    environment      TEXT NOT NULL DEFAULT '',
    folder           TEXT NOT NULL DEFAULT '',
    tags             TEXT NOT NULL DEFAULT '',      -- ",a,b," (so one tag is LIKE '%,a,%')
    description      TEXT NOT NULL DEFAULT '',
    owner            TEXT NOT NULL DEFAULT '',
    revealable       BIGINT NOT NULL,
    expires_at       BIGINT,                        -- set by the admin; otherwise the value's own
    facts            TEXT NOT NULL,                 -- JSON (vault::Facts) of the current version
    current_version  BIGINT NOT NULL,
    versions_kept    BIGINT NOT NULL,
    search           TEXT NOT NULL,
    created_by       TEXT NOT NULL REFERENCES users(id),
    created_at       BIGINT NOT NULL,
    updated_by       TEXT NOT NULL REFERENCES users(id),
    updated_at       BIGINT NOT NULL,
    removed_at       BIGINT,
    removed_by       TEXT REFERENCES users(id),
    mac              BYTEA
);
CREATE INDEX secrets_environment ON secrets(environment, name);
CREATE INDEX secrets_folder ON secrets(folder, name);
CREATE INDEX secrets_kind ON secrets(kind, name);
CREATE INDEX secrets_expires ON secrets(expires_at);

CREATE TABLE secret_versions (
    secret_id      TEXT NOT NULL REFERENCES secrets(id),
    version        BIGINT NOT NULL,
    data_key       BYTEA,
    ciphertext     BYTEA,
    facts          TEXT NOT NULL,
    created_by     TEXT NOT NULL REFERENCES users(id),
    created_at     BIGINT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    restored_from  BIGINT,
    destroyed_at   BIGINT,
    PRIMARY KEY (secret_id, version)
);
