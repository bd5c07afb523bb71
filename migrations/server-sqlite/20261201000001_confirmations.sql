-- Separation of duties: an account confirmed independently of its creator (a second admin who
-- handed out its enrolment code, or — one-admin installations — its creator after a delay with
-- an alarm). Forward-only; never edit once landed.
CREATE TABLE user_confirmations (
    user_id       TEXT PRIMARY KEY REFERENCES users(id),
    confirmed_by  TEXT NOT NULL REFERENCES users(id),
    via           TEXT NOT NULL,             -- second_admin | delay
    at            INTEGER NOT NULL,
    mac           BLOB
);

-- A gateway serves targets only once an admin other than the one who added it confirmed the
-- key it enrolled with (or, in a one-admin installation, its creator after a delay, with an
-- alarm). Gateways enrolled before confirmations existed are carried over as they are; the
-- server seals those rows in the same start that applies this migration.
CREATE TABLE gateway_confirmations (
    gateway_id       TEXT PRIMARY KEY REFERENCES gateways(id),
    confirmed_by     TEXT REFERENCES users(id),   -- NULL: carried over from before confirmations
    via              TEXT NOT NULL,               -- second_admin | delay | before_confirmations
    sign_public_key  TEXT NOT NULL,               -- hex of the key that was confirmed
    at               INTEGER NOT NULL,
    mac              BLOB
);
INSERT INTO gateway_confirmations (gateway_id, confirmed_by, via, sign_public_key, at)
    SELECT id, NULL, 'before_confirmations', hex(sign_public_key), COALESCE(enrolled_at, created_at)
    FROM gateways WHERE embedded = 0 AND sign_public_key IS NOT NULL AND revoked_at IS NULL;

-- Every session the server let a gateway open: a gateway's SessionStart record is accepted
-- only against one of these (same writer, grant, user, target and login), so a compromised
-- gateway cannot make up sessions for anyone.
CREATE TABLE session_authorizations (
    id             TEXT PRIMARY KEY,
    writer_id      TEXT NOT NULL,
    grant_id       TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    target         TEXT NOT NULL,
    login          TEXT NOT NULL,
    authorized_at  INTEGER NOT NULL,
    mac            BLOB
);
CREATE INDEX session_authorizations_by_grant ON session_authorizations(writer_id, grant_id);
