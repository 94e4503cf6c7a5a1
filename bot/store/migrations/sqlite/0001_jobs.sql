-- The job ledger: one row per job, one event per state change.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    -- The job's own idempotency key; it travels to the providers (PixVerse trace id, Vidu payload).
    key TEXT NOT NULL UNIQUE,
    guild_id INTEGER,
    channel_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    message_id INTEGER,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    model TEXT,
    params TEXT NOT NULL,
    media TEXT NOT NULL,
    task_id TEXT,
    state TEXT NOT NULL CHECK (state IN
        ('queued', 'submitting', 'running', 'succeeded', 'failed', 'rejected', 'cancelled', 'timed_out')),
    progress REAL,
    queue_position INTEGER,
    provider_status TEXT,
    video_url TEXT,
    cover_url TEXT,
    credits REAL,
    error_kind TEXT,
    error_reason TEXT,
    submit_attempts INTEGER NOT NULL DEFAULT 0,
    poll_failures INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    submitted_at TEXT,
    accepted_at TEXT,
    started_at TEXT,
    progress_at TEXT,
    finished_at TEXT,
    not_before TEXT,
    updated_at TEXT NOT NULL,
    delivery TEXT NOT NULL DEFAULT 'pending' CHECK (delivery IN ('pending', 'delivered')),
    delivered_at TEXT
);

CREATE INDEX jobs_unfinished ON jobs (provider, id) WHERE state IN ('queued', 'submitting', 'running');
CREATE INDEX jobs_undelivered ON jobs (id)
    WHERE delivery = 'pending' AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out');
CREATE INDEX jobs_by_user ON jobs (user_id, id);
CREATE INDEX jobs_finished_by_model ON jobs (provider, model, finished_at) WHERE state = 'succeeded';

CREATE TABLE job_events (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);

CREATE INDEX job_events_by_job ON job_events (job_id, id);
