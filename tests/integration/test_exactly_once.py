"""The exactly-once protocol against a real PostgreSQL server, with real worker processes.

The analysis step here is tests.support.worker's small deterministic one; everything around it
(settings, advisory lock, status row, fence, signals, exit codes) is the real worker.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import time
from pathlib import Path

import psycopg
import pytest

from analyzer.errors import ExitCode
from analyzer.store.postgres import LOCK_NAMESPACE
from tests.support import procs
from tests.support.sql import query
from tests.support.worker import expected_event

pytestmark = pytest.mark.integration

VIDEO_ID = 4242
EVENT_COLUMNS = (
    "event_key",
    "start_ms",
    "end_ms",
    "best_frame_ms",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "det_score",
    "gender",
    "gender_score",
    "age",
    "age_low",
    "age_high",
    "face_count",
    "model_version",
)


@pytest.fixture
def video(tmp_path: Path, media_dir: Path) -> Path:
    path = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "short_hamilton_clip.mp4", path)
    return path


def _events(url: str, video_id: int = VIDEO_ID) -> list[tuple]:
    cols = ", ".join(EVENT_COLUMNS)
    return [
        tuple(r.values())
        for r in query(url, f"SELECT {cols} FROM events WHERE video_id = %s ORDER BY event_key", video_id)
    ]


def _status(url: str, video_id: int = VIDEO_ID) -> dict | None:
    rows = query(url, "SELECT * FROM video_analyses WHERE video_id = %s", video_id)
    return rows[0] if rows else None


def _status_is(url: str, status: str):
    def check():
        try:
            row = _status(url)
        except psycopg.errors.UndefinedTable:
            return None
        return row if row and row["status"] == status else None

    return check


def _lock_is_free(url: str, video_id: int = VIDEO_ID) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        free = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, video_id)).fetchone()[0]
        if free:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, video_id))
        return free


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _args(video: Path, *extra: str) -> list[str]:
    return ["run", str(video), "--video-id", str(VIDEO_ID), *extra]


def test_twenty_concurrent_runs_analyse_once(database_url, pg_server, video, tmp_path):
    env = procs.worker_env(DATABASE_URL=database_url, TEST_ANALYSIS_STEPS="10", TEST_ANALYSIS_PAUSE="0.2")
    workers = [procs.start(_args(video), env, log_dir=tmp_path) for _ in range(20)]
    results = [procs.wait_rusage(w) for w in workers]

    assert [r.returncode for r in results] == [0] * 20
    actions = [[line.get("action") for line in _json_lines(r.stderr)] for r in results]
    analysed = [r for r, a in zip(results, actions) if "start" in a]
    assert len(analysed) == 1, [a for a in actions]
    skipped = [r for r, a in zip(results, actions) if "start" not in a]
    assert all({"duplicate_skipped", "already_done"} & set(a) for a in actions if "start" not in a)
    assert max(r.cpu_s for r in skipped) < 1.0, sorted(r.cpu_s for r in skipped)
    duplicate_lines = [
        line for r in skipped for line in _json_lines(r.stderr) if line.get("action") == "duplicate_skipped"
    ]
    assert duplicate_lines and all("analyzer:job=" in line["message"] for line in duplicate_lines)

    clean_url = pg_server.create_database()
    assert procs.run(_args(video), procs.worker_env(DATABASE_URL=clean_url)).returncode == 0
    rows = _events(database_url)
    assert rows == _events(clean_url)
    digest = hashlib.sha256(video.read_bytes()).digest()
    assert [r[0] for r in rows] == sorted(expected_event(digest, i).event_key for i in range(4))
    assert _status(database_url)["status"] == "succeeded"


def test_rerun_is_skipped_and_force_reanalyses(database_url, video):
    env = procs.worker_env(DATABASE_URL=database_url, AWS_BATCH_JOB_ID="job-1", AWS_BATCH_JOB_ATTEMPT="1")
    assert procs.run(_args(video), env).returncode == 0
    first, rows = _status(database_url), _events(database_url)
    assert first["status"] == "succeeded" and first["batch_job_id"] == "job-1" and first["events"] == 4

    again = procs.run(_args(video), env)
    assert again.returncode == 0
    assert "already_done" in [line.get("action") for line in _json_lines(again.stderr)]
    assert _status(database_url)["run_id"] == first["run_id"]

    # Rows changed since (by hand, or by an older model): the forced run must put its own values back.
    query(database_url, "UPDATE events SET age = 99, box_x = box_x + 1, gender_score = NULL, gender = NULL")
    forced = procs.run(_args(video, "--force"), env)
    assert forced.returncode == 0
    assert _status(database_url)["run_id"] != first["run_id"]
    assert _events(database_url) == rows


def test_changed_input_is_reanalysed(database_url, video):
    env = procs.worker_env(DATABASE_URL=database_url)
    assert procs.run(_args(video), env).returncode == 0
    before = _events(database_url)
    video.write_bytes(video.read_bytes()[:-1000])
    rerun = procs.run(_args(video), env)
    assert rerun.returncode == 0 and "start" in [line.get("action") for line in _json_lines(rerun.stderr)]
    after = _events(database_url)
    assert len(after) == 4 and after != before  # stale rows of the old input are gone


def test_sigkill_during_analysis_leaves_nothing_and_next_run_succeeds(database_url, video):
    env = procs.worker_env(DATABASE_URL=database_url, TEST_ANALYSIS_STEPS="200", TEST_ANALYSIS_PAUSE="0.1")
    worker = procs.start(_args(video), env)
    procs.wait_for(_status_is(database_url, "running"), what="the run to start")
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    assert _events(database_url) == []
    assert procs.wait_for(lambda: _lock_is_free(database_url), 10, "the lock to be freed")

    assert procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url)).returncode == 0
    assert len(_events(database_url)) == 4 and _status(database_url)["status"] == "succeeded"


def test_sigkill_during_the_write_transaction_leaves_no_partial_rows(database_url, video):
    # An older run's row, locked by this test: the worker's upserts go through, then its
    # DELETE of stale rows waits on this row lock, in the middle of its write transaction.
    assert procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url)).returncode == 0
    query(database_url, "DELETE FROM events WHERE video_id = %s", VIDEO_ID)
    query(
        database_url,
        "INSERT INTO events (video_id, event_key, start_ms, end_ms, best_frame_ms, box_x, box_y,"
        " box_w, box_h, det_score, face_count, model_version)"
        " VALUES (%s, 'old', 0, 10, 5, 1, 1, 5, 5, 0.9, 1, 'old-model')",
        VIDEO_ID,
    )
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT * FROM events WHERE event_key = 'old' FOR UPDATE")
        worker = procs.start(_args(video, "--force"), procs.worker_env(DATABASE_URL=database_url))
        procs.wait_for(
            lambda: query(
                database_url,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%DELETE FROM events%%'",
            ),
            what="the write to block",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        blocker.rollback()
    assert [r[0] for r in _events(database_url)] == ["old"]
    assert procs.run(_args(video, "--force"), procs.worker_env(DATABASE_URL=database_url)).returncode == 0
    assert len(_events(database_url)) == 4 and "old" not in [r[0] for r in _events(database_url)]


@pytest.mark.parametrize("block", ["0", "30"], ids=["between-steps", "inside-a-long-call"])
def test_sigterm_stops_within_five_seconds(database_url, video, block):
    env = procs.worker_env(
        DATABASE_URL=database_url,
        TEST_ANALYSIS_STEPS="1" if block != "0" else "300",
        TEST_ANALYSIS_PAUSE="0.1",
        TEST_ANALYSIS_BLOCK=block,
    )
    worker = procs.start(_args(video), env)
    procs.wait_for(_status_is(database_url, "running"), what="the run to start")
    time.sleep(0.3)
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == ExitCode.INTERRUPTED
    assert time.monotonic() - sent < 5
    assert _status(database_url)["status"] == "interrupted"
    assert _events(database_url) == []
    assert _lock_is_free(database_url)


def test_terminated_lock_backend_means_no_write_and_retryable_exit(database_url, video):
    env = procs.worker_env(
        DATABASE_URL=database_url,
        TEST_ANALYSIS_STEPS="60",
        TEST_ANALYSIS_PAUSE="0.1",
        ANALYZER_HEARTBEAT_INTERVAL="0.5",
    )
    worker = procs.start(_args(video), env)
    procs.wait_for(_status_is(database_url, "running"), what="the run to start")
    holder = query(
        database_url,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted",
        LOCK_NAMESPACE,
        VIDEO_ID,
    )[0]["pid"]
    query(database_url, "SELECT pg_terminate_backend(%s)", holder)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == ExitCode.RETRYABLE, err
    assert _events(database_url) == []
    [error] = [line for line in _json_lines(err) if line["level"] == "ERROR"]
    assert error["exit_code"] == ExitCode.RETRYABLE
    assert error["message"].startswith(f"lock lost: the lock connection (backend {holder}) no longer holds video")


def test_the_lock_stays_held_while_the_write_waits(database_url, video):
    """The advisory lock is the duplicates' only guard: it must outlive the write, even a blocked one."""
    env = procs.worker_env(
        DATABASE_URL=database_url, TEST_ANALYSIS_STEPS="5", TEST_ANALYSIS_PAUSE="0.1", ANALYZER_HEARTBEAT_INTERVAL="60"
    )
    with psycopg.connect(database_url) as blocker:
        worker = procs.start(_args(video), env)
        procs.wait_for(_status_is(database_url, "running"), what="the run to start")
        blocker.execute("SELECT * FROM video_analyses WHERE video_id = %s FOR UPDATE", (VIDEO_ID,))
        [waiting] = procs.wait_for(
            lambda: query(
                database_url,
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%FOR UPDATE%%'",
            ),
            what="the write to wait on the status row",
        )
        holders = query(
            database_url,
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s AND objid = %s",
            LOCK_NAMESPACE,
            VIDEO_ID,
        )
        assert holders == [waiting]  # the waiting write's own session holds the video
        duplicate = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url))
        assert duplicate.returncode == 0
        assert "duplicate_skipped" in [line.get("action") for line in _json_lines(duplicate.stderr)]
        blocker.rollback()
    assert worker.wait(30) == 0
    assert len(_events(database_url)) == 4 and _status(database_url)["status"] == "succeeded"


@pytest.fixture
def videos_table(database_url):
    query(database_url, "CREATE TABLE videos (id bigint PRIMARY KEY, s3_key text NOT NULL)")
    query(database_url, "INSERT INTO videos VALUES (84, 'videos/2025/12/29/1f0c_clip.mp4')")
    return database_url


@pytest.mark.parametrize("video_id", ["2025", "85"])
def test_video_key_mismatch_is_refused_and_nothing_written(videos_table, video, video_id):
    result = procs.run(
        ["run", "s3://uploads/videos/2025/12/29/1f0c_clip.mp4", "--video-id", video_id],
        procs.worker_env(DATABASE_URL=videos_table),
    )
    assert result.returncode == ExitCode.VIDEO_MISMATCH, result.stderr
    errors = [line for line in _json_lines(result.stderr) if line["level"] == "ERROR"]
    assert len(errors) == 1 and "videos" in errors[0]["message"]
    assert query(videos_table, "SELECT count(*) AS n FROM events")[0]["n"] == 0
    assert query(videos_table, "SELECT count(*) AS n FROM video_analyses")[0]["n"] == 0


def test_matching_videos_row_is_analysed(videos_table, tmp_path, media_dir):
    key = tmp_path / "videos/2025/12/29/1f0c_clip.mp4"
    key.parent.mkdir(parents=True)
    shutil.copy(media_dir / "short_hamilton_clip.mp4", key)
    query(videos_table, "UPDATE videos SET s3_key = %s WHERE id = 84", str(key))
    result = procs.run(["run", str(key), "--video-id", "84"], procs.worker_env(DATABASE_URL=videos_table))
    assert result.returncode == 0, result.stderr
    assert len(_events(videos_table, 84)) == 4


def test_password_never_logged(database_url, pg_server, video):
    result = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url, AWS_BATCH_JOB_ID="job-9"))
    assert result.returncode == 0
    assert pg_server.password not in result.stderr + result.stdout
    lines = _json_lines(result.stderr)
    assert lines and all(line["video_id"] == VIDEO_ID and line["batch_job_id"] == "job-9" for line in lines)
    assert any(line.get("run_id") for line in lines)

    # A logged text holding the password (here the input's name, in the error that quotes it)
    # must have it scrubbed: a careless log line elsewhere would be caught the same way.
    missing = video.with_name(f"clip-{pg_server.password}.mp4")
    result = procs.run(_args(missing), procs.worker_env(DATABASE_URL=database_url))
    assert result.returncode == ExitCode.INPUT_NOT_FOUND
    assert pg_server.password not in result.stderr + result.stdout
    [error] = [line for line in _json_lines(result.stderr) if line["level"] == "ERROR"]
    assert "clip-***.mp4" in error["message"]


def test_unreachable_database_is_retryable(video):
    result = procs.run(_args(video), procs.worker_env(DATABASE_URL="postgresql://u:hunter2@127.0.0.1:1/db"))
    assert result.returncode == ExitCode.RETRYABLE
    assert "hunter2" not in result.stderr
