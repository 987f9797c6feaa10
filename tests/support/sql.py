"""One statement against a test database, on a connection of its own."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row


def query(url: str, sql: str, *params: object) -> list[dict]:
    """The rows of ``sql`` (none for a statement without a result), run in autocommit."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
