"""Versioned, idempotent schema migrations, applied under their own advisory lock.

Each ``sql/migrations/NNNN_name.sql`` runs once, in its own transaction, and is recorded in
``schema_migrations``; concurrent workers starting together wait for one another on the lock.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

from analyzer.db import translate_errors

log = logging.getLogger(__name__)

MIGRATION_LOCK = (0x76615F6D, 0)  # advisory-lock key pair reserved for migrations ("va_m")


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order."""
    folder = resources.files("analyzer").joinpath("sql/migrations")
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations this database lacks; returns the versions applied."""
    applied: list[str] = []
    with translate_errors("migrating the schema"):
        conn.execute("SELECT pg_advisory_lock(%s, %s)", MIGRATION_LOCK)
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("schema migration %s applied", version, extra={"action": "migrate"})
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", MIGRATION_LOCK)
    return applied
