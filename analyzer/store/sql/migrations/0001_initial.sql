-- The analysis-status table (one row per video) and the events table (one row per appearance).

CREATE TABLE IF NOT EXISTS video_analyses (
    video_id        bigint PRIMARY KEY CHECK (video_id > 0),
    run_id          uuid NOT NULL,
    status          text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'skipped')),
    batch_job_id    text,
    batch_attempt   integer,
    input_key       text NOT NULL,
    input_fingerprint text,
    model_version   text NOT NULL,
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    frames          integer,
    faces           integer,
    events          integer,
    error           text
);

CREATE TABLE IF NOT EXISTS events (
    id              bigserial PRIMARY KEY,
    video_id        bigint NOT NULL CHECK (video_id > 0),
    event_key       text NOT NULL,
    start_ms        integer NOT NULL CHECK (start_ms >= 0),
    end_ms          integer NOT NULL CHECK (end_ms >= start_ms),
    best_frame_ms   integer NOT NULL CHECK (best_frame_ms BETWEEN start_ms AND end_ms),
    box_x           integer NOT NULL CHECK (box_x >= 0),
    box_y           integer NOT NULL CHECK (box_y >= 0),
    box_w           integer NOT NULL CHECK (box_w > 0),
    box_h           integer NOT NULL CHECK (box_h > 0),
    det_score       real NOT NULL CHECK (det_score BETWEEN 0 AND 1),
    gender          text CHECK (gender IN ('male', 'female')),
    gender_score    real CHECK (gender_score BETWEEN 0 AND 100),
    age             integer CHECK (age >= 0),
    face_count      integer NOT NULL CHECK (face_count > 0),
    model_version   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (video_id, event_key),
    -- A gender is stored with its confidence or not at all: NULL means "could not judge".
    CHECK ((gender IS NULL) = (gender_score IS NULL))
);
