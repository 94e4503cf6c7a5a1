-- The scheduler's truth in the job row (see the SQLite migration of this number).
ALTER TABLE jobs ADD COLUMN next_check_at TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN queue_priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_next_at TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN announce_started_at TEXT COLLATE "C";

CREATE TABLE provider_state (
    provider TEXT PRIMARY KEY,
    paused_until TEXT COLLATE "C"
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
