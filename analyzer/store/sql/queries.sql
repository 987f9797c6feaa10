-- try_lock_video --
-- Session-level lock held on the lock connection for the whole run.
SELECT pg_try_advisory_lock(%(namespace)s, %(video_id)s) AS locked;

-- unlock_video --
SELECT pg_advisory_unlock(%(namespace)s, %(video_id)s) AS unlocked;

-- lock_holder --
-- The session holding a video's lock: its application_name (it names the Batch job), and how many
-- seconds it has been silent: since the running row's last heartbeat, or since the session began
-- when that is later (a run that has just taken the lock has no heartbeat of its own yet).
SELECT a.application_name, a.pid,
       extract(epoch FROM now() - greatest(a.backend_start,
           CASE WHEN va.status = 'running' THEN va.heartbeat_at END))::float8 AS silent_s
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN video_analyses va ON va.video_id = %(video_id)s
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = %(namespace)s AND l.objid = %(video_id)s AND l.objsubid = 2;

-- terminate_backend --
-- Ends a session of this run (the forced exit ends its own lock session, whose open write
-- transaction would otherwise hold the status row); waits up to timeout_ms for it to go.
SELECT pg_terminate_backend(%(pid)s, %(timeout_ms)s) AS terminated;

-- lock_held_by --
-- Whether the given backend still holds the video's lock (checked by the heartbeat).
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND pid = %(pid)s
      AND classid = %(namespace)s AND objid = %(video_id)s AND objsubid = 2
) AS held;

-- get_analysis --
SELECT video_id, run_id, status, input_fingerprint, model_version, batch_job_id
FROM video_analyses WHERE video_id = %(video_id)s;

-- begin_run --
-- Claims the video for this run: a new run_id fences off every earlier run.
INSERT INTO video_analyses AS va (video_id, run_id, status, batch_job_id, batch_attempt, input_key,
                                  input_fingerprint, model_version, heartbeat_at, started_at)
VALUES (%(video_id)s, %(run_id)s, 'running', %(batch_job_id)s, %(batch_attempt)s, %(input_key)s,
        %(fingerprint)s, %(model_version)s, now(), now())
ON CONFLICT (video_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, status = 'running', batch_job_id = EXCLUDED.batch_job_id,
    batch_attempt = EXCLUDED.batch_attempt, input_key = EXCLUDED.input_key,
    input_fingerprint = EXCLUDED.input_fingerprint, model_version = EXCLUDED.model_version,
    heartbeat_at = now(), started_at = now(), finished_at = NULL,
    frames = NULL, faces = NULL, events = NULL, error = NULL;

-- heartbeat --
UPDATE video_analyses SET heartbeat_at = now()
WHERE video_id = %(video_id)s AND run_id = %(run_id)s;

-- fence --
-- Locks the status row and returns its run id: the write goes ahead only if it is still ours.
SELECT run_id FROM video_analyses WHERE video_id = %(video_id)s FOR UPDATE;

-- upsert_event --
INSERT INTO events AS e (video_id, event_key, start_ms, end_ms, best_frame_ms, box_x, box_y, box_w, box_h,
                         det_score, gender, gender_score, age, face_count, model_version, age_low, age_high,
                         person_key)
VALUES (%(video_id)s, %(event_key)s, %(start_ms)s, %(end_ms)s, %(best_frame_ms)s, %(x)s, %(y)s, %(w)s, %(h)s,
        %(det_score)s, %(gender)s, %(gender_score)s, %(age)s, %(face_count)s, %(model_version)s,
        %(age_low)s, %(age_high)s, %(person_key)s)
ON CONFLICT (video_id, event_key) DO UPDATE SET
    start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms, best_frame_ms = EXCLUDED.best_frame_ms,
    box_x = EXCLUDED.box_x, box_y = EXCLUDED.box_y, box_w = EXCLUDED.box_w, box_h = EXCLUDED.box_h,
    det_score = EXCLUDED.det_score, gender = EXCLUDED.gender, gender_score = EXCLUDED.gender_score,
    age = EXCLUDED.age, face_count = EXCLUDED.face_count, model_version = EXCLUDED.model_version,
    age_low = EXCLUDED.age_low, age_high = EXCLUDED.age_high, person_key = EXCLUDED.person_key, updated_at = now();

-- delete_stale_events --
-- Rows of this video that this run did not produce (e.g. from an older model) go.
DELETE FROM events WHERE video_id = %(video_id)s AND NOT (event_key = ANY(%(event_keys)s));

-- finish_run --
-- Ends this run's row as failed or interrupted, only while it is this run's and still running: a
-- final write that committed first (succeeded) is never overwritten, nor another run's row.
UPDATE video_analyses
SET status = %(status)s, finished_at = now(), heartbeat_at = now(),
    frames = NULL, faces = NULL, events = NULL, error = %(error)s, exit_code = %(exit_code)s
WHERE video_id = %(video_id)s AND run_id = %(run_id)s AND status = 'running'
RETURNING status;

-- succeed_run --
-- The last statement of the final write (after the fence): the run succeeded, so the stale
-- sweep's count of resubmissions starts again.
UPDATE video_analyses
SET status = 'succeeded', finished_at = now(), heartbeat_at = now(),
    frames = %(frames)s, faces = %(faces)s, events = %(events)s, error = NULL, exit_code = 0,
    resubmits = 0, resubmitted_at = NULL, given_up_at = NULL
WHERE video_id = %(video_id)s AND run_id = %(run_id)s AND status = 'running';

-- run_status --
-- How this run's row ended; NULL when another run owns the row.
SELECT status FROM video_analyses WHERE video_id = %(video_id)s AND run_id = %(run_id)s;

-- record_end --
-- A run that ended before it began (before begin_run: stopped while waiting for a lock, S3 down,
-- object not found) leaves a row saying so. Only on a session that holds the video's lock, so
-- no live run's row is touched; a succeeded row keeps its analysis (its events stand).
INSERT INTO video_analyses AS va (video_id, run_id, status, batch_job_id, batch_attempt, input_key,
                                  model_version, heartbeat_at, started_at, finished_at, exit_code, error)
VALUES (%(video_id)s, %(run_id)s, %(status)s, %(batch_job_id)s, %(batch_attempt)s, %(input_key)s,
        %(model_version)s, now(), now(), now(), %(exit_code)s, %(error)s)
ON CONFLICT (video_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, status = EXCLUDED.status, batch_job_id = EXCLUDED.batch_job_id,
    batch_attempt = EXCLUDED.batch_attempt, input_key = EXCLUDED.input_key, input_fingerprint = NULL,
    model_version = EXCLUDED.model_version, heartbeat_at = now(), started_at = now(), finished_at = now(),
    frames = NULL, faces = NULL, events = NULL, exit_code = EXCLUDED.exit_code, error = EXCLUDED.error
WHERE va.status <> 'succeeded'
RETURNING status;

-- video_table_exists --
-- The argument is the name exactly as the guard's query writes it (quoted identifiers, so no
-- case folding), resolved through the same search_path.
SELECT to_regclass(%(table)s) IS NOT NULL AS present;

-- stale_runs --
-- Videos whose last run died or gave up, for resubmission: running rows whose heartbeat stopped,
-- interrupted runs (SIGTERM: cancel, Batch timeout, Spot reclaim), and failed runs whose exit
-- code was retryable (Batch ran out of attempts). Oldest first. Left out: videos given up on, and
-- those resubmitted since their last run began, for pending_s (their job may still be queued).
SELECT video_id, run_id, input_key, status, batch_job_id, exit_code, error, resubmits,
       extract(epoch FROM now() - heartbeat_at)::float8 AS silent_s
FROM video_analyses
WHERE ((status = 'running' AND heartbeat_at < now() - make_interval(secs => %(older_than_s)s))
       OR status = 'interrupted'
       OR (status = 'failed' AND exit_code = ANY(%(retryable)s)))
  AND given_up_at IS NULL
  AND NOT coalesce(resubmitted_at >= started_at
                   AND resubmitted_at > now() - make_interval(secs => %(pending_s)s), false)
ORDER BY heartbeat_at, video_id
LIMIT %(limit)s;

-- count_resubmit --
-- One more resubmission of this stale row, unless it changed since it was read (a run began,
-- or another sweep counted it first).
UPDATE video_analyses SET resubmits = resubmits + 1, resubmitted_at = now()
WHERE video_id = %(video_id)s AND run_id = %(run_id)s AND resubmits = %(resubmits)s AND given_up_at IS NULL
RETURNING resubmits;

-- given_up_runs --
-- The videos the sweep gave up on (for an operator: analyzer submit --stale --dry-run lists them).
SELECT video_id, input_key, status, exit_code, error, resubmits, given_up_at
FROM video_analyses WHERE given_up_at IS NOT NULL
ORDER BY given_up_at, video_id
LIMIT %(limit)s;

-- give_up --
-- The sweep stops resubmitting this video (it was resubmitted its maximum number of times);
-- returns a row only the first time, so it is logged and counted once.
UPDATE video_analyses SET given_up_at = now()
WHERE video_id = %(video_id)s AND run_id = %(run_id)s AND given_up_at IS NULL
RETURNING video_id;

-- migration_lock --
-- Concurrent workers starting together apply the migrations one at a time.
SELECT pg_advisory_lock(%(namespace)s, %(key)s);

-- migration_unlock --
SELECT pg_advisory_unlock(%(namespace)s, %(key)s);

-- create_schema_migrations --
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- applied_migrations --
SELECT version FROM schema_migrations;

-- migration_without_statement_timeout --
-- A migration may rewrite a big table; only its lock waits stay bounded (lock_timeout).
SET LOCAL statement_timeout = 0;

-- record_migration --
INSERT INTO schema_migrations (version) VALUES (%(version)s);
