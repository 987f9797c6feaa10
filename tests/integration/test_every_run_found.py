"""Issue 19, items 2 and 3, against a real PostgreSQL (and S3) server.

2. A forced exit that fires just as the final write commits: the row stays ``succeeded`` and the
   process exits 0 (the exit code follows what was committed). Made deterministic in-process: the
   test holds the status row so that the final write waits, and releases it from inside the forced
   exit, before the forced exit's own write.
3. A run that ends before its status row exists (stopped while waiting for the migration lock, S3
   down from the start, object not found) leaves a row an operator and the stale sweep find, and
   never touches the row of a run that holds the video.
"""

from __future__ import annotations

import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest

from analyzer.errors import ExitCode
from analyzer.job.runner import Job
from analyzer.settings import Settings
from analyzer.store import db
from analyzer.store.migrate import MIGRATION_LOCK
from analyzer.store.postgres import LOCK_NAMESPACE, stale_runs
from tests.integration.test_exactly_once import VIDEO_ID, _events, _lock_is_free, _status
from tests.support import procs
from tests.support.sql import query
from tests.support.worker import stepped_analysis

pytestmark = pytest.mark.integration

WAIT = 15.0  # seconds a test waits for the worker before failing


@pytest.fixture
def video(tmp_path: Path, media_dir: Path) -> Path:
    path = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "short_hamilton_clip.mp4", path)
    return path


@pytest.fixture
def migrated(database_url: str) -> str:
    assert procs.run(["migrate"], procs.worker_env(DATABASE_URL=database_url), module="analyzer.cli").returncode == 0
    return database_url


def _waiting_on_a_lock(url: str, statement: str) -> list[dict]:
    return query(
        url, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s", f"%{statement}%"
    )


def _stale(url: str) -> list[dict]:
    with db.connect(url, "test") as conn:
        return stale_runs(conn, older_than_s=600)


# 2. The forced exit racing the final commit


def test_forced_exit_just_after_the_final_commit_exits_0_and_keeps_the_row_succeeded(
    migrated, video, exits, watcher, monkeypatch
):
    monkeypatch.setenv("TEST_ANALYSIS_PAUSE", "0")
    blocker = psycopg.connect(migrated)  # its open transaction holds the status row

    def analyse_then_hold_the_row(path, s, control):
        result = stepped_analysis(path, s, control)
        blocker.execute("SELECT 1 FROM video_analyses WHERE video_id = %s FOR UPDATE", (VIDEO_ID,))
        return result  # the final write now waits on the row

    job = Job(
        Settings(video_key=str(video), video_id=VIDEO_ID, database_url=migrated), analyze=analyse_then_hold_the_row
    )
    forced_exit = job._forced_exit

    def commit_first() -> ExitCode:
        blocker.commit()  # the write goes through at the moment the forced exit fires
        procs.wait_for(lambda: _status(migrated)["status"] == "succeeded", WAIT, "the final write to commit")
        return forced_exit()

    job._forced_exit = commit_first  # what StopSignals calls on a forced exit

    def stop_while_the_write_waits() -> None:
        procs.wait_for(lambda: _waiting_on_a_lock(migrated, "FOR UPDATE"), WAIT, "the final write to wait")
        for _ in range(2):  # SIGTERM, and a second one: the forced exit at once
            signal.pthread_kill(watcher().ident, signal.SIGTERM)
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_while_the_write_waits)
    stopper.start()
    try:
        outcome = job.run()
    finally:
        stopper.join(WAIT)
        blocker.close()
    assert exits.called.wait(WAIT)
    assert exits == [ExitCode.OK] and exits.errors == []
    assert outcome is ExitCode.OK
    row = _status(migrated)
    assert (row["status"], row["exit_code"], row["events"]) == ("succeeded", 0, 4)
    assert len(_events(migrated)) == 4
    assert _stale(migrated) == []  # never resubmitted: it was analysed once


def test_a_failure_write_never_overwrites_a_committed_success(migrated, video):
    """The status write of a failed or interrupted run is guarded: ``running`` and this run's."""
    from analyzer.store.postgres import Store

    store = Store(migrated, "test")
    try:
        assert store.try_lock(VIDEO_ID)
        run_id = store.begin_run(
            VIDEO_ID, input_key=str(video), fingerprint="f", model_version="m", batch_job_id=None, batch_attempt=None
        )
        store.write_events(VIDEO_ID, run_id, [], "m", frames=1, faces=0)
        assert store.finish_run(VIDEO_ID, run_id, "failed", 75, "late") == "succeeded"
        assert store.interrupt(VIDEO_ID, run_id, "late") == "succeeded"
        assert store.finish_run(VIDEO_ID, "00000000-0000-0000-0000-000000000000", "failed", 75) is None
    finally:
        store.close()
    row = _status(migrated)
    assert (row["status"], row["exit_code"], row["error"]) == ("succeeded", 0, None)


# 3. Every run leaves a row


def test_stopped_while_waiting_for_the_migration_lock_leaves_an_interrupted_row(migrated, video):
    with psycopg.connect(migrated, autocommit=True) as migrating:  # another worker applying a migration
        migrating.execute("SELECT pg_advisory_lock(%(namespace)s, %(key)s)", MIGRATION_LOCK)
        worker = procs.start(
            ["run", str(video), "--video-id", str(VIDEO_ID)],
            procs.worker_env(DATABASE_URL=migrated, AWS_BATCH_JOB_ID="job-waiting"),
        )
        procs.wait_for(lambda: _waiting_on_a_lock(migrated, "pg_advisory_lock"), WAIT, "the migration lock wait")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(WAIT) == ExitCode.INTERRUPTED
    row = _status(migrated)
    assert (row["status"], row["exit_code"], row["batch_job_id"]) == ("interrupted", 143, "job-waiting")
    assert row["input_key"] == str(video) and "stopped by signal" in row["error"]
    assert [r["video_id"] for r in _stale(migrated)] == [VIDEO_ID]
    assert _lock_is_free(migrated)


def test_a_stop_before_the_run_begins_never_touches_the_row_of_the_run_holding_the_video(migrated, video):
    query(
        migrated,
        "INSERT INTO video_analyses (video_id, run_id, status, input_key, model_version)"
        " VALUES (%s, '11111111-1111-1111-1111-111111111111', 'running', 'k', 'm')",
        VIDEO_ID,
    )
    with (
        psycopg.connect(migrated, autocommit=True) as holder,
        psycopg.connect(migrated, autocommit=True) as migrating,
    ):
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, VIDEO_ID))  # the live run
        migrating.execute("SELECT pg_advisory_lock(%(namespace)s, %(key)s)", MIGRATION_LOCK)
        worker = procs.start(["run", str(video), "--video-id", str(VIDEO_ID)], procs.worker_env(DATABASE_URL=migrated))
        procs.wait_for(lambda: _waiting_on_a_lock(migrated, "pg_advisory_lock"), WAIT, "the migration lock wait")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(WAIT) == ExitCode.INTERRUPTED
    row = _status(migrated)
    assert (str(row["run_id"]), row["status"], row["input_key"]) == (
        "11111111-1111-1111-1111-111111111111",
        "running",
        "k",
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_s3_down_from_the_start_leaves_a_retryable_failed_row(migrated, s3_server):
    key = "videos/2026/12/06/down.mp4"
    env = procs.worker_env(
        DATABASE_URL=migrated, **{**s3_server.env(), "S3_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}
    )
    result = procs.run(["run", key, "--video-id", str(VIDEO_ID)], env)
    assert result.returncode == ExitCode.RETRYABLE, result.stderr
    row = _status(migrated)
    assert (row["status"], row["exit_code"]) == ("failed", 75)
    assert row["input_key"] == f"s3://{s3_server.bucket}/{key}"  # the bucket recorded too
    [stale] = _stale(migrated)
    assert (stale["video_id"], stale["input_key"]) == (VIDEO_ID, row["input_key"])


def test_object_not_found_leaves_a_failed_row_that_is_not_resubmitted(migrated, s3_server):
    key = f"videos/2026/12/06/{time.monotonic_ns()}_missing.mp4"
    result = procs.run(
        ["run", key, "--video-id", str(VIDEO_ID)], procs.worker_env(DATABASE_URL=migrated, **s3_server.env())
    )
    assert result.returncode == ExitCode.INPUT_NOT_FOUND, result.stderr
    row = _status(migrated)
    assert (row["status"], row["exit_code"], row["input_key"]) == ("failed", 3, f"s3://{s3_server.bucket}/{key}")
    assert _stale(migrated) == []  # a retry would fail the same way


def test_an_early_failure_keeps_an_earlier_success(migrated, video, s3_server):
    assert (
        procs.run(["run", str(video), "--video-id", str(VIDEO_ID)], procs.worker_env(DATABASE_URL=migrated)).returncode
        == 0
    )
    before = _status(migrated)
    key = f"videos/2026/12/06/{time.monotonic_ns()}_missing.mp4"
    result = procs.run(
        ["run", key, "--video-id", str(VIDEO_ID)], procs.worker_env(DATABASE_URL=migrated, **s3_server.env())
    )
    assert result.returncode == ExitCode.INPUT_NOT_FOUND, result.stderr
    assert _status(migrated) == before and len(_events(migrated)) == 4
