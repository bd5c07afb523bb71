-- Requests and grants for vault secrets: a request names a target (SSH access) or a secret
-- (`checkout` or `use`), never both.
ALTER TABLE access_requests ALTER COLUMN target_id DROP NOT NULL;
ALTER TABLE access_requests ADD COLUMN secret_id TEXT REFERENCES secrets(id);
ALTER TABLE access_requests ADD COLUMN access TEXT NOT NULL DEFAULT 'ssh';   -- ssh | checkout | use
ALTER TABLE access_requests ADD CONSTRAINT access_requests_one_resource
    CHECK ((target_id IS NULL) <> (secret_id IS NULL));
ALTER TABLE access_requests ADD CONSTRAINT access_requests_access_fits
    CHECK ((access = 'ssh') = (target_id IS NOT NULL));

ALTER TABLE grants ALTER COLUMN target_id DROP NOT NULL;
ALTER TABLE grants ADD COLUMN secret_id TEXT REFERENCES secrets(id);
ALTER TABLE grants ADD COLUMN access TEXT NOT NULL DEFAULT 'ssh';
ALTER TABLE grants ADD CONSTRAINT grants_one_resource CHECK ((target_id IS NULL) <> (secret_id IS NULL));
ALTER TABLE grants ADD CONSTRAINT grants_access_fits CHECK ((access = 'ssh') = (target_id IS NOT NULL));
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
    version        BIGINT NOT NULL,
    checked_out_at BIGINT NOT NULL,
    until          BIGINT NOT NULL,
    checked_in_at  BIGINT,
    ended_by       TEXT,                       -- checkin | grant_ended | revoked
    mac            BYTEA
);
CREATE INDEX secret_checkouts_open ON secret_checkouts(secret_id, checked_in_at);
