"""PostgreSQL connections: keepalives, named queries, URL masking and error translation.

Queries live in ``sql/queries.sql``, one block per query headed ``-- name --``; they are parsed
once and run with named parameters. psycopg errors are translated here, once, into the
project's exceptions, so callers know whether a retry helps.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from analyzer.errors import InfrastructureError

CONNECT_TIMEOUT = 10  # seconds
# A holder that vanished without closing its socket (instance lost) is noticed by the server
# after idle + interval * count = 20 + 10 * 4 = 60 seconds, which then frees its advisory lock.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 20, "keepalives_interval": 10, "keepalives_count": 4}


def mask_url(url: str | None) -> str | None:
    """The URL with its password replaced by ``***``, safe to log."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@functools.cache
def queries() -> dict[str, str]:
    """Every named query of ``sql/queries.sql``."""
    text = resources.files("analyzer").joinpath("sql/queries.sql").read_text()
    blocks = re.split(r"^-- (\w+) --\n", text, flags=re.MULTILINE)[1:]
    return {name: body.strip() for name, body in zip(blocks[::2], blocks[1::2])}


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn a lost or refused database connection into a retryable InfrastructureError."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # refused, lost, or closed
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InfrastructureError(f"database error while {what}: {reason}") from exc


def connect(url: str, application_name: str) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection with TCP keepalives, named for ``pg_stat_activity``."""
    with translate_errors("connecting"):
        return psycopg.connect(
            url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=application_name[:63],
            **KEEPALIVES,
        )


def fetch_one(conn: psycopg.Connection, name: str, **params: Any) -> dict[str, Any] | None:
    with translate_errors(name.replace("_", " ")):
        return conn.execute(queries()[name], params).fetchone()


def execute(conn: psycopg.Connection, name: str, **params: Any) -> int:
    """Run a named statement; returns the number of rows it touched."""
    with translate_errors(name.replace("_", " ")):
        return conn.execute(queries()[name], params).rowcount
