-- Where a job's card lives on Discord and how the bot may reach it.
ALTER TABLE jobs ADD COLUMN application_id INTEGER;
-- The interaction token lets the bot edit the card and follow up for 15 minutes without touching the
-- channel's rate limits; after that it edits with the bot token.
ALTER TABLE jobs ADD COLUMN interaction_token TEXT;
ALTER TABLE jobs ADD COLUMN token_expires_at TEXT;
ALTER TABLE jobs ADD COLUMN upload_limit INTEGER;
-- The job this one was made from (Retry, Reroll, Stylize).
ALTER TABLE jobs ADD COLUMN parent_id INTEGER REFERENCES jobs (id);
