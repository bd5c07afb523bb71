-- Every seal of an authenticated row, chained (each entry's `chain` is a MAC over the previous
-- one's, the row and its new MAC): the newest MAC of each row, so an older sealed row copied
-- back, or a row deleted, is caught. Each security event records the ledger's head at that
-- moment in the server's signed log, so the ledger cannot be rolled back either.
CREATE TABLE row_ledger (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    row    TEXT NOT NULL,
    mac    BLOB,                 -- NULL: the row was deleted by the server
    chain  BLOB NOT NULL
);
CREATE INDEX row_ledger_row ON row_ledger(row, seq);
ALTER TABLE server_events ADD COLUMN rows_seq INTEGER;
ALTER TABLE server_events ADD COLUMN rows_head TEXT;
-- Separation-of-duty changes (a deleted one would lift a 24-hour bar) and server settings (the
-- standalone owner, when session checks began) are ledger rows too.
ALTER TABLE user_admin_changes ADD COLUMN mac BLOB;
ALTER TABLE server_settings ADD COLUMN mac BLOB;
