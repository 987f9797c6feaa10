"""Issue 19 item 5, against the real PostgreSQL server: a connection the server refuses for its
settings (wrong password, unknown database) is exit 2 in one line, where it was 75 and retried
until Batch's attempts ran out; a server that is merely down stays 75; a libpq multi-host URL
works, the first host refused and the second one used."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from analyzer.errors import ExitCode
from tests.support import procs
from tests.support.sql import query

pytestmark = pytest.mark.integration


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded: the analysis step derives its events from these bytes")
    return path


def _run(video: Path, url: str) -> procs.Finished:
    env = procs.worker_env(DATABASE_URL=url, TEST_ANALYSIS_PAUSE="0")
    return procs.run(["run", str(video), "--video-id", "19"], env, timeout=60)


def _error(done: procs.Finished) -> dict:
    assert "Traceback" not in done.stderr
    [line] = [json.loads(line) for line in done.stderr.splitlines() if '"level": "ERROR"' in line]
    return line


def _with(url: str, *, password: str | None = None, dbname: str | None = None, netloc: str | None = None) -> str:
    parts = urlsplit(url)
    if password is not None:
        netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc or parts.netloc, path=f"/{dbname}" if dbname else parts.path))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_a_wrong_password_is_a_settings_error(video, database_url):
    done = _run(video, _with(database_url, password="not-the-password"))
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stderr[-2000:]
    error = _error(done)
    assert error["message"].startswith("invalid setting DATABASE_URL: the server refused it: password authentication")
    assert "not-the-password" not in done.stderr


def test_an_unknown_database_is_a_settings_error(video, database_url):
    done = _run(video, _with(database_url, dbname="no_such_database"))
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stderr[-2000:]
    assert _error(done)["message"] == (
        'invalid setting DATABASE_URL: the server refused it: database "no_such_database" does not exist'
    )


def test_a_server_that_is_down_stays_retryable(video, database_url):
    parts = urlsplit(database_url)
    down = _with(database_url, netloc=f"{parts.username}:{parts.password}@127.0.0.1:{_closed_port()}")
    done = _run(video, down)
    assert done.returncode == ExitCode.RETRYABLE, done.stderr[-2000:]
    assert "Connection refused" in _error(done)["message"]


def test_a_multi_host_url_uses_the_host_that_answers(video, database_url):
    parts = urlsplit(database_url)
    hosts = f"127.0.0.1:{_closed_port()},127.0.0.1:{parts.port}"
    done = _run(video, _with(database_url, netloc=f"{parts.username}:{parts.password}@{hosts}"))
    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    [row] = query(database_url, "SELECT status, events FROM video_analyses WHERE video_id = 19")
    assert (row["status"], row["events"]) == ("succeeded", 4)


# Issue 19 item 6: killing only the heartbeat's session was reported as "lock lost", though the
# lock session still held the lock. The run stops (no duplicate can hear it any more), says which
# session failed, and, its lock session being alive, records why on its row (exit 75, retried).


def test_a_killed_heartbeat_session_is_named_and_the_lock_session_records_the_failure(video, database_url):
    env = procs.worker_env(
        DATABASE_URL=database_url,
        TEST_ANALYSIS_STEPS="100",
        TEST_ANALYSIS_PAUSE="0.1",
        ANALYZER_HEARTBEAT_INTERVAL="0.2",
    )
    worker = procs.start(["run", str(video), "--video-id", "19"], env)
    beating = "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'analyzer:%%:hb'"
    [session] = procs.wait_for(lambda: query(database_url, beating), what="the heartbeat session")
    query(database_url, "SELECT pg_terminate_backend(%s, 5000)", session["pid"])
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == ExitCode.RETRYABLE, err[-2000:]
    [error] = [json.loads(line) for line in err.splitlines() if '"level": "ERROR"' in line]
    assert error["message"].startswith("heartbeat session failed: terminating connection due to administrator command")
    assert "terminating connection" in error["message"] and "lock lost" not in error["message"]
    assert "(the lock session, backend " in error["message"] and "was not checked); not writing" in error["message"]
    [row] = query(database_url, "SELECT status, exit_code, error FROM video_analyses WHERE video_id = 19")
    assert (row["status"], row["exit_code"]) == ("failed", ExitCode.RETRYABLE)
    assert row["error"].startswith("heartbeat session failed")
    assert not query(database_url, "SELECT 1 FROM events")
