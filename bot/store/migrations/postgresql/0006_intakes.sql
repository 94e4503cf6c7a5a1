-- Commands and clicks recorded before they are acknowledged (see the SQLite migration of this number).
CREATE TABLE intakes (
    interaction_id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    guild_id BIGINT,
    channel_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    application_id BIGINT,
    interaction_token TEXT,
    token_expires_at TEXT COLLATE "C",
    upload_limit INTEGER,
    message_id BIGINT,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    params TEXT NOT NULL,
    source_job_id BIGINT,
    attachment_url TEXT,
    attachment_name TEXT,
    attachment_type TEXT,
    attachment_size BIGINT,
    upload TEXT,
    created_at TEXT COLLATE "C" NOT NULL,
    lease_owner TEXT,
    lease_until TEXT COLLATE "C",
    closed_at TEXT COLLATE "C",
    outcome TEXT
);

CREATE INDEX intakes_open ON intakes (created_at) WHERE closed_at IS NULL;
CREATE INDEX intakes_closed ON intakes (closed_at) WHERE closed_at IS NOT NULL;
