"""The PostgreSQL store in-process, against the real server: lock, status row, fence, upsert.

Process-level behaviour (signals, kills, exit codes) is tests/integration/test_exactly_once.py;
these tests pin each piece of the protocol on its own, so that a regression in one names itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from psycopg.rows import dict_row

from analyzer.errors import ExitCode, InfrastructureError, LockLost, SettingsError, VideoMismatch
from analyzer.events import Event
from analyzer.store import postgres
from analyzer.store.postgres import LOCK_NAMESPACE, Store

pytestmark = pytest.mark.integration

VIDEO_ID = 31


def event(key: str, start_ms: int = 0, **changes: object) -> Event:
    base = Event(
        event_key=key,
        start_ms=start_ms,
        end_ms=start_ms + 400,
        best_frame_ms=start_ms + 200,
        x=10,
        y=20,
        w=30,
        h=40,
        det_score=0.9,
        gender="female",
        gender_score=88.0,
        age=30,
        face_count=3,
        age_low=24,
        age_high=37,
    )
    return replace(base, **changes)


def _query(url: str, sql: str, *params: object) -> list[dict]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _events(url: str) -> dict[str, dict]:
    rows = _query(url, "SELECT * FROM events WHERE video_id = %s", VIDEO_ID)
    return {r["event_key"]: r for r in rows}


def _status(url: str) -> dict:
    return _query(url, "SELECT * FROM video_analyses WHERE video_id = %s", VIDEO_ID)[0]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url, "analyzer:test")
    s.migrate()
    yield s
    s.close()


def _begin(store: Store, fingerprint: str = "sha256:aa", version: str = "m1") -> str:
    return store.begin_run(
        VIDEO_ID, input_key="videos/a.mp4", fingerprint=fingerprint, model_version=version, batch_job_id="j-1",
        batch_attempt=2,
    )  # fmt: skip


def test_a_run_claims_the_row_and_its_write_marks_it_succeeded(store, database_url):
    run_id = _begin(store)
    row = store.get_analysis(VIDEO_ID)
    assert (str(row["run_id"]), row["status"], row["input_fingerprint"], row["model_version"]) == (
        run_id,
        "running",
        "sha256:aa",
        "m1",
    )
    store.write_events(VIDEO_ID, run_id, [event("a"), event("b", 1000)], "m1", frames=12, faces=7)
    status = _status(database_url)
    assert (status["status"], status["frames"], status["faces"], status["events"], status["exit_code"]) == (
        "succeeded",
        12,
        7,
        2,
        0,
    )
    assert status["finished_at"] is not None and status["error"] is None
    rows = _events(database_url)
    assert set(rows) == {"a", "b"}
    assert (rows["b"]["start_ms"], rows["b"]["box_w"], rows["b"]["age_low"], rows["b"]["model_version"]) == (
        1000,
        30,
        24,
        "m1",
    )


def test_a_run_whose_run_id_was_replaced_writes_nothing(store, database_url):
    """The fence: a newer run claimed the row (its run_id); the older run's write must not land."""
    old = _begin(store)
    newer = _begin(store)
    with pytest.raises(LockLost) as info:
        store.write_events(VIDEO_ID, old, [event("a")], "m1", frames=1, faces=1)
    assert info.value.exit_code == ExitCode.RETRYABLE and old in str(info.value)
    assert _events(database_url) == {}
    status = _status(database_url)
    assert (str(status["run_id"]), status["status"]) == (newer, "running")


def test_finish_run_of_a_superseded_run_leaves_the_current_run_alone(store, database_url):
    old = _begin(store)
    current = _begin(store)
    store.finish_run(VIDEO_ID, old, "failed", int(ExitCode.INTERNAL_ERROR), error="the old run's failure")
    status = _status(database_url)
    assert (str(status["run_id"]), status["status"], status["error"], status["exit_code"]) == (
        current,
        "running",
        None,
        None,
    )
    store.finish_run(VIDEO_ID, current, "failed", int(ExitCode.INTERNAL_ERROR), error="boom")
    status = _status(database_url)
    assert (status["status"], status["error"], status["exit_code"]) == ("failed", "boom", 9)


def test_a_rerun_updates_changed_rows_and_deletes_rows_it_did_not_produce(store, database_url):
    first = _begin(store)
    store.write_events(VIDEO_ID, first, [event("a"), event("b", 1000), event("gone", 5000)], "m1", 3, 3)
    changed = [
        event("a", end_ms=900, gender=None, gender_score=None, age=41, age_low=30, age_high=52),
        event("b", 1000, x=11, det_score=0.5),
        event("new", 7000),
    ]
    second = _begin(store, version="m2")
    store.write_events(VIDEO_ID, second, changed, "m2", 3, 3)
    rows = _events(database_url)
    assert set(rows) == {"a", "b", "new"}
    a, b = rows["a"], rows["b"]
    assert (a["end_ms"], a["gender"], a["gender_score"], a["age"], a["age_low"], a["age_high"]) == (
        900,
        None,
        None,
        41,
        30,
        52,
    )
    assert (b["box_x"], b["det_score"], b["model_version"]) == (11, 0.5, "m2")
    assert b["updated_at"] > b["created_at"]
    assert _status(database_url)["events"] == 3


def test_a_run_with_no_events_clears_the_old_ones(store, database_url):
    store.write_events(VIDEO_ID, _begin(store), [event("a")], "m1", 1, 1)
    store.write_events(VIDEO_ID, _begin(store), [], "m1", 5, 0)
    assert _events(database_url) == {} and _status(database_url)["events"] == 0


def test_the_lock_is_per_video_and_names_its_holder(store, database_url):
    assert store.try_lock(VIDEO_ID)
    other = Store(database_url, "analyzer:job=j-2:pid=1")
    try:
        assert not other.try_lock(VIDEO_ID)
        assert other.try_lock(VIDEO_ID + 1)  # another video is free
        holder = other.lock_holder(VIDEO_ID)
        assert holder["application_name"] == "analyzer:test" and holder["pid"] == store.backend_pid
        assert 0 <= holder["silent_s"] < 30
        assert store.lock_holder(VIDEO_ID + 1)["pid"] == other.backend_pid
        assert other.lock_holder(VIDEO_ID + 2) is None
    finally:
        other.close()
    store.close()
    again = Store(database_url, "analyzer:test")
    try:
        assert again.try_lock(VIDEO_ID)  # closing the holder freed it
    finally:
        again.close()


def test_a_holder_is_silent_since_its_last_heartbeat_or_its_session_start(store, database_url):
    assert store.try_lock(VIDEO_ID)
    run_id = _begin(store)
    other = Store(database_url, "analyzer:other")
    try:
        _query(database_url, "UPDATE video_analyses SET heartbeat_at = now() + interval '1 hour'")
        assert other.lock_holder(VIDEO_ID)["silent_s"] < -3000  # the beat counts when it is the later
        _query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '1 hour'")
        assert 0 <= other.lock_holder(VIDEO_ID)["silent_s"] < 60  # else the session's start
        store.heartbeat(VIDEO_ID, run_id, 1.0).beat(other.conn)
        assert other.lock_holder(VIDEO_ID)["silent_s"] < 5
        newer = _begin(store)
        _query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '1 hour'")
        store.heartbeat(VIDEO_ID, run_id, 1.0).beat(other.conn)  # a superseded run beats nothing
        assert other.lock_holder(VIDEO_ID)["silent_s"] >= 0
        [row] = _query(database_url, "SELECT now() - heartbeat_at > interval '1 minute' AS old FROM video_analyses")
        assert row["old"]
        store.heartbeat(VIDEO_ID, newer, 1.0).beat(other.conn)
        assert other.lock_holder(VIDEO_ID)["silent_s"] < 5
    finally:
        other.close()


def test_the_heartbeat_loses_the_run_when_the_lock_session_is_gone(store, database_url):
    assert store.try_lock(VIDEO_ID)
    run_id = _begin(store)
    beat = store.heartbeat(VIDEO_ID, run_id, 0.05)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        beat.beat(conn)
        assert not beat.lost.is_set()
        conn.execute("SELECT pg_terminate_backend(%s)", (store.backend_pid,))
        beat.beat(conn)
    assert beat.lost.is_set() and str(store.backend_pid) in beat.reason


def test_close_releases_the_lock_and_the_connection(store, database_url):
    assert store.try_lock(VIDEO_ID)
    store.close()
    assert store.conn.closed
    rows = _query(
        database_url,
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
        LOCK_NAMESPACE,
        VIDEO_ID,
    )
    assert rows[0]["n"] == 0


def test_finish_run_goes_through_a_short_connection_when_the_lock_session_is_broken(store, database_url):
    run_id = _begin(store)
    _query(database_url, "SELECT pg_terminate_backend(%s)", store.backend_pid)
    with pytest.raises(InfrastructureError):
        store.get_analysis(VIDEO_ID)  # the session is gone: psycopg marks the connection broken
    store.finish_run(VIDEO_ID, run_id, "interrupted", int(ExitCode.INTERRUPTED), error="stopped")
    status = _status(database_url)
    assert (status["status"], status["exit_code"], status["error"]) == ("interrupted", ExitCode.INTERRUPTED, "stopped")


@pytest.fixture
def videos(database_url: str) -> str:
    _query(database_url, 'CREATE TABLE "Videos" ("Id" bigint PRIMARY KEY, s3_key text NOT NULL)')
    _query(database_url, """INSERT INTO "Videos" VALUES (%s, 'videos/a.mp4')""", VIDEO_ID)
    return database_url


@pytest.mark.parametrize("key", ["videos/a.mp4", "s3://uploads/videos/a.mp4", "/videos/a.mp4"])
def test_the_videos_guard_passes_the_row_of_the_same_key(store, videos, key):
    assert store.check_video_row("Videos", "Id", "s3_key", VIDEO_ID, key, required=True)


def test_the_videos_guard_refuses_another_key_or_a_missing_row(store, videos):
    with pytest.raises(VideoMismatch, match="is 'videos/a.mp4' in table Videos, not 'videos/b.mp4'"):
        store.check_video_row("Videos", "Id", "s3_key", VIDEO_ID, "videos/b.mp4", required=True)
    with pytest.raises(VideoMismatch, match=f"video {VIDEO_ID + 1} is not in table Videos"):
        store.check_video_row("Videos", "Id", "s3_key", VIDEO_ID + 1, "videos/a.mp4", required=True)


def test_the_videos_guard_without_its_table(store, videos):
    assert not store.check_video_row("videos", "Id", "s3_key", VIDEO_ID, "videos/a.mp4", required=False)
    with pytest.raises(SettingsError, match="no table videos"):
        store.check_video_row("videos", "Id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)
    with pytest.raises(SettingsError, match="no column id or s3_key"):
        store.check_video_row("Videos", "id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)


def test_stale_runs_lists_dead_interrupted_and_retryable_failures(store, database_url):
    ids = {"running-dead": 1, "running-alive": 2, "interrupted": 3, "failed-75": 4, "failed-9": 5, "succeeded": 6}
    for name, video_id in ids.items():
        run_id = store.begin_run(
            video_id, input_key=name, fingerprint=None, model_version="m", batch_job_id=None, batch_attempt=None
        )
        status, _, code = name.partition("-")
        if status in ("interrupted", "failed"):
            store.finish_run(video_id, run_id, status, int(code or 75), error="x")
        elif status == "succeeded":
            store.write_events(video_id, run_id, [], "m", 0, 0)
    _query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '10 minutes' WHERE video_id = 1")
    found = postgres.stale_runs(store.conn, older_than_s=60)
    assert [r["input_key"] for r in found] == ["running-dead", "interrupted", "failed-75"]
    assert [r["input_key"] for r in postgres.stale_runs(store.conn, older_than_s=60, limit=1)] == ["running-dead"]


@pytest.mark.parametrize(
    "key,expected", [("s3://b/videos/a.mp4", "videos/a.mp4"), ("/videos/a.mp4", "videos/a.mp4"), ("a.mp4", "a.mp4")]
)
def test_key_of(key, expected):
    assert postgres.key_of(key) == expected
