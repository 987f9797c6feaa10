"""Schema migrations against the real server: in order, once, under their own lock, bounded waits."""

from __future__ import annotations

import logging

import psycopg
import pytest
from psycopg.rows import dict_row

from analyzer.errors import ExitCode, InfrastructureError
from analyzer.store import db
from analyzer.store.migrate import MIGRATION_LOCK, migrate, migration_files

pytestmark = pytest.mark.integration

VERSIONS = [version for version, _ in migration_files()]


def _connect(url: str, **options: str) -> psycopg.Connection:
    settings = " ".join(f"-c {name}={value}" for name, value in options.items())
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, options=settings)


def _recorded(conn: psycopg.Connection) -> list[str]:
    return [r["version"] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def _migration_locks(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
        (MIGRATION_LOCK["namespace"], MIGRATION_LOCK["key"]),
    ).fetchone()["n"]


def test_the_migrations_are_the_numbered_files_in_order():
    assert VERSIONS == sorted(VERSIONS) and VERSIONS[:3] == ["0001_initial", "0002_age_range", "0003_run_exit_code"]
    assert all(sql.strip() for _, sql in migration_files())


def test_a_new_database_gets_every_migration_once(database_url, caplog):
    with _connect(database_url) as conn, caplog.at_level(logging.INFO, logger="analyzer.store.migrate"):
        assert migrate(conn) == VERSIONS
        assert _recorded(conn) == VERSIONS
        assert [r.getMessage() for r in caplog.records] == [f"schema migration {v} applied" for v in VERSIONS]
        assert {r.action for r in caplog.records} == {"migrate"}  # the structured log's field
        assert migrate(conn) == []  # idempotent: nothing left to apply
        assert _migration_locks(conn) == 0  # the lock is released after each pass
        columns = {r["column_name"] for r in conn.execute("SELECT column_name FROM information_schema.columns")}
        assert {"age_low", "age_high", "exit_code", "run_id", "event_key", "person_key"} <= columns


def test_only_the_missing_migrations_are_applied(database_url):
    with _connect(database_url) as conn:
        migrate(conn)
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (VERSIONS[-1],))
        assert migrate(conn) == [VERSIONS[-1]]  # the files are idempotent too (IF NOT EXISTS)
        assert _recorded(conn) == VERSIONS


def test_a_worker_waiting_on_the_migration_lock_gives_up_retryably(database_url):
    with _connect(database_url) as holder, _connect(database_url, lock_timeout="200ms") as waiting:
        holder.execute("SELECT pg_advisory_lock(%(namespace)s, %(key)s)", MIGRATION_LOCK)
        with pytest.raises(InfrastructureError) as info:
            migrate(waiting)
        assert info.value.exit_code is ExitCode.RETRYABLE
        assert str(info.value).startswith("database error while migration lock: ")
        holder.execute("SELECT pg_advisory_unlock(%(namespace)s, %(key)s)", MIGRATION_LOCK)
        assert migrate(waiting) == VERSIONS


def test_a_failed_migration_leaves_nothing_behind_and_releases_the_lock(database_url):
    with _connect(database_url) as conn, _connect(database_url) as blocker:
        migrate(conn)
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (VERSIONS[-1],))
        conn.execute("SET lock_timeout = '200ms'")
        blocker.execute("BEGIN")
        # the tables migrations alter, so that the last one waits whichever it alters
        blocker.execute("LOCK TABLE video_analyses, events IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(InfrastructureError, match=f"while applying migration {VERSIONS[-1]}"):
            migrate(conn)
        blocker.execute("ROLLBACK")
        assert _recorded(conn) == VERSIONS[:-1] and _migration_locks(conn) == 0


def test_server_options_put_ours_first_so_the_urls_win():
    ours = db.server_options("postgresql://u@h/db", {"statement_timeout": 5, "lock_timeout": 7})
    assert ours == "-c statement_timeout=5 -c lock_timeout=7"
    both = db.server_options("postgresql://u@h/db?options=-c%20lock_timeout%3D3s", {"lock_timeout": 7})
    assert both == "-c lock_timeout=7 -c lock_timeout=3s"


@pytest.mark.parametrize("short", [False, True])
def test_connect_bounds_the_connect_and_asks_for_keepalives(database_url, short):
    with db.connect(database_url, "analyzer:test", short=short) as conn:
        params = conn.info.get_parameters()
    assert params["connect_timeout"] == str(db.SHORT_CONNECT_TIMEOUT if short else db.CONNECT_TIMEOUT)
    assert {name: params[name] for name in db.KEEPALIVES} == {k: str(v) for k, v in db.KEEPALIVES.items()}


def test_connect_names_the_session_and_translates_refusals(database_url):
    with db.connect(database_url, "analyzer:" + "x" * 80) as conn:
        name = conn.execute("SHOW application_name").fetchone()["application_name"]
        assert name == ("analyzer:" + "x" * 80)[:63] and conn.autocommit
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    with pytest.raises(InfrastructureError, match="^database error while connecting: "):
        db.connect("postgresql://u:pw@127.0.0.1:1/db", "analyzer:test", short=True)
