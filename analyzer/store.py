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

from analyzer import db
from analyzer.errors import InfrastructureError, LockLost, VideoMismatch
from analyzer.events import Event

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x56494431  # first key of every video lock ("VID1"); the second is the video_id


class Store:
    """The run's lock connection and everything written through it."""

    def __init__(self, url: str, application_name: str) -> None:
        self.url = url
        self.conn = db.connect(url, application_name)
        self.locked_video: int | None = None

    @property
    def backend_pid(self) -> int:
        return self.conn.info.backend_pid

    def close(self) -> None:
        """Release the lock (closing the session frees it too) and the connection."""
        if self.locked_video is not None and not self.conn.closed:
            try:
                db.fetch_one(self.conn, "unlock_video", namespace=LOCK_NAMESPACE, video_id=self.locked_video)
            except InfrastructureError:
                pass  # the connection is gone, and the server freed the lock with it
        self.conn.close()

    # Locking

    def try_lock(self, video_id: int) -> bool:
        row = db.fetch_one(self.conn, "try_lock_video", namespace=LOCK_NAMESPACE, video_id=video_id)
        if row and row["locked"]:
            self.locked_video = video_id
            return True
        return False

    def lock_holder(self, video_id: int) -> str | None:
        """The application name (naming the Batch job) of the session that holds the lock."""
        row = db.fetch_one(self.conn, "lock_holder", namespace=LOCK_NAMESPACE, video_id=video_id)
        return row["application_name"] if row else None

    # The videos table guard

    def check_video_row(self, table: str, id_column: str, key_column: str, video_id: int, key: str) -> None:
        """Refuse the run when ``table`` exists and its row for video_id is missing or names another key."""
        present = db.fetch_one(self.conn, "video_table_exists", table=table)
        if not present or not present["present"]:
            return
        query = sql.SQL("SELECT {key} AS key FROM {table} WHERE {id} = %(video_id)s").format(
            key=sql.Identifier(key_column), table=sql.Identifier(*table.split(".")), id=sql.Identifier(id_column)
        )
        with db.translate_errors(f"reading {table}"):
            try:
                row = self.conn.execute(query, {"video_id": video_id}).fetchone()
            except psycopg.errors.UndefinedColumn as exc:
                raise VideoMismatch(f"table {table} has no column {id_column} or {key_column}") from exc
        if row is None:
            raise VideoMismatch(f"video {video_id} is not in table {table}: refusing to analyse {key!r}")
        stored = str(row["key"])
        if _key_of(stored) != _key_of(key):
            raise VideoMismatch(f"video {video_id} is {stored!r} in table {table}, not {key!r}: refusing the run")

    # The status row

    def get_analysis(self, video_id: int) -> dict[str, Any] | None:
        return db.fetch_one(self.conn, "get_analysis", video_id=video_id)

    def begin_run(self, video_id: int, *, input_key: str, fingerprint: str | None, model_version: str,
                  batch_job_id: str | None, batch_attempt: int | None) -> str:
        """Claim the video for a new run; returns the run id that fences off every earlier run."""
        run_id = str(uuid.uuid4())
        db.execute(self.conn, "begin_run", video_id=video_id, run_id=run_id, input_key=input_key,
                   fingerprint=fingerprint, model_version=model_version, batch_job_id=batch_job_id,
                   batch_attempt=batch_attempt)
        return run_id

    def finish_run(self, video_id: int, run_id: str, status: str, error: str | None = None) -> None:
        """Mark a run that did not succeed (failed, interrupted); only if it still owns the row."""
        db.execute(self.conn, "finish_run", video_id=video_id, run_id=run_id, status=status,
                   frames=None, faces=None, events=None, error=error)

    def write_events(self, video_id: int, run_id: str, events: list[Event], model_version: str,
                     frames: int, faces: int) -> None:
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
            self.conn.execute(db.queries()["delete_stale_events"],
                              {"video_id": video_id, "event_keys": [e.event_key for e in events]})
            self.conn.execute(db.queries()["finish_run"], {
                "video_id": video_id, "run_id": run_id, "status": "succeeded", "frames": frames,
                "faces": faces, "events": len(events), "error": None})


def _key_of(key: str) -> str:
    """The object key of an ``s3://bucket/key`` URI or a bare key."""
    return key.removeprefix("s3://").partition("/")[2] if key.startswith("s3://") else key.lstrip("/")


class Heartbeat(threading.Thread):
    """Beats ``heartbeat_at`` and checks that the lock connection still holds the lock.

    It uses a connection of its own, so it never races the lock connection; when the lock's
    backend is gone (terminated, network lost), ``lost`` is set and the run stops without writing.
    """

    def __init__(self, url: str, application_name: str, video_id: int, run_id: str, lock_pid: int,
                 interval: float) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.url, self.application_name = url, application_name
        self.video_id, self.run_id, self.lock_pid, self.interval = video_id, run_id, lock_pid, interval
        self.lost = threading.Event()
        self.reason = ""
        self._stop_beating = threading.Event()

    def run(self) -> None:
        try:
            with db.connect(self.url, self.application_name + ":hb") as conn:
                while not self._stop_beating.wait(self.interval):
                    self.beat(conn)
        except InfrastructureError as exc:
            self._lose(str(exc))

    def beat(self, conn: psycopg.Connection) -> None:
        held = db.fetch_one(conn, "lock_held_by", pid=self.lock_pid, namespace=LOCK_NAMESPACE,
                            video_id=self.video_id)
        if not held or not held["held"]:
            self._lose(f"the lock connection (backend {self.lock_pid}) no longer holds video {self.video_id}")
            return
        db.execute(conn, "heartbeat", video_id=self.video_id, run_id=self.run_id)

    def _lose(self, reason: str) -> None:
        if not self._stop_beating.is_set():
            self.reason = reason
            self.lost.set()
            self._stop_beating.set()

    def stop(self) -> None:
        self._stop_beating.set()
