"""The job, top to bottom: lock, guard, skip-if-done, analyse, write once.

The runner writes no SQL (that is ``store``) and knows nothing of frames or models (that is
the analysis function, ``pipeline.analyze_video`` unless a caller passes another).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from analyzer import logs
from analyzer.errors import AnalyzerError, ExitCode, InfrastructureError, Interrupted, LockLost
from analyzer.events import AnalysisResult
from analyzer.files import publish
from analyzer.settings import Settings
from analyzer.shutdown import StopSignals

log = logging.getLogger(__name__)


class Control(Protocol):
    """What the analysis checks between batches: raises Interrupted or LockLost to stop it."""

    def check(self) -> None: ...


AnalyzeFn = Callable[[Path, Settings, Control], AnalysisResult]


class _RunControl:
    def __init__(self, signals: StopSignals) -> None:
        self.signals = signals
        self.heartbeat = None

    def check(self) -> None:
        self.signals.check()
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise LockLost(f"lock lost: {self.heartbeat.reason}; not writing")


def default_analyze() -> AnalyzeFn:
    from analyzer.pipeline import analyze_video  # torch loads here, after the lock is held

    return analyze_video


def model_version(settings: Settings) -> str:
    from models.weights import model_version as version  # light: hashes are constants

    return version(settings.detector, settings.classifier)


def application_name(settings: Settings) -> str:
    """How this run shows in pg_stat_activity (and so to a duplicate that finds the lock taken)."""
    return f"analyzer:job={settings.batch_job_id or 'local'}:pid={os.getpid()}"


class Job:
    def __init__(self, settings: Settings, analyze: AnalyzeFn | None = None) -> None:
        self.settings = settings
        self._analyze = analyze
        self.summary: dict[str, object] = {"outcome": "failed"}

    def run(self) -> ExitCode:
        s = self.settings
        with StopSignals() as signals:
            control = _RunControl(signals)
            if s.database_url:
                return self._run_with_database(control, signals)
            return self._run_locally(control)

    # Without a database: a file lock, and events as JSON

    def _run_locally(self, control: _RunControl) -> ExitCode:
        s = self.settings
        with file_lock(s.lock_dir / f"video-analyzer-{s.video_id}.lock") as locked:
            if not locked:
                self._skip_duplicate(holder=None)
                return ExitCode.OK
            result = self._analyse(control, fingerprint=None)
            control.check()
            self._done(result, stdout_json=s.json_path is None)
            return ExitCode.OK

    # With PostgreSQL: the exactly-once protocol

    def _run_with_database(self, control: _RunControl, signals: StopSignals) -> ExitCode:
        from analyzer.migrate import migrate
        from analyzer.store import Heartbeat, Store

        s = self.settings
        app_name = application_name(s)
        store = Store(str(s.database_url), app_name)
        try:
            migrate(store.conn)
            if not store.try_lock(s.video_id):
                self._skip_duplicate(holder=store.lock_holder(s.video_id))
                return ExitCode.OK
            store.check_video_row(s.videos_table, s.videos_id_column, s.videos_key_column, s.video_id,
                                  s.video_key)
            version = model_version(s)
            fingerprint = self._fingerprint()
            if self._already_done(store.get_analysis(s.video_id), fingerprint, version):
                return ExitCode.OK
            run_id = store.begin_run(s.video_id, input_key=s.video_key, fingerprint=fingerprint,
                                     model_version=version, batch_job_id=s.batch_job_id,
                                     batch_attempt=s.batch_attempt)
            logs.CONTEXT["run_id"] = run_id
            signals.on_force = lambda: _mark_interrupted(str(s.database_url), s.video_id, run_id)
            log.info("video %s: run started", s.video_id, extra={"action": "start", "fingerprint": fingerprint})
            heartbeat = Heartbeat(str(s.database_url), app_name, s.video_id, run_id, store.backend_pid,
                                  s.heartbeat_interval)
            control.heartbeat = heartbeat
            heartbeat.start()
            try:
                result = self._analyse(control, fingerprint)
                control.check()
                heartbeat.stop()
                store.write_events(s.video_id, run_id, result.events, version, result.frames, result.faces)
            except Exception as exc:  # known or not, the status row says why the run ended
                _record_failure(store, s.video_id, run_id, exc)
                raise
            finally:
                heartbeat.stop()
            self._done(result)
            return ExitCode.OK
        finally:
            store.close()

    # Steps

    def _skip_duplicate(self, holder: str | None) -> None:
        self.summary = {"outcome": "duplicate"}
        log.info("video %s: duplicate run skipped; the lock is held by %s", self.settings.video_id,
                 holder or "another run", extra={"action": "duplicate_skipped", "holder": holder})

    def _fingerprint(self) -> str:
        from analyzer.source import head_input

        s = self.settings
        return head_input(s.video_key, s.s3_bucket, s.s3_endpoint_url)

    def _already_done(self, previous: dict | None, fingerprint: str, version: str) -> bool:
        s = self.settings
        if previous is None or previous["status"] != "succeeded":
            return False
        same = previous["input_fingerprint"] == fingerprint and previous["model_version"] == version
        if same and not s.force:
            self.summary = {"outcome": "already_done"}
            log.info("video %s: already analysed (run %s, same input and model); skipped; --force re-analyses",
                     s.video_id, previous["run_id"], extra={"action": "already_done"})
            return True
        return False

    def _analyse(self, control: _RunControl, fingerprint: str | None) -> AnalysisResult:
        from analyzer.source import fetch_input

        s = self.settings
        analyze = self._analyze or default_analyze()
        started = time.monotonic()
        with fetch_input(s.video_key, s.s3_bucket, s.s3_endpoint_url, fingerprint=fingerprint) as local:
            control.check()
            result = analyze(local.path, s, control)
        result.stats.setdefault("wall_s", round(time.monotonic() - started, 3))
        return result

    def _done(self, result: AnalysisResult, stdout_json: bool = False) -> None:
        """After the events are stored: JSON output (if asked) and the summary line."""
        if self.settings.json_path is not None or stdout_json:
            _write_json(result, self.settings.json_path)
        self.summary = {"outcome": "succeeded", "frames": result.frames, "faces": result.faces,
                        "events": len(result.events), **result.stats}
        log.info("video %s: succeeded: %s frames, %s faces, %s events", self.settings.video_id,
                 result.frames, result.faces, len(result.events), extra={"action": "summary", **self.summary})


def _record_failure(store, video_id: int, run_id: str, exc: Exception) -> None:
    """Best effort: the status row says why the run ended (if this run still owns it)."""
    status = "interrupted" if isinstance(exc, Interrupted) else "failed"
    if isinstance(exc, LockLost):
        return  # another run owns the row, or our connection is gone
    error = str(exc) if isinstance(exc, AnalyzerError) else f"internal error: {type(exc).__name__}: {exc}"
    try:
        store.finish_run(video_id, run_id, status, error=error)
    except InfrastructureError as db_exc:
        log.warning("video %s: could not record the %s status: %s", video_id, status, db_exc)


def _mark_interrupted(url: str, video_id: int, run_id: str) -> None:
    """Used on a forced exit: a short-lived connection marks the run interrupted."""
    import psycopg

    from analyzer.db import queries

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=1, options="-c statement_timeout=1000") as conn:
            conn.execute(queries()["finish_run"], {"video_id": video_id, "run_id": run_id, "status": "interrupted",
                                                   "frames": None, "faces": None, "events": None,
                                                   "error": "stopped by signal"})
    except psycopg.Error as exc:
        log.warning("video %s: could not mark the run interrupted: %s", video_id, exc)


@contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """A non-blocking exclusive lock on a file; yields whether it was acquired."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(result: AnalysisResult, path: Path | None) -> None:
    """The events as a JSON document, to a file (atomically) or to stdout."""
    document = json.dumps({"events": [e.as_dict() for e in result.events], "frames": result.frames,
                           "faces": result.faces}, indent=2)
    if path is None or str(path) == "-":
        sys.stdout.write(document + "\n")
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(document + "\n")
    publish(tmp.name, path)
