-- Callbacks from the providers. A callback only makes a job's next status check due now; when the job is
-- leased (a check is out), wake_pending keeps the news until the lease is given back, so it is not lost.
-- Jobs are found by their provider's task id. A signed callback's nonce is kept for the skew window, so a
-- replay is refused by whichever process receives it.
ALTER TABLE jobs ADD COLUMN wake_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_task ON jobs (provider, task_id) WHERE task_id IS NOT NULL;

CREATE TABLE callback_nonces (
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (provider, nonce)
);
CREATE INDEX callback_nonces_seen ON callback_nonces (seen_at);
