-- The scheduler's truth lives in the job row: when the job is next due, who holds work on it, and how
-- its announcement goes. A pending delivery with a live lease is being announced; one with no next
-- attempt was given up.
ALTER TABLE jobs ADD COLUMN next_check_at TEXT;
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;
-- Lower is served first: a job put back after a passing refusal keeps its place ahead of later ones.
ALTER TABLE jobs ADD COLUMN queue_priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_next_at TEXT;
-- Set when an announcement was first attempted: after a crash the bot looks for it before sending again.
ALTER TABLE jobs ADD COLUMN announce_started_at TEXT;

-- Per provider: a pause after a rate limit, and (on PostgreSQL) the row that serialises claims.
CREATE TABLE provider_state (
    provider TEXT PRIMARY KEY,
    paused_until TEXT
);

UPDATE jobs SET next_check_at = COALESCE(not_before, created_at) WHERE state IN ('queued', 'submitting', 'running');
UPDATE jobs SET delivery_next_at = COALESCE(finished_at, updated_at)
    WHERE delivery = 'pending' AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out');

DROP INDEX jobs_unfinished;
CREATE INDEX jobs_due ON jobs (provider, state, next_check_at) WHERE state IN ('queued', 'submitting', 'running');
CREATE INDEX jobs_active_by_user ON jobs (user_id) WHERE state IN ('queued', 'submitting', 'running');
CREATE INDEX jobs_submitted ON jobs (provider, operation, submitted_at);
DROP INDEX jobs_undelivered;
CREATE INDEX jobs_undelivered ON jobs (delivery_next_at)
    WHERE delivery = 'pending' AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out');
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_token_expiry ON jobs (token_expires_at) WHERE interaction_token IS NOT NULL;
CREATE INDEX job_events_at ON job_events (at);
