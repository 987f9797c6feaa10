"""Reliability holes of issue 14, each reproduced with a real PostgreSQL server and real workers.

The videos-table guard fails closed; a killed worker's session cannot keep its lock while its
write waits; a duplicate exits 0 only while the holder is alive; a forced exit cleans up.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from analyzer.errors import ExitCode
from analyzer.store.postgres import LOCK_NAMESPACE
from tests.integration.test_exactly_once import (
    VIDEO_ID,
    _events,
    _json_lines,
    _lock_is_free,
    _status,
    _status_is,
)
from tests.support import procs
from tests.support.sql import query
from tests.support.worker import expected_event

pytestmark = pytest.mark.integration

KEY = "videos/2025/12/29/1f0c_clip.mp4"


@pytest.fixture
def video(tmp_path: Path, media_dir: Path) -> Path:
    path = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "short_hamilton_clip.mp4", path)
    return path


def _args(video: Path | str, *extra: str, video_id: int = VIDEO_ID) -> list[str]:
    return ["run", str(video), "--video-id", str(video_id), *extra]


def _errors(stderr: str) -> list[dict]:
    return [line for line in _json_lines(stderr) if line["level"] == "ERROR"]


def _written(url: str) -> tuple[int, int]:
    return (
        query(url, "SELECT count(*) AS n FROM events")[0]["n"],
        query(url, "SELECT count(*) AS n FROM video_analyses")[0]["n"],
    )


# 1. The videos-table guard


@pytest.fixture
def mixed_case_videos(database_url):
    query(database_url, 'CREATE TABLE "Videos" (id bigint PRIMARY KEY, s3_key text NOT NULL)')
    query(database_url, 'INSERT INTO "Videos" VALUES (84, %s)', KEY)
    return database_url


def test_mixed_case_table_is_checked_as_named(mixed_case_videos, video):
    """VIDEOS_TABLE=Videos names the table "Videos", whose row names another key: refused (7)."""
    result = procs.run(
        _args(video, video_id=84), procs.worker_env(DATABASE_URL=mixed_case_videos, VIDEOS_TABLE="Videos")
    )
    assert result.returncode == ExitCode.VIDEO_MISMATCH, result.stderr
    [error] = _errors(result.stderr)
    assert "Videos" in error["message"] and KEY in error["message"]
    assert _written(mixed_case_videos) == (0, 0)


def test_schema_qualified_mixed_case_table(database_url, video):
    query(database_url, 'CREATE SCHEMA "App"')
    query(database_url, 'CREATE TABLE "App"."Uploads" (id bigint PRIMARY KEY, s3_key text NOT NULL)')
    query(database_url, 'INSERT INTO "App"."Uploads" VALUES (84, %s)', str(video))
    ok = procs.run(_args(video, video_id=84), procs.worker_env(DATABASE_URL=database_url, VIDEOS_TABLE="App.Uploads"))
    assert ok.returncode == 0, ok.stderr
    refused = procs.run(
        _args(video, video_id=85), procs.worker_env(DATABASE_URL=database_url, VIDEOS_TABLE="App.Uploads")
    )
    assert refused.returncode == ExitCode.VIDEO_MISMATCH, refused.stderr


@pytest.mark.parametrize("table", ["vidoes", "videos", "public.vidoes", "nope.videos"])
def test_configured_table_that_does_not_exist_is_a_settings_error(database_url, video, table):
    result = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url, VIDEOS_TABLE=table))
    assert result.returncode == ExitCode.BAD_SETTINGS, result.stderr
    [error] = _errors(result.stderr)
    assert "VIDEOS_TABLE" in error["message"] and table in error["message"]
    assert _written(database_url) == (0, 0)


def test_missing_column_is_a_settings_error(mixed_case_videos, video):
    result = procs.run(
        _args(video, video_id=84),
        procs.worker_env(DATABASE_URL=mixed_case_videos, VIDEOS_TABLE="Videos", VIDEOS_KEY_COLUMN="key"),
    )
    assert result.returncode == ExitCode.BAD_SETTINGS, result.stderr
    [error] = _errors(result.stderr)
    assert "VIDEOS_KEY_COLUMN" in error["message"]
    assert _written(mixed_case_videos) == (0, 0)


def test_default_table_absent_runs_without_the_guard_and_says_so(database_url, video):
    result = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url))
    assert result.returncode == 0, result.stderr
    guard = [line for line in _json_lines(result.stderr) if line.get("action") == "videos_guard"]
    assert len(guard) == 1 and "off" in guard[0]["message"] and "VIDEOS_TABLE" in guard[0]["message"]


def test_default_table_present_is_checked_and_says_so(database_url, video):
    query(database_url, "CREATE TABLE videos (id bigint PRIMARY KEY, s3_key text NOT NULL)")
    query(database_url, "INSERT INTO videos VALUES (%s, %s)", VIDEO_ID, KEY)
    result = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url))
    assert result.returncode == ExitCode.VIDEO_MISMATCH, result.stderr
    query(database_url, "UPDATE videos SET s3_key = %s", str(video))
    result = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url))
    assert result.returncode == 0, result.stderr
    guard = [line for line in _json_lines(result.stderr) if line.get("action") == "videos_guard"]
    assert len(guard) == 1 and "checked" in guard[0]["message"]


# 2. A killed worker's lock, and duplicates of a dead holder


def _blocked_on(url: str, statement: str) -> list[dict]:
    return query(
        url, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s", f"%{statement}%"
    )


def test_killed_worker_blocked_in_its_write_frees_the_video(database_url, video):
    """The issue's reproduction: SIGKILL while the final write waits on a row lock."""
    digest = hashlib.sha256(video.read_bytes()).digest()
    first_key = expected_event(digest, 0).event_key
    assert procs.run(["migrate"], procs.worker_env(DATABASE_URL=database_url), module="analyzer.cli").returncode == 0
    with psycopg.connect(database_url) as blocker:  # holds one of the worker's event keys, uncommitted
        blocker.execute(
            "INSERT INTO events (video_id, event_key, start_ms, end_ms, best_frame_ms, box_x, box_y,"
            " box_w, box_h, det_score, face_count, model_version)"
            " VALUES (%s, %s, 0, 10, 5, 1, 1, 5, 5, 0.9, 1, 'other')",
            (VIDEO_ID, first_key),
        )
        worker = procs.start(_args(video), procs.worker_env(DATABASE_URL=database_url))
        procs.wait_for(lambda: _blocked_on(database_url, "INSERT INTO events"), what="the write to block")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        # The server notices the dead client while its statement waits, and frees the lock.
        procs.wait_for(lambda: _lock_is_free(database_url), 15, "the dead worker's lock to be freed")
        # A retry while the row is still locked: no silent "duplicate"; the write times out, retryable.
        retry = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url))
        assert retry.returncode == ExitCode.RETRYABLE, retry.stderr
        assert _status(database_url)["status"] == "failed" and _status(database_url)["exit_code"] == 75
        blocker.rollback()
    again = procs.run(_args(video), procs.worker_env(DATABASE_URL=database_url))
    assert again.returncode == 0, again.stderr
    assert len(_events(database_url)) == 4 and _status(database_url)["status"] == "succeeded"


def _hold_lock(url: str, application_name: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True, application_name=application_name)
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, VIDEO_ID))
    return conn


@contextmanager
def _beating(url: str, every_s: float) -> Iterator[None]:
    """A live holder's heartbeats, for as long as the block runs (however slow the worker starts)."""
    stop = threading.Event()

    def beat() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("UPDATE video_analyses SET heartbeat_at = now()")
                stop.wait(every_s)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join(5)


def _running_row(url: str, heartbeat_age_s: float) -> None:
    query(
        url,
        "INSERT INTO video_analyses (video_id, run_id, status, input_key, model_version, heartbeat_at)"
        " VALUES (%s, gen_random_uuid(), 'running', 'k', 'm', now() - make_interval(secs => %s))",
        VIDEO_ID,
        heartbeat_age_s,
    )


def test_duplicate_of_a_silent_holder_is_retryable(database_url, video):
    env = procs.worker_env(DATABASE_URL=database_url, ANALYZER_HEARTBEAT_INTERVAL="0.2")  # stale after 1.2 s
    assert procs.run(["migrate"], env, module="analyzer.cli").returncode == 0
    _running_row(database_url, 3600)
    with _hold_lock(database_url, "analyzer:job=dead-job:pid=1"):
        time.sleep(1.5)
        result = procs.run(_args(video), env)
    assert result.returncode == ExitCode.RETRYABLE, result.stderr
    [error] = _errors(result.stderr)
    assert "dead-job" in error["message"] and "silent" in error["message"]
    assert _status(database_url)["status"] == "running" and _events(database_url) == []


def test_duplicate_of_a_beating_holder_exits_0(database_url, video):
    env = procs.worker_env(DATABASE_URL=database_url, ANALYZER_HEARTBEAT_INTERVAL="0.2")
    assert procs.run(["migrate"], env, module="analyzer.cli").returncode == 0
    _running_row(database_url, 3600)
    with _hold_lock(database_url, "analyzer:job=live-job:pid=1"), _beating(database_url, every_s=0.1):
        time.sleep(1.5)  # the session is older than the stale limit: only the beats keep it alive
        result = procs.run(_args(video), env)
    assert result.returncode == 0, result.stderr
    assert "duplicate_skipped" in [line.get("action") for line in _json_lines(result.stderr)]


def test_duplicate_of_a_holder_starting_up_exits_0(database_url, video):
    """A holder that took the lock a moment ago has no heartbeat yet: alive by its session's age."""
    env = procs.worker_env(DATABASE_URL=database_url)
    assert procs.run(["migrate"], env, module="analyzer.cli").returncode == 0
    _running_row(database_url, 3600)  # an older, dead run's row
    with _hold_lock(database_url, "analyzer:job=new-job:pid=1"):
        result = procs.run(_args(video), env)
    assert result.returncode == 0, result.stderr


# 3. The forced exit (item 9)


def test_forced_exit_while_the_write_is_blocked_marks_the_run_interrupted(database_url, video):
    digest = hashlib.sha256(video.read_bytes()).digest()
    assert procs.run(["migrate"], procs.worker_env(DATABASE_URL=database_url), module="analyzer.cli").returncode == 0
    with psycopg.connect(database_url) as blocker:
        blocker.execute(
            "INSERT INTO events (video_id, event_key, start_ms, end_ms, best_frame_ms, box_x, box_y,"
            " box_w, box_h, det_score, face_count, model_version)"
            " VALUES (%s, %s, 0, 10, 5, 1, 1, 5, 5, 0.9, 1, 'other')",
            (VIDEO_ID, expected_event(digest, 0).event_key),
        )
        worker = procs.start(_args(video), procs.worker_env(DATABASE_URL=database_url))
        procs.wait_for(lambda: _blocked_on(database_url, "INSERT INTO events"), what="the write to block")
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == ExitCode.INTERRUPTED
        assert time.monotonic() - sent < 5
        row = _status(database_url)
        assert row["status"] == "interrupted" and row["exit_code"] == ExitCode.INTERRUPTED
        assert _lock_is_free(database_url)
        blocker.rollback()
    assert _events(database_url) == []


def test_forced_exit_removes_the_downloaded_input(database_url, s3_server, media_dir, tmp_path):
    key = f"reliability/{time.monotonic_ns()}_clip.mp4"
    s3_server.upload(media_dir / "short_hamilton_clip.mp4", key)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = procs.worker_env(
        DATABASE_URL=database_url, TMPDIR=str(tmp), TEST_ANALYSIS_STEPS="1", TEST_ANALYSIS_BLOCK="30", **s3_server.env()
    )
    worker = procs.start(_args(key), env)
    procs.wait_for(_status_is(database_url, "running"), what="the run to start")
    procs.wait_for(lambda: any(tmp.rglob("*")), what="the download")
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == ExitCode.INTERRUPTED
    assert list(tmp.rglob("*")) == []
    assert _status(database_url)["status"] == "interrupted"


# 4. A run that Batch timed out (SIGTERM, then SIGKILL after the stop timeout) is found for resubmission


@pytest.mark.parametrize(
    ("block", "status"), [("0", "interrupted"), ("30", "running")], ids=["stops-on-sigterm", "killed-before-it-stops"]
)
def test_timed_out_run_is_found_by_the_stale_search(database_url, video, block, status):
    from analyzer.store import db
    from analyzer.store.postgres import stale_runs

    env = procs.worker_env(
        DATABASE_URL=database_url,
        TEST_ANALYSIS_STEPS="1" if block != "0" else "300",
        TEST_ANALYSIS_PAUSE="0.1",
        TEST_ANALYSIS_BLOCK=block,
        ANALYZER_HEARTBEAT_INTERVAL="0.2",
        AWS_BATCH_JOB_ID="job-timeout",
    )
    worker = procs.start(_args(video), env)
    procs.wait_for(_status_is(database_url, "running"), what="the run to start")
    time.sleep(0.5)
    # Batch's timeout: SIGTERM, then SIGKILL 30 s later; here before the worker's own forced exit
    # (STOP_GRACE) when it is stuck, and only if it has not stopped by itself in time otherwise.
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(1 if status == "running" else 10)
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    row = _status(database_url)
    assert row["status"] == status and row["batch_job_id"] == "job-timeout"
    with db.connect(database_url, "test") as conn:
        time.sleep(1.2)
        [found] = stale_runs(conn, older_than_s=1.0)
    assert (found["video_id"], found["status"], found["input_key"]) == (VIDEO_ID, status, str(video))
    if status == "interrupted":
        assert found["exit_code"] == ExitCode.INTERRUPTED and "after" in found["error"]


def test_worker_sessions_ask_the_server_to_watch_them(database_url):
    """The server-side settings arrive with every worker session; a URL's own options win."""
    from analyzer.store import db

    def shown(conn, name: str) -> str:
        return conn.execute(f"SHOW {name}").fetchone()[name]

    with db.connect(database_url, "test") as conn:
        assert [
            shown(conn, n)
            for n in (
                "client_connection_check_interval",
                "tcp_keepalives_idle",
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
            )
        ] == ["5s", "20", "30s", "10s", "1min"]
    with db.connect(f"{database_url}?options=-c%20lock_timeout%3D3s", "test") as conn:
        assert shown(conn, "lock_timeout") == "3s" and shown(conn, "statement_timeout") == "30s"
    with db.connect(database_url, "test", short=True) as conn:
        assert (shown(conn, "statement_timeout"), shown(conn, "lock_timeout")) == ("2s", "1s")
