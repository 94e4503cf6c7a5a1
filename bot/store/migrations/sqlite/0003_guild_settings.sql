-- What each server's admins decided; a missing row or a NULL column means "the environment's default".
CREATE TABLE guild_settings (
    guild_id INTEGER PRIMARY KEY,
    disabled_providers TEXT NOT NULL DEFAULT '[]',
    allowed_channels TEXT NOT NULL DEFAULT '[]',
    max_active_per_user INTEGER,
    max_jobs_per_user_per_day INTEGER,
    max_jobs_per_guild_per_day INTEGER,
    log_channel_id INTEGER,
    allow_dm INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL,
    updated_by INTEGER
);

CREATE INDEX jobs_by_guild_day ON jobs (guild_id, created_at);
CREATE INDEX jobs_by_user_day ON jobs (user_id, created_at);
