"""The PostgreSQL store: the per-video advisory lock, the status row, and the events write.

Exactly-once rests on three things kept here:
1. ``pg_try_advisory_lock(LOCK_NAMESPACE, video_id)`` on one connection held for the whole run;
2. a ``run_id`` written into ``video_analyses`` when the run starts (the fence);
3. one transaction that re-checks the fence, upserts the events, deletes the stale ones and
   marks the run succeeded, on the same connection that holds the lock.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import psycopg
from psycopg import sql

from analyzer.errors import ExitCode, InfrastructureError, LockLost, SettingsError, VideoMismatch
from analyzer.events import Event
from analyzer.store import db
from analyzer.store.migrate import migrate

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x56494431  # first key of every video lock ("VID1"); the second is the video_id


class Store:
    """The run's lock connection and everything written through it."""

    def __init__(self, url: str, application_name: str) -> None:
        self.url, self.application_name = url, application_name
        self.conn = db.connect(url, application_name)
        self.backend_pid: int = self.conn.info.backend_pid  # kept: readable once the session is gone
        self.locked_video: int | None = None

    def close(self) -> None:
        """Release the lock (closing the session frees it too) and the connection."""
        if self.locked_video is not None and not self.conn.closed:
            try:
                db.fetch_one(self.conn, "unlock_video", namespace=LOCK_NAMESPACE, video_id=self.locked_video)
            except InfrastructureError:
                pass  # the connection is gone, and the server freed the lock with it
        self.conn.close()

    def migrate(self) -> None:
        """Apply the pending migrations (``analyzer.store.migrate``) through this connection."""
        migrate(self.conn)

    def heartbeat(self, video_id: int, run_id: str, interval: float) -> Heartbeat:
        """The heartbeat thread (not started) of run ``run_id``, watching this store's lock."""
        return Heartbeat(self.url, self.application_name, video_id, run_id, self.backend_pid, interval)

    # Locking

    def try_lock(self, video_id: int) -> bool:
        row = db.fetch_one(self.conn, "try_lock_video", namespace=LOCK_NAMESPACE, video_id=video_id)
        if row and row["locked"]:
            self.locked_video = video_id
            return True
        return False

    def lock_holder(self, video_id: int) -> dict[str, Any] | None:
        """The session holding the video's lock: ``application_name`` (naming the Batch job), ``pid``
        and ``silent_s``, seconds since its last heartbeat (or its start); None once it is free."""
        return db.fetch_one(self.conn, "lock_holder", namespace=LOCK_NAMESPACE, video_id=video_id)

    # The videos table guard

    def check_video_row(
        self, table: str, id_column: str, key_column: str, video_id: int, key: str, *, required: bool
    ) -> bool:
        """Refuse the run when ``table``'s row for video_id is missing or names another key.

        ``table`` (``name`` or ``schema.name``) is looked up exactly as the guard's query names it
        (quoted identifiers: ``Videos`` is "Videos", not videos). Returns whether the guard ran: a
        missing table is no guard only when not ``required``.

        Raises:
            SettingsError: the table is required but does not exist, or lacks a column.
            VideoMismatch: no row for video_id, or its key is another.
            InfrastructureError: the database is unreachable or timed out.
        """
        name = sql.Identifier(*table.split("."))
        with db.translate_errors(f"reading {table}"):
            try:
                present = self.conn.execute(
                    db.queries()["video_table_exists"], {"table": name.as_string(self.conn)}
                ).fetchone()["present"]
                if not present:
                    if required:
                        raise SettingsError(
                            f"invalid setting VIDEOS_TABLE: no table {table} in this database"
                            " (names are case-sensitive; unset VIDEOS_TABLE to run without the guard)"
                        )
                    return False
                query = sql.SQL("SELECT {key} AS key FROM {table} WHERE {id} = %(video_id)s").format(
                    key=sql.Identifier(key_column), table=name, id=sql.Identifier(id_column)
                )
                row = self.conn.execute(query, {"video_id": video_id}).fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except psycopg.errors.UndefinedColumn as exc:
                raise SettingsError(
                    f"invalid setting VIDEOS_ID_COLUMN / VIDEOS_KEY_COLUMN: table {table} has no"
                    f" column {id_column} or {key_column}"
                ) from exc
            except psycopg.Error as exc:  # no permission, an unusable name: a deployment to fix, not retry
                reason = str(exc).strip().splitlines()[0]
                raise SettingsError(f"invalid setting VIDEOS_TABLE: cannot read {table} ({reason})") from exc
        if row is None:
            raise VideoMismatch(f"video {video_id} is not in table {table}: refusing to analyse {key!r}")
        stored = str(row["key"])
        if key_of(stored) != key_of(key):
            raise VideoMismatch(f"video {video_id} is {stored!r} in table {table}, not {key!r}: refusing the run")
        return True

    # The status row

    def get_analysis(self, video_id: int) -> dict[str, Any] | None:
        return db.fetch_one(self.conn, "get_analysis", video_id=video_id)

    def begin_run(
        self,
        video_id: int,
        *,
        input_key: str,
        fingerprint: str | None,
        model_version: str,
        batch_job_id: str | None,
        batch_attempt: int | None,
    ) -> str:
        """Claim the video for a new run; returns the run id that fences off every earlier run."""
        run_id = str(uuid.uuid4())
        db.execute(
            self.conn,
            "begin_run",
            video_id=video_id,
            run_id=run_id,
            input_key=input_key,
            fingerprint=fingerprint,
            model_version=model_version,
            batch_job_id=batch_job_id,
            batch_attempt=batch_attempt,
        )
        return run_id

    def finish_run(self, video_id: int, run_id: str, status: str, exit_code: int, error: str | None = None) -> None:
        """Mark a run that did not succeed (failed, interrupted); only if it still owns the row.

        When the lock connection is broken (terminated, network lost) the row is written through a
        short connection of its own, so that the row never stays ``running`` for want of a session.

        Raises:
            InfrastructureError: neither connection could write it.
        """
        params = {
            "video_id": video_id,
            "run_id": run_id,
            "status": status,
            "exit_code": exit_code,
            "error": error,
            "frames": None,
            "faces": None,
            "events": None,
        }
        if not self.conn.closed and not self.conn.broken:
            try:
                db.execute(self.conn, "finish_run", **params)
                return
            except InfrastructureError:
                if not self.conn.broken:
                    raise
        with db.connect(self.url, self.application_name + ":end", short=True) as conn:
            db.execute(conn, "finish_run", **params)

    def interrupt(self, video_id: int, run_id: str, error: str) -> None:
        """The forced exit's last write, from another thread: end the lock session (rolling back a
        write it may be blocked in, which holds the status row), then mark the run interrupted.

        Raises:
            InfrastructureError: the database could not be reached or the row stayed locked.
        """
        with db.connect(self.url, self.application_name + ":end", short=True) as conn:
            db.fetch_one(conn, "terminate_backend", pid=self.backend_pid, timeout_ms=1000)
            db.execute(
                conn,
                "finish_run",
                video_id=video_id,
                run_id=run_id,
                status="interrupted",
                exit_code=int(ExitCode.INTERRUPTED),
                error=error,
                frames=None,
                faces=None,
                events=None,
            )

    def write_events(
        self, video_id: int, run_id: str, events: list[Event], model_version: str, frames: int, faces: int
    ) -> None:
        """The final write, all or nothing: fence, upsert, delete stale rows, mark succeeded."""
        with db.translate_errors("writing events"), self.conn.transaction():
            row = self.conn.execute(db.queries()["fence"], {"video_id": video_id}).fetchone()
            if row is None or str(row["run_id"]) != run_id:
                raise LockLost(f"video {video_id}: run {run_id} no longer owns the video; not writing")
            with self.conn.cursor() as cur:
                cur.executemany(
                    db.queries()["upsert_event"],
                    [{**e.as_dict(), "video_id": video_id, "model_version": model_version} for e in events],
                )
            self.conn.execute(
                db.queries()["delete_stale_events"], {"video_id": video_id, "event_keys": [e.event_key for e in events]}
            )
            self.conn.execute(
                db.queries()["finish_run"],
                {
                    "video_id": video_id,
                    "run_id": run_id,
                    "status": "succeeded",
                    "frames": frames,
                    "faces": faces,
                    "events": len(events),
                    "error": None,
                    "exit_code": int(ExitCode.OK),
                },
            )


def stale_runs(conn: psycopg.Connection, older_than_s: float, limit: int | None = None) -> list[dict[str, Any]]:
    """Videos whose last run died or gave up (see the ``stale_runs`` query), oldest first:
    ``running`` rows silent for ``older_than_s`` seconds, ``interrupted`` rows, and ``failed`` rows
    whose exit code was retryable."""
    retryable = [int(code) for code in ExitCode if code.retryable]
    return db.fetch_all(conn, "stale_runs", older_than_s=older_than_s, retryable=retryable, limit=limit)


def key_of(key: str) -> str:
    """The object key of an ``s3://bucket/key`` URI or a bare key."""
    return key.removeprefix("s3://").partition("/")[2] if key.startswith("s3://") else key.lstrip("/")


class Heartbeat(threading.Thread):
    """Beats ``heartbeat_at`` and checks that the lock connection still holds the lock.

    It uses a connection of its own, so it never races the lock connection; when the lock's
    backend is gone (terminated, network lost), ``lost`` is set and the run stops without writing.
    When its own session fails, ``lost`` is set too, with ``session = "heartbeat"``: the lock may
    still be held, but no duplicate can hear the run any more, so it stops the same way and the
    error says which session failed.
    """

    def __init__(
        self, url: str, application_name: str, video_id: int, run_id: str, lock_pid: int, interval: float
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.url, self.application_name = url, application_name
        self.video_id, self.run_id, self.lock_pid, self.interval = video_id, run_id, lock_pid, interval
        self.lost = threading.Event()
        self.reason = ""
        self.session = "lock"  # the session that failed: "lock", or "heartbeat" (its own)
        self._stop_beating = threading.Event()

    def run(self) -> None:
        connected = False
        try:
            with db.connect(self.url, self.application_name + ":hb") as conn:
                connected = True
                while not self._stop_beating.wait(self.interval):
                    self.beat(conn)
        except (InfrastructureError, SettingsError) as exc:  # its own session, not the lock's
            # once connected, the server's own words (the query's name would read as the lock's)
            cause = exc.__cause__ if connected and exc.__cause__ is not None else exc
            detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            self._lose(f"{detail} (the lock session, backend {self.lock_pid}, was not checked)", session="heartbeat")

    def beat(self, conn: psycopg.Connection) -> None:
        held = db.fetch_one(conn, "lock_held_by", pid=self.lock_pid, namespace=LOCK_NAMESPACE, video_id=self.video_id)
        if not held or not held["held"]:
            self._lose(f"the lock connection (backend {self.lock_pid}) no longer holds video {self.video_id}")
            return
        db.execute(conn, "heartbeat", video_id=self.video_id, run_id=self.run_id)

    def _lose(self, reason: str, session: str = "lock") -> None:
        if not self._stop_beating.is_set():
            self.reason, self.session = reason, session
            self.lost.set()
            self._stop_beating.set()

    def stop(self) -> None:
        self._stop_beating.set()
