"""Versioned, idempotent schema migrations, applied under their own advisory lock.

Each ``sql/migrations/NNNN_name.sql`` runs once, in its own transaction, and is recorded in
``schema_migrations``; concurrent workers starting together wait for one another on the lock
(each wait bounded by the session's ``lock_timeout``: a worker that gives up exits 75 and is
retried). The bookkeeping statements are named queries of ``sql/queries.sql``.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

from analyzer.store import db

log = logging.getLogger(__name__)

MIGRATION_LOCK = {"namespace": 0x76615F6D, "key": 0}  # advisory-lock key pair reserved for migrations ("va_m")


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order."""
    folder = resources.files("analyzer.store").joinpath("sql/migrations")
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations this database lacks; returns the versions applied.

    Raises:
        InfrastructureError: the database is unreachable, or the lock or a statement timed out.
    """
    applied: list[str] = []
    db.fetch_one(conn, "migration_lock", **MIGRATION_LOCK)
    try:
        db.execute(conn, "create_schema_migrations")
        done = {row["version"] for row in db.fetch_all(conn, "applied_migrations")}
        for version, statements in migration_files():
            if version in done:
                continue
            with db.translate_errors(f"applying migration {version}"), conn.transaction():
                conn.execute(db.queries()["migration_without_statement_timeout"])
                conn.execute(statements)
                conn.execute(db.queries()["record_migration"], {"version": version})
            log.info("schema migration %s applied", version, extra={"action": "migrate"})
            applied.append(version)
    finally:
        if not conn.closed and not conn.broken:
            db.fetch_one(conn, "migration_unlock", **MIGRATION_LOCK)
    return applied
