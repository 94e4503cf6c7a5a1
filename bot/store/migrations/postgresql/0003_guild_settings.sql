-- What each server's admins decided; a missing row or a NULL column means "the environment's default".
CREATE TABLE guild_settings (
    guild_id BIGINT PRIMARY KEY,
    disabled_providers TEXT NOT NULL DEFAULT '[]',
    allowed_channels TEXT NOT NULL DEFAULT '[]',
    max_active_per_user INTEGER,
    max_jobs_per_user_per_day INTEGER,
    max_jobs_per_guild_per_day INTEGER,
    log_channel_id BIGINT,
    allow_dm INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT COLLATE "C" NOT NULL,
    updated_by BIGINT
);

CREATE INDEX jobs_by_guild_day ON jobs (guild_id, created_at);
CREATE INDEX jobs_by_user_day ON jobs (user_id, created_at);
