"""An in-memory store with the PostgreSQL store's interface, for unit tests of the job's branches.

One ``MemoryDatabase`` stands for the server: several ``MemoryStore``s (runs) on it contend for
the same video locks and status rows as sessions on PostgreSQL do. Nothing survives the process;
the real exactly-once guarantees are tested against PostgreSQL (tests/integration).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

from analyzer.errors import ExitCode, LockLost, SettingsError, VideoMismatch
from analyzer.events import Event
from analyzer.store.postgres import same_input

_PIDS = itertools.count(1)


class MemoryDatabase:
    """The server's state: who holds each video's lock, the status rows, the events.

    Args:
        videos: the videos table, video_id -> key; None: there is no such table.
    """

    def __init__(self, videos: dict[int, str] | None = None) -> None:
        self.videos = videos
        self.locks: dict[int, MemoryStore] = {}
        self.analyses: dict[int, dict[str, Any]] = {}
        self.events: dict[int, dict[str, dict[str, Any]]] = {}
        self.mutex = threading.Lock()


class MemoryHeartbeat:
    """The heartbeat of a memory store's run: nothing to beat; ``lost`` is set by ``lose``."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.lost = threading.Event()
        self.reason = ""
        self.session = "lock"

    def start(self) -> None:
        self.store.last_beat = time.monotonic()

    def stop(self) -> None:
        pass

    def lose(self, reason: str, session: str = "lock") -> None:
        self.reason, self.session = reason, session
        self.lost.set()


class MemoryStore:
    """One run's session on a ``MemoryDatabase``; the methods of ``analyzer.store.postgres.Store``."""

    def __init__(self, database: MemoryDatabase, application_name: str) -> None:
        self.database, self.application_name = database, application_name
        self.backend_pid = next(_PIDS)
        self.last_beat = time.monotonic()
        self.locked_video: int | None = None

    def migrate(self) -> None:
        """Nothing to migrate: the schema is the dictionaries."""

    def close(self) -> None:
        with self.database.mutex:
            if self.locked_video is not None and self.database.locks.get(self.locked_video) is self:
                del self.database.locks[self.locked_video]
            self.locked_video = None

    def try_lock(self, video_id: int) -> bool:
        with self.database.mutex:
            holder = self.database.locks.setdefault(video_id, self)
        if holder is self:
            self.locked_video = video_id
        return holder is self

    def lock_holder(self, video_id: int) -> dict[str, Any] | None:
        holder = self.database.locks.get(video_id)
        if holder is None:
            return None
        silent = time.monotonic() - holder.last_beat
        return {"application_name": holder.application_name, "pid": holder.backend_pid, "silent_s": silent}

    def check_video_row(
        self, table: str, id_column: str, key_column: str, video_id: int, key: str, *, required: bool
    ) -> bool:
        """As ``Store.check_video_row``, against ``MemoryDatabase.videos`` (the columns are not checked)."""
        videos = self.database.videos
        if videos is None:
            if required:
                raise SettingsError(f"invalid setting VIDEOS_TABLE: no table {table} in this database")
            return False
        stored = videos.get(video_id)
        if stored is None:
            raise VideoMismatch(f"video {video_id} is not in table {table}: refusing to analyse {key!r}")
        if not same_input(stored, key):
            raise VideoMismatch(f"video {video_id} is {stored!r} in table {table}, not {key!r}: refusing the run")
        return True

    def get_analysis(self, video_id: int) -> dict[str, Any] | None:
        row = self.database.analyses.get(video_id)
        return dict(row) if row is not None else None

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
        run_id = str(uuid.uuid4())
        with self.database.mutex:
            self.database.analyses[video_id] = {
                "run_id": run_id,
                "status": "running",
                "input_key": input_key,
                "input_fingerprint": fingerprint,
                "model_version": model_version,
                "batch_job_id": batch_job_id,
                "batch_attempt": batch_attempt,
                "exit_code": None,
                "error": None,
            }
        return run_id

    def finish_run(
        self, video_id: int, run_id: str, status: str, exit_code: int, error: str | None = None
    ) -> str | None:
        """As ``Store.finish_run``: only this run's ``running`` row; returns how the row ended."""
        with self.database.mutex:
            row = self.database.analyses.get(video_id)
            if row is None or row["run_id"] != run_id:
                return None
            if row["status"] == "running":
                row.update(status=status, exit_code=exit_code, error=error)
            return str(row["status"])

    def interrupt(self, video_id: int, run_id: str, error: str) -> str | None:
        return self.finish_run(video_id, run_id, "interrupted", int(ExitCode.INTERRUPTED), error)

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
        """As ``Store.record_end``: only while no other run holds the video; a succeeded row stays."""
        with self.database.mutex:
            holder = self.database.locks.get(video_id)
            if holder is not None and holder is not self:
                return False
            row = self.database.analyses.get(video_id)
            if row is not None and row["status"] == "succeeded":
                return False
            self.database.analyses[video_id] = {
                "run_id": str(uuid.uuid4()),
                "status": status,
                "input_key": input_key,
                "input_fingerprint": None,
                "model_version": model_version,
                "batch_job_id": batch_job_id,
                "batch_attempt": batch_attempt,
                "exit_code": exit_code,
                "error": error,
            }
            return True

    def write_events(
        self, video_id: int, run_id: str, events: list[Event], model_version: str, frames: int, faces: int
    ) -> None:
        """All or nothing, fenced by the run id as on PostgreSQL."""
        with self.database.mutex:
            row = self.database.analyses.get(video_id)
            if row is None or row["run_id"] != run_id:
                raise LockLost(f"video {video_id}: run {run_id} no longer owns the video; not writing")
            self.database.events[video_id] = {
                e.event_key: {**e.as_dict(), "model_version": model_version} for e in events
            }
            row.update(status="succeeded", frames=frames, faces=faces, events=len(events), error=None, exit_code=0)

    def heartbeat(self, video_id: int, run_id: str, interval: float) -> MemoryHeartbeat:
        return MemoryHeartbeat(self)
