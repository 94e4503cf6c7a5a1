-- What a job is expected to cost, from the jobs like it that came before, and each server's credit budgets.
-- A job's cost class names what its price depends on (provider, operation, model, duration, resolution);
-- the estimate is the median cost of the recent succeeded jobs of its class.
ALTER TABLE jobs ADD COLUMN cost_class TEXT;
ALTER TABLE jobs ADD COLUMN estimated_credits REAL;
CREATE INDEX jobs_cost_history ON jobs (cost_class, finished_at) WHERE state = 'succeeded' AND credits IS NOT NULL;

ALTER TABLE guild_settings ADD COLUMN credits_per_day INTEGER;
ALTER TABLE guild_settings ADD COLUMN credits_per_month INTEGER;
