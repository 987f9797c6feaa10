"""The PostgreSQL store in-process, against the real server: lock, status row, fence, upsert.

Process-level behaviour (signals, kills, exit codes) is tests/integration/test_exactly_once.py;
these tests pin each piece of the protocol on its own, so that a regression in one names itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import psycopg
import pytest
from psycopg.rows import dict_row

from analyzer.errors import ExitCode, InfrastructureError, LockLost, SettingsError, VideoMismatch
from analyzer.events import Event
from analyzer.store import db, postgres
from analyzer.store.migrate import migrate
from analyzer.store.postgres import LOCK_NAMESPACE, Store
from tests.support.sql import query

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
        person_key="p1",
    )
    return replace(base, **changes)


def _events(url: str) -> dict[str, dict]:
    rows = query(url, "SELECT * FROM events WHERE video_id = %s", VIDEO_ID)
    return {r["event_key"]: r for r in rows}


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _lock_free(url: str) -> bool:
    rows = query(url, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", VIDEO_ID)
    return not rows


def _status(url: str) -> dict:
    return query(url, "SELECT * FROM video_analyses WHERE video_id = %s", VIDEO_ID)[0]


@pytest.fixture(scope="module")
def migrated_url(pg_server) -> str:
    url = pg_server.create_database()
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        migrate(conn)
    return url


@pytest.fixture
def database_url(migrated_url: str) -> Iterator[str]:
    """One migrated database for the module (a new one per test costs more than the tests), emptied after each."""
    yield migrated_url
    for statement in (
        "TRUNCATE video_analyses, events",
        'DROP TABLE IF EXISTS "Videos", videos',
        'DROP SCHEMA IF EXISTS "Media" CASCADE',
    ):
        query(migrated_url, statement)


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
    status = _status(database_url)
    assert (status["batch_job_id"], status["batch_attempt"], status["input_key"]) == ("j-1", 2, "videos/a.mp4")
    store.write_events(VIDEO_ID, run_id, [event("a"), event("b", 1000, person_key="p2")], "m1", frames=12, faces=7)
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
    assert (rows["a"]["person_key"], rows["b"]["person_key"]) == ("p1", "p2")


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
    before = [event("a"), event("b", 1000, person_key="p2"), event("gone", 5000)]
    store.write_events(VIDEO_ID, first, before, "m1", 3, 3)
    changed = [
        event("a", end_ms=900, gender=None, gender_score=None, age=41, age_low=30, age_high=52),
        event("b", 1000, x=11, det_score=0.5, person_key="p1"),
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
    assert (b["box_x"], b["det_score"], b["model_version"], b["person_key"]) == (11, 0.5, "m2", "p1")
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


def _beat_age_s(url: str) -> float:
    [row] = query(url, "SELECT extract(epoch FROM now() - heartbeat_at)::float8 AS age FROM video_analyses")
    return row["age"]


def test_a_holder_is_silent_since_its_last_heartbeat_or_its_session_start(store, database_url):
    assert store.try_lock(VIDEO_ID)
    _begin(store)
    other = Store(database_url, "analyzer:other")
    try:
        query(database_url, "UPDATE video_analyses SET heartbeat_at = now() + interval '1 hour'")
        assert other.lock_holder(VIDEO_ID)["silent_s"] < -3000  # the beat counts when it is the later
        query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '1 hour'")
        assert 0 <= other.lock_holder(VIDEO_ID)["silent_s"] < 60  # else the session's start
    finally:
        other.close()


def test_a_beat_refreshes_only_the_current_runs_row(store, database_url):
    assert store.try_lock(VIDEO_ID)
    old = _begin(store)
    current = _begin(store)
    query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '1 hour'")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        store.heartbeat(VIDEO_ID, old, 1.0).beat(conn)  # a superseded run beats nothing
        assert _beat_age_s(database_url) > 3000
        store.heartbeat(VIDEO_ID, current, 1.0).beat(conn)
        assert _beat_age_s(database_url) < 5


def test_the_heartbeat_thread_beats_until_stopped_and_never_holds_the_process(store, database_url, connections):
    assert store.try_lock(VIDEO_ID)
    run_id = _begin(store)
    query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '1 hour'")
    beat = store.heartbeat(VIDEO_ID, run_id, 0.02)
    assert beat.daemon and beat.name == "heartbeat" and beat.reason == "" and not beat.lost.is_set()
    beat.start()
    try:
        assert _wait(lambda: _beat_age_s(database_url) < 5)
    finally:
        beat.stop()
        beat.join(5)
    assert not beat.is_alive() and not beat.lost.is_set()
    assert connections == [("analyzer:test:hb", False)]  # its own session, named for pg_stat_activity


def test_the_heartbeat_thread_loses_the_run_with_its_lock_session(store, database_url):
    assert store.try_lock(VIDEO_ID)
    beat = store.heartbeat(VIDEO_ID, _begin(store), 0.02)
    beat.start()
    query(database_url, "SELECT pg_terminate_backend(%s, 5000)", store.backend_pid)
    assert beat.lost.wait(5)
    beat.join(5)
    assert not beat.is_alive()
    assert beat.reason == f"the lock connection (backend {store.backend_pid}) no longer holds video {VIDEO_ID}"


def test_a_heartbeat_that_cannot_connect_loses_the_run(database_url):
    beat = Store(database_url, "analyzer:test").heartbeat(VIDEO_ID, "run", 0.02)
    beat.url = "postgresql://u:pw@127.0.0.1:1/db"  # the database went away
    beat.start()
    assert beat.lost.wait(10)
    assert beat.reason.startswith("database error while connecting: ")


def test_the_heartbeat_loses_the_run_when_the_lock_session_is_gone(store, database_url):
    assert store.try_lock(VIDEO_ID)
    run_id = _begin(store)
    beat = store.heartbeat(VIDEO_ID, run_id, 0.05)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        beat.beat(conn)
        assert not beat.lost.is_set()
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (store.backend_pid,))
        beat.beat(conn)
    assert beat.lost.is_set() and str(store.backend_pid) in beat.reason


def test_close_releases_the_lock_and_the_connection(store, database_url):
    assert store.try_lock(VIDEO_ID)
    store.close()
    assert store.conn.closed
    rows = query(
        database_url,
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
        LOCK_NAMESPACE,
        VIDEO_ID,
    )
    assert rows[0]["n"] == 0


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every connection the store opens (its name, and whether it has the short timeouts); real ones."""
    opened: list[tuple[str, bool]] = []
    real = db.connect

    def connect(url: str, application_name: str, *, short: bool = False):
        opened.append((application_name, short))
        return real(url, application_name, short=short)

    monkeypatch.setattr(db, "connect", connect)
    return opened


def test_finish_run_writes_through_the_lock_session_when_it_is_healthy(store, database_url, connections):
    store.finish_run(VIDEO_ID, _begin(store), "failed", int(ExitCode.INPUT_REJECTED), error="too long")
    assert connections == []
    status = _status(database_url)
    assert (status["status"], status["exit_code"], status["error"]) == ("failed", 6, "too long")
    assert status["finished_at"] is not None and (status["frames"], status["events"]) == (None, None)


@pytest.mark.parametrize("how", ["terminated", "closed"])
def test_finish_run_goes_through_a_short_connection_when_the_lock_session_is_gone(
    store, database_url, connections, how
):
    run_id = _begin(store)
    if how == "terminated":
        query(database_url, "SELECT pg_terminate_backend(%s, 5000)", store.backend_pid)
        with pytest.raises(InfrastructureError):
            store.get_analysis(VIDEO_ID)  # the session is gone: psycopg marks the connection broken
    else:
        store.conn.close()
    store.finish_run(VIDEO_ID, run_id, "interrupted", int(ExitCode.INTERRUPTED), error="stopped")
    assert connections == [("analyzer:test:end", True)]
    status = _status(database_url)
    assert (status["status"], status["exit_code"], status["error"]) == ("interrupted", ExitCode.INTERRUPTED, "stopped")


def test_finish_run_that_times_out_on_a_healthy_session_is_an_error_not_a_second_try(store, database_url, connections):
    run_id = _begin(store)
    store.conn.execute("SET lock_timeout = '100ms'")
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT * FROM video_analyses WHERE video_id = %s FOR UPDATE", (VIDEO_ID,))
        with pytest.raises(InfrastructureError, match="^database error while finish run: "):
            store.finish_run(VIDEO_ID, run_id, "failed", int(ExitCode.INTERNAL_ERROR), error="x")
    assert connections == [] and _status(database_url)["status"] == "running"


def test_interrupt_ends_the_lock_session_and_its_blocked_write_then_marks_the_run(store, database_url, connections):
    assert store.try_lock(VIDEO_ID)
    run_id = _begin(store)
    store.conn.execute("BEGIN")
    store.conn.execute("UPDATE video_analyses SET frames = 99 WHERE video_id = %s", (VIDEO_ID,))  # a write in flight
    store.interrupt(VIDEO_ID, run_id, "stopped by signal: forced exit")
    assert connections == [("analyzer:test:end", True)]
    status = _status(database_url)
    assert (status["status"], status["exit_code"], status["error"], status["frames"]) == (
        "interrupted",
        ExitCode.INTERRUPTED,
        "stopped by signal: forced exit",
        None,
    )
    assert store.conn.broken or store.conn.closed or _wait(lambda: _lock_free(database_url))
    assert _wait(lambda: _lock_free(database_url))


def test_interrupt_of_a_superseded_run_leaves_the_row_alone(store, database_url):
    old = _begin(store)
    current = _begin(store)
    store.interrupt(VIDEO_ID, old, "stopped")
    status = _status(database_url)
    assert (str(status["run_id"]), status["status"]) == (current, "running")


def test_a_write_on_a_lost_session_is_retryable(store, database_url):
    run_id = _begin(store)
    query(database_url, "SELECT pg_terminate_backend(%s, 5000)", store.backend_pid)
    with pytest.raises(InfrastructureError, match="^database error while writing events: ") as info:
        store.write_events(VIDEO_ID, run_id, [event("a")], "m1", 1, 1)
    assert info.value.exit_code is ExitCode.RETRYABLE and _events(database_url) == {}


@pytest.fixture
def videos(database_url: str) -> str:
    query(database_url, 'CREATE TABLE "Videos" ("Id" bigint PRIMARY KEY, s3_key text NOT NULL)')
    query(database_url, """INSERT INTO "Videos" VALUES (%s, 'videos/a.mp4')""", VIDEO_ID)
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
    with pytest.raises(SettingsError) as info:
        store.check_video_row("videos", "Id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)
    assert str(info.value) == (
        "invalid setting VIDEOS_TABLE: no table videos in this database"
        " (names are case-sensitive; unset VIDEOS_TABLE to run without the guard)"
    )
    with pytest.raises(SettingsError) as info:
        store.check_video_row("Videos", "id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)
    assert str(info.value) == (
        "invalid setting VIDEOS_ID_COLUMN / VIDEOS_KEY_COLUMN: table Videos has no column id or s3_key"
    )


def test_the_videos_guard_reads_a_schema_qualified_table(store, database_url):
    query(database_url, 'CREATE SCHEMA "Media"')
    query(database_url, 'CREATE TABLE "Media"."Videos" (id bigint PRIMARY KEY, s3_key text NOT NULL)')
    query(database_url, """INSERT INTO "Media"."Videos" VALUES (%s, 'videos/a.mp4')""", VIDEO_ID)
    assert store.check_video_row("Media.Videos", "id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)
    with pytest.raises(VideoMismatch):
        store.check_video_row("Media.Videos", "id", "s3_key", VIDEO_ID, "videos/b.mp4", required=True)


def test_the_videos_guard_on_a_lost_session_is_retryable(store, videos):
    query(videos, "SELECT pg_terminate_backend(%s, 5000)", store.backend_pid)
    with pytest.raises(InfrastructureError, match="^database error while reading Videos: "):
        store.check_video_row("Videos", "Id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)


def test_a_videos_table_the_guard_cannot_query_is_a_settings_error_with_the_reason(store, database_url):
    query(database_url, "CREATE TABLE videos (id text PRIMARY KEY, s3_key text NOT NULL)")  # id is text
    with pytest.raises(SettingsError) as info:
        store.check_video_row("videos", "id", "s3_key", VIDEO_ID, "videos/a.mp4", required=True)
    assert re.fullmatch(
        r"invalid setting VIDEOS_TABLE: cannot read videos \(operator does not exist: text = \w+int\)", str(info.value)
    ), str(info.value)


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
    query(database_url, "UPDATE video_analyses SET heartbeat_at = now() - interval '10 minutes' WHERE video_id = 1")
    found = postgres.stale_runs(store.conn, older_than_s=60)
    assert [r["input_key"] for r in found] == ["running-dead", "interrupted", "failed-75"]
    assert [r["input_key"] for r in postgres.stale_runs(store.conn, older_than_s=60, limit=1)] == ["running-dead"]


def test_stale_runs_on_a_lost_connection_is_retryable(store, database_url):
    query(database_url, "SELECT pg_terminate_backend(%s, 5000)", store.backend_pid)
    with pytest.raises(InfrastructureError, match="^database error while stale runs: "):
        postgres.stale_runs(store.conn, older_than_s=60)


@pytest.mark.parametrize(
    "key,expected",
    [
        ("s3://b/videos/a.mp4", "videos/a.mp4"),
        ("/videos/a.mp4", "videos/a.mp4"),
        ("a.mp4", "a.mp4"),
        ("X/a.mp4", "X/a.mp4"),
    ],
)
def test_key_of(key, expected):
    assert postgres.key_of(key) == expected
