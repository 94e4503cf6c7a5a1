-- The card's expected run time is the median of the recent succeeded jobs of the same cost class: one probe of
-- this index (jobs_cost_history holds only the jobs that reported a cost). The fallback to the provider and model
-- uses jobs_finished_by_model.
CREATE INDEX jobs_run_times_by_class ON jobs (cost_class, finished_at) WHERE state = 'succeeded';
