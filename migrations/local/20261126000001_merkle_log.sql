-- The writer's log becomes a Merkle log (RFC 6962). Forward-only; never edit once landed.

-- Each record's leaf hash (commits to writer, seq, kind, session and the plaintext's SHA-256).
-- NULL only for records written before this migration; the writer fills it in when it opens.
ALTER TABLE records ADD COLUMN leaf BLOB;

-- Checkpoints the writer signed, one per append transaction: the tree's frontier at that size,
-- and, once the server acknowledged it, the note with the server's countersignature.
CREATE TABLE log_checkpoints (
    size        INTEGER PRIMARY KEY,
    note        TEXT NOT NULL,
    frontier    BLOB NOT NULL,
    cosigned    TEXT
);

-- The newest checkpoint of the control server's own log this writer was shown: shown back on
-- every upload, so a server whose own log was cut back or restored is noticed.
CREATE TABLE witnessed (
    log   TEXT PRIMARY KEY,
    size  INTEGER NOT NULL,
    note  TEXT NOT NULL
);
