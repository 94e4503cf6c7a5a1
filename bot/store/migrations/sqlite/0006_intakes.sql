-- A command or click that will create a job is written here before Discord hears that the bot is
-- thinking, so that a crash between the acknowledgement and the job loses nothing. The row goes in the
-- transaction that writes its job; one that cannot become a job is closed with an outcome and kept as
-- the record of what happened, until the job retention removes it.
CREATE TABLE intakes (
    interaction_id INTEGER PRIMARY KEY,
    -- 'command' (an attachment to read), or the click that asked: 'retry', 'reroll', 'stylize'.
    kind TEXT NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    application_id INTEGER,
    interaction_token TEXT,
    token_expires_at TEXT,
    upload_limit INTEGER,
    -- The deferred response, which becomes the job's card.
    message_id INTEGER,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    params TEXT NOT NULL,
    source_job_id INTEGER,
    attachment_url TEXT,
    attachment_name TEXT,
    attachment_type TEXT,
    attachment_size INTEGER,
    -- The attachment's bytes, kept in the inputs folder under this name once read.
    upload TEXT,
    created_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    closed_at TEXT,
    outcome TEXT
);

CREATE INDEX intakes_open ON intakes (created_at) WHERE closed_at IS NULL;
CREATE INDEX intakes_closed ON intakes (closed_at) WHERE closed_at IS NOT NULL;
