-- The exit code a run ended with (failed: which one; interrupted: 143), so that an operator can
-- find the runs a retry would fix (`analyzer submit --stale`), and an index for that search.

ALTER TABLE video_analyses ADD COLUMN IF NOT EXISTS exit_code integer;

CREATE INDEX IF NOT EXISTS video_analyses_unfinished
    ON video_analyses (heartbeat_at)
    WHERE status IN ('running', 'interrupted', 'failed');
