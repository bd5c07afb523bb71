-- Search over 100,000 secrets without reading every row: a trigram index (pg_trgm, a trusted
-- extension the database's owner may create) over the searchable text (name, folder, tags,
-- description — never a value); `search LIKE '%word%'` uses it for words of three characters
-- or more.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX secrets_search_trigrams ON secrets USING gin (search gin_trgm_ops);
