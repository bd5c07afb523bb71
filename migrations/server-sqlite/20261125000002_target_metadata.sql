-- Target metadata for browsing (environment, tags, description) and usage (last use).
ALTER TABLE targets ADD COLUMN environment TEXT NOT NULL DEFAULT '';
ALTER TABLE targets ADD COLUMN tags TEXT NOT NULL DEFAULT '';          -- comma-separated
ALTER TABLE targets ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE targets ADD COLUMN last_used_at INTEGER;
ALTER TABLE targets ADD COLUMN last_used_by TEXT REFERENCES users(id);
