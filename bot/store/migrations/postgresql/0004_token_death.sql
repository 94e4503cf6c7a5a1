-- When Discord stopped honouring a job's interaction token (see the SQLite migration of this number).
ALTER TABLE jobs ADD COLUMN token_dead_at TEXT COLLATE "C";
