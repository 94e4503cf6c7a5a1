-- Where a job's card lives on Discord and how the bot may reach it (see the SQLite migration of this number).
ALTER TABLE jobs ADD COLUMN application_id BIGINT;
ALTER TABLE jobs ADD COLUMN interaction_token TEXT;
ALTER TABLE jobs ADD COLUMN token_expires_at TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN upload_limit INTEGER;
ALTER TABLE jobs ADD COLUMN parent_id BIGINT REFERENCES jobs (id);
