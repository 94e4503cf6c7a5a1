-- /status: a provider's last success is one probe of this index instead of a walk through its history (the
-- other figures use jobs_due and jobs_finished_at).
CREATE INDEX jobs_succeeded_by_provider ON jobs (provider, finished_at) WHERE state = 'succeeded';
