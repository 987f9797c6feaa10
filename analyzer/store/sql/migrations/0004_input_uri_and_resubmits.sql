-- Issue 19. `input_key` now holds exactly what a run read: the full s3://bucket/key URI of an S3
-- input (the bucket included, so a resubmission reads the same object), or a local path. Rows
-- written before this migration keep what they held (a bare key read from the job's default
-- bucket, a URI, or a path): nothing is rewritten, since the bucket of a bare key is not known here.
--
-- How often the stale sweep (analyzer/fleet/sweep.py) resubmitted the video since its last success,
-- when it last did, and when it gave up on it (logged and counted once); a success resets all three.

ALTER TABLE video_analyses
    ADD COLUMN IF NOT EXISTS resubmits      integer NOT NULL DEFAULT 0 CHECK (resubmits >= 0),
    ADD COLUMN IF NOT EXISTS resubmitted_at timestamptz,
    ADD COLUMN IF NOT EXISTS given_up_at    timestamptz;

COMMENT ON COLUMN video_analyses.input_key IS
    'what the run read: s3://bucket/key, or a local path (rows before migration 0004: a bare key of the job''s default bucket)';
