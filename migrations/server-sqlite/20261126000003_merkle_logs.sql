-- Tamper-evident audit: a Merkle log per writer, data keys per writer and epoch, the server's
-- own events as records of its own log. Forward-only; never edit once landed.

-- The record's RFC 6962 leaf hash; `lost` says why the payload is missing (the writer could no
-- longer read it and sent only the leaf). Rows from before this migration get their leaf (and
-- are re-encrypted under their writer's data key) when the server first opens.
ALTER TABLE audit_records ADD COLUMN leaf BLOB;
ALTER TABLE audit_records ADD COLUMN lost TEXT;

-- Each writer's log as the server verified it.
CREATE TABLE audit_logs (
    writer_id   TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    frontier    BLOB NOT NULL,
    checkpoint  TEXT,               -- newest checkpoint: writer-signed, server-countersigned
    updated_at  INTEGER NOT NULL,
    refused_index   INTEGER,        -- its uploads are refused from this record (fork, rollback, ...)
    refused_reason  TEXT            --   and why; cleared when an upload continues the log again
);

-- Every checkpoint accepted from a gateway (a second one of the same size is a fork).
CREATE TABLE audit_checkpoints (
    writer_id   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (writer_id, size)
);

-- Records are sealed under a data key per writer and epoch (2^28 records), wrapped by the root
-- key with AAD binding (writer, epoch).
CREATE TABLE audit_data_keys (
    writer_id   TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (writer_id, epoch)
);

-- The server's own events are records of its own log; the searchable row names its record.
ALTER TABLE server_events ADD COLUMN seq INTEGER;
CREATE INDEX server_events_kind ON server_events(kind, at);

-- Rows the server decides with carry a MAC under a key derived from the root key: a row added
-- or changed behind the server's back is refused. NULL only until a data directory from
-- before this migration is first opened (then every row is sealed once).
ALTER TABLE users ADD COLUMN mac BLOB;
ALTER TABLE devices ADD COLUMN mac BLOB;
ALTER TABLE gateways ADD COLUMN mac BLOB;
ALTER TABLE policy_sets ADD COLUMN mac BLOB;
ALTER TABLE security_keys ADD COLUMN mac BLOB;
