"""PostgreSQL connections: dead-peer detection, timeouts, named queries, URL masking, errors.

Queries live in ``sql/queries.sql``, one block per query headed ``-- name --``; they are parsed
once and run with named parameters. psycopg errors are translated here, once, into the
project's exceptions, so callers know whether a retry helps.

Every worker session asks the *server* to notice a dead client (the advisory lock lives in the
server session, so only the server can free it): it checks the client's socket every
``client_connection_check_interval`` while a statement runs (a killed worker whose write waits on
a row lock is noticed within 5 s), and probes an idle peer with TCP keepalives (a vanished host:
20 + 4 x 10 = 60 s). Statements, lock waits and idle open transactions are bounded too, so no
session of a live worker can wait forever either: a timeout is a retryable error (exit 75).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from analyzer.errors import InfrastructureError, SettingsError

CONNECT_TIMEOUT = 10  # seconds
# A holder that vanished without closing its socket (instance lost) is noticed by the server
# after idle + interval * count = 20 + 10 * 4 = 60 seconds, which then frees its advisory lock.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 20, "keepalives_interval": 10, "keepalives_count": 4}
# The same on the server's side, with the server's own check of the client while a statement runs
# (PostgreSQL 14+), and bounds on every statement, lock wait and idle open transaction (ms).
SERVER_SETTINGS = {
    "client_connection_check_interval": 5000,
    "tcp_keepalives_idle": KEEPALIVES["keepalives_idle"],
    "tcp_keepalives_interval": KEEPALIVES["keepalives_interval"],
    "tcp_keepalives_count": KEEPALIVES["keepalives_count"],
    "statement_timeout": 30_000,
    "lock_timeout": 10_000,
    "idle_in_transaction_session_timeout": 60_000,
}
# A forced exit's status write must finish within the few seconds Batch leaves before SIGKILL.
SHORT_SETTINGS = {**SERVER_SETTINGS, "statement_timeout": 2000, "lock_timeout": 1000}
SHORT_CONNECT_TIMEOUT = 2  # seconds (libpq's smallest)


@functools.cache
def queries() -> dict[str, str]:
    """Every named query of ``sql/queries.sql``."""
    text = resources.files("analyzer.store").joinpath("sql/queries.sql").read_text()
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


def server_options(url: str, settings: dict[str, int] = SERVER_SETTINGS) -> str:
    """The ``options`` connection parameter: ``settings`` as ``-c name=value``, then the URL's own
    ``options`` (which therefore win, so a deployment can still override one)."""
    ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
    theirs = conninfo_to_dict(url).get("options")
    return f"{ours} {theirs}" if theirs else ours


def connect(url: str, application_name: str, *, short: bool = False) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection named for ``pg_stat_activity``, with keepalives on both ends and
    the timeouts above (``short``: the tighter ones of a last status write).

    Raises:
        SettingsError: the server refused the URL's credentials or database (see ``refusal``).
        InfrastructureError: the server is unreachable, or refused for any other reason.
    """
    with translate_errors("connecting"):
        try:
            return psycopg.connect(
                url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=SHORT_CONNECT_TIMEOUT if short else CONNECT_TIMEOUT,
                application_name=application_name[:63],
                options=server_options(url, SHORT_SETTINGS if short else SERVER_SETTINGS),
                **KEEPALIVES,
            )
        except psycopg.OperationalError as exc:
            reason = refusal(str(exc))
            if reason is not None:
                raise SettingsError(f"invalid setting DATABASE_URL: the server refused it: {reason}") from exc
            raise


# A wrong password, user or database fails every attempt alike: a setting to fix (exit 2), not a retry
# (75). libpq gives no SQLSTATE for a failed connection, so the server's message is matched (English,
# the server's default lc_messages; in another language such a refusal stays retryable).
_REFUSED = re.compile(
    r"authentication failed for user|no pg_hba\.conf entry|(database|role) \"[^\"]*\" does not exist"
    r"|fe_sendauth: no password supplied"
)


def refusal(message: str) -> str | None:
    """The line of a connection error saying its settings were refused, without libpq's prefix."""
    for line in message.splitlines():
        if _REFUSED.search(line):
            return line.rpartition("FATAL:")[2].strip() if "FATAL:" in line else line.strip()
    return None


def fetch_one(conn: psycopg.Connection, name: str, **params: Any) -> dict[str, Any] | None:
    with translate_errors(name.replace("_", " ")):
        return conn.execute(queries()[name], params).fetchone()


def fetch_all(conn: psycopg.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    with translate_errors(name.replace("_", " ")):
        return conn.execute(queries()[name], params).fetchall()


def execute(conn: psycopg.Connection, name: str, **params: Any) -> int:
    """Run a named statement; returns the number of rows it touched."""
    with translate_errors(name.replace("_", " ")):
        return conn.execute(queries()[name], params).rowcount
