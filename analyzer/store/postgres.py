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
        """Refuse the run when ``table``'s row for video_id is missing or names another input.

        ``key`` is the run's input as recorded (``s3://bucket/key`` or a local path); the row's key
        must name it (``same_input``: bucket and key when the table holds URIs, else the key).
        ``table`` (``name`` or ``schema.name``) is looked up exactly as the guard's query names it
        (quoted identifiers: ``Videos`` is "Videos", not videos). Returns whether the guard ran: a
        missing table is no guard only when not ``required``.

        Raises:
            SettingsError: the table is required but does not exist, or lacks a column.
            VideoMismatch: no row for video_id, or it names another object.
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
        if not same_input(stored, key):
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

    def finish_run(
        self, video_id: int, run_id: str, status: str, exit_code: int, error: str | None = None
    ) -> str | None:
        """Mark a run that did not succeed (failed, interrupted), only while its row is this run's
        and still ``running``. Returns the status the row now has for this run: ``status``, or
        ``succeeded`` when the run's final write committed first; None when another run owns it.

        When the lock connection is broken (terminated, network lost) the row is written through a
        short connection of its own, so that the row never stays ``running`` for want of a session.

        Raises:
            InfrastructureError: neither connection could write it.
        """
        if not self.conn.closed and not self.conn.broken:
            try:
                return _end_run(self.conn, video_id, run_id, status, exit_code, error)
            except InfrastructureError:
                if not self.conn.broken:
                    raise
        with db.connect(self.url, self.application_name + ":end", short=True) as conn:
            return _end_run(conn, video_id, run_id, status, exit_code, error)

    def interrupt(self, video_id: int, run_id: str, error: str) -> str | None:
        """The forced exit's last write, from another thread: end the lock session (rolling back a
        write it may be blocked in, which holds the status row), then mark the run interrupted.
        Returns the status the row ends with for this run (as ``finish_run``): ``succeeded`` when
        the final write committed before the lock session ended, so the process must exit 0.

        Raises:
            InfrastructureError: the database could not be reached or the row stayed locked.
        """
        with db.connect(self.url, self.application_name + ":end", short=True) as conn:
            db.fetch_one(conn, "terminate_backend", pid=self.backend_pid, timeout_ms=1000)
            return _end_run(conn, video_id, run_id, "interrupted", int(ExitCode.INTERRUPTED), error)

    def record_end(
        self,
        video_id: int,
        *,
        input_key: str,
        model_version: str,
        batch_job_id: str | None,
        batch_attempt: int | None,
        status: str,
        exit_code: int,
        error: str,
        forced: bool = False,
    ) -> bool:
        """The row of a run that ended before ``begin_run`` (see the ``record_end`` query).

        Written on the lock connection when it holds the video, else (``forced``: from the forced
        exit, which first ends the lock session; or before the lock was taken) on a short
        connection that must take the video's lock first: when another run holds the video, its
        row is its own and nothing is written. Returns whether a row was written.

        Raises:
            InfrastructureError: the database could not be reached, or the row not written.
        """
        params = {
            "video_id": video_id,
            "run_id": str(uuid.uuid4()),
            "input_key": input_key,
            "model_version": model_version,
            "batch_job_id": batch_job_id,
            "batch_attempt": batch_attempt,
            "status": status,
            "exit_code": exit_code,
            "error": error,
        }
        own = self.locked_video == video_id and not forced and not self.conn.closed and not self.conn.broken
        with db.translate_errors("recording the run's end"):
            try:
                if own:
                    return db.fetch_one(self.conn, "record_end", **params) is not None
                with db.connect(self.url, self.application_name + ":end", short=True) as conn:
                    if forced:
                        db.fetch_one(conn, "terminate_backend", pid=self.backend_pid, timeout_ms=1000)
                    locked = db.fetch_one(conn, "try_lock_video", namespace=LOCK_NAMESPACE, video_id=video_id)
                    if not locked or not locked["locked"]:
                        return False  # closing the connection below frees the lock when it was taken
                    return db.fetch_one(conn, "record_end", **params) is not None
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except psycopg.Error as exc:  # e.g. no video_analyses table yet: the first migration never ran
                raise InfrastructureError(f"could not record the run's end: {exc.diag.message_primary}") from exc

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
                db.queries()["succeed_run"],
                {"video_id": video_id, "run_id": run_id, "frames": frames, "faces": faces, "events": len(events)},
            )


def _end_run(
    conn: psycopg.Connection, video_id: int, run_id: str, status: str, exit_code: int, error: str | None
) -> str | None:
    """``finish_run`` on ``conn``; the status the row ends with for this run (None: not this run's)."""
    params = {"video_id": video_id, "run_id": run_id}
    ended = db.fetch_one(conn, "finish_run", status=status, exit_code=exit_code, error=error, **params)
    row = ended or db.fetch_one(conn, "run_status", **params)
    return row["status"] if row else None


# The stale sweep (analyzer/fleet/sweep.py): reading the stale rows and counting resubmissions


def stale_runs(
    conn: psycopg.Connection, older_than_s: float, limit: int | None = None, pending_s: float = 0.0
) -> list[dict[str, Any]]:
    """Videos whose last run died or gave up (see the ``stale_runs`` query), oldest first:
    ``running`` rows silent for ``older_than_s`` seconds, ``interrupted`` rows, and ``failed`` rows
    whose exit code was retryable; not those given up on, nor those resubmitted within
    ``pending_s`` seconds whose job has not begun a run since."""
    retryable = [int(code) for code in ExitCode if code.retryable]
    return db.fetch_all(
        conn, "stale_runs", older_than_s=older_than_s, retryable=retryable, limit=limit, pending_s=pending_s
    )


def count_resubmit(conn: psycopg.Connection, row: dict[str, Any]) -> bool:
    """Count one resubmission of a ``stale_runs`` row; False when the row changed meanwhile."""
    counted = db.fetch_one(
        conn, "count_resubmit", video_id=row["video_id"], run_id=row["run_id"], resubmits=row["resubmits"]
    )
    return counted is not None


def given_up_runs(conn: psycopg.Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """The videos the sweep gave up on, oldest first (``given_up_at`` set; a success clears it)."""
    return db.fetch_all(conn, "given_up_runs", limit=limit)


def give_up(conn: psycopg.Connection, row: dict[str, Any]) -> bool:
    """Mark a ``stale_runs`` row given up on; True only the first time."""
    return db.fetch_one(conn, "give_up", video_id=row["video_id"], run_id=row["run_id"]) is not None


def key_of(key: str) -> str:
    """The object key of an ``s3://bucket/key`` URI or a bare key."""
    return key.removeprefix("s3://").partition("/")[2] if key.startswith("s3://") else key.lstrip("/")


def same_input(stored: str, given: str) -> bool:
    """Whether a videos-table key names the run's input: the bucket and key when both are
    ``s3://bucket/key`` URIs (the table says the bucket only that way), else the keys."""
    if stored.startswith("s3://") and given.startswith("s3://"):
        return stored == given
    return key_of(stored) == key_of(given)


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
