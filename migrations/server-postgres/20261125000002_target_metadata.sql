-- In the PostgreSQL store's first schema (20261125000001_initial.sql).
SELECT 1;
