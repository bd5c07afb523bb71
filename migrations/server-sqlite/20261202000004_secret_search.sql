-- Search over 100,000 secrets without reading every row: a trigram full-text index (FTS5) over
-- the searchable text (name, folder, tags, description — never a value), kept in step with
-- the secrets table by triggers. A word of three characters or more is looked up in it; a
-- shorter one still reads the text (LIKE).
CREATE VIRTUAL TABLE secrets_search USING fts5(search, content = 'secrets', content_rowid = 'rowid', tokenize = 'trigram');
INSERT INTO secrets_search(secrets_search) VALUES ('rebuild');
CREATE TRIGGER secrets_search_insert AFTER INSERT ON secrets BEGIN
    INSERT INTO secrets_search(rowid, search) VALUES (new.rowid, new.search);
END;
CREATE TRIGGER secrets_search_delete AFTER DELETE ON secrets BEGIN
    INSERT INTO secrets_search(secrets_search, rowid, search) VALUES ('delete', old.rowid, old.search);
END;
CREATE TRIGGER secrets_search_update AFTER UPDATE OF search ON secrets BEGIN
    INSERT INTO secrets_search(secrets_search, rowid, search) VALUES ('delete', old.rowid, old.search);
    INSERT INTO secrets_search(rowid, search) VALUES (new.rowid, new.search);
END;
