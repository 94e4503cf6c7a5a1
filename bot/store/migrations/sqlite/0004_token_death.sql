-- When Discord stopped honouring a job's interaction token (401 Invalid Webhook Token or 404 Unknown
-- Webhook), possibly well before its 15 minutes; from then on the card and the announcement go through
-- the bot token, and the dead token itself is cleared.
ALTER TABLE jobs ADD COLUMN token_dead_at TEXT;
