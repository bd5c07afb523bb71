-- Portcullis client (one device), local SQLite. Forward-only; never edit once landed.

-- Device private keys, under the local key. AAD binds the name.
CREATE TABLE device_secrets (
    name        TEXT PRIMARY KEY,          -- 'signing_key' | 'sealing_key'
    ciphertext  BLOB NOT NULL
);

-- The device's audit log: append-only, one sequence per device. The payload is encrypted
-- under the local key with AAD ('records', seq, 1, 'payload'), so rows cannot be swapped.
CREATE TABLE records (
    seq          INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    payload      BLOB NOT NULL,
    uploaded_at  REAL
);
CREATE INDEX records_pending ON records(uploaded_at, seq);
