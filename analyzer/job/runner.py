"""The job, top to bottom: lock, guard, skip-if-done, analyse, write once.

The runner writes no SQL (that is ``store``) and knows nothing of frames or models (that is
the analysis function, ``pipeline.analyze_video`` unless a caller passes another).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from analyzer import logs
from analyzer.analysis.control import Control
from analyzer.errors import (
    AnalyzerError,
    ExitCode,
    HeartbeatLost,
    InfrastructureError,
    Interrupted,
    LockLost,
    SettingsError,
    VideoMismatch,
)
from analyzer.events import AnalysisResult, Event
from analyzer.job.shutdown import StopSignals
from analyzer.settings import Settings, check_writable
from models.files import publish

log = logging.getLogger(__name__)

DEFAULT_VIDEOS_TABLE = "videos"  # checked when it exists; VIDEOS_TABLE makes the table required
STALE_AFTER_BEATS = 6  # heartbeats a lock holder may miss before a duplicate presumes it dead (30 s by default)
FORCED = "stopped by signal: forced exit after the grace period"  # the forced exit's reason


AnalyzeFn = Callable[[Path, Settings, Control], AnalysisResult]


class RunHeartbeat(Protocol):
    """A run's heartbeat: ``lost`` is set (with a ``reason``) when the run's lock is gone, or when
    the heartbeat's own session failed (``session`` says which: "lock" or "heartbeat")."""

    lost: threading.Event
    reason: str
    session: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RunStore(Protocol):
    """What the job needs of its store: ``analyzer.store.postgres.Store``, or in unit tests
    ``analyzer.store.memory.MemoryStore``."""

    def migrate(self) -> None: ...

    def close(self) -> None: ...

    def try_lock(self, video_id: int) -> bool: ...

    def lock_holder(self, video_id: int) -> dict[str, Any] | None: ...

    def check_video_row(
        self, table: str, id_column: str, key_column: str, video_id: int, key: str, *, required: bool
    ) -> bool: ...

    def get_analysis(self, video_id: int) -> dict[str, Any] | None: ...

    def begin_run(
        self,
        video_id: int,
        *,
        input_key: str,
        fingerprint: str | None,
        model_version: str,
        batch_job_id: str | None,
        batch_attempt: int | None,
    ) -> str: ...

    def finish_run(
        self, video_id: int, run_id: str, status: str, exit_code: int, error: str | None = None
    ) -> str | None: ...

    def interrupt(self, video_id: int, run_id: str, error: str) -> str | None: ...

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
    ) -> bool: ...

    def write_events(
        self, video_id: int, run_id: str, events: list[Event], model_version: str, frames: int, faces: int
    ) -> None: ...

    def heartbeat(self, video_id: int, run_id: str, interval: float) -> RunHeartbeat: ...


StoreFactory = Callable[[Settings, str], RunStore]


class _RunControl:
    def __init__(self, signals: StopSignals) -> None:
        self.signals = signals
        self.heartbeat: RunHeartbeat | None = None

    def check(self) -> None:
        self.signals.check()
        beat = self.heartbeat
        if beat is not None and beat.lost.is_set():
            if beat.session == "heartbeat":
                raise HeartbeatLost(f"heartbeat session failed: {beat.reason}; not writing")
            raise LockLost(f"lock lost: {beat.reason}; not writing")


def default_analyze() -> AnalyzeFn:
    from analyzer.analysis.pipeline import analyze_video  # torch loads here, after the lock is held

    return analyze_video


def model_version(settings: Settings) -> str:
    """The models' version, the digest of the classifier's pooling constants and that of the
    person linking (embedding weights and threshold): a change of any re-analyses stored videos."""
    from analyzer.analysis.people import linking_digest  # light: numpy and constants
    from analyzer.analysis.pooling import pooling_digest
    from models.weights import model_version as version  # light: hashes are constants

    models = version(settings.detector, settings.classifier)
    return f"{models}+pooling-{pooling_digest(settings.classifier)}+people-{linking_digest()}"


def postgres_store(settings: Settings, name: str) -> RunStore:
    """The PostgreSQL store at DATABASE_URL (psycopg loads here, not at import)."""
    from analyzer.store.postgres import Store

    return Store(str(settings.database_url), name)


def recorded_input(settings: Settings) -> str:
    """What the run reads, as its status row records it (and a resubmission reuses it): the full
    ``s3://bucket/key`` of an S3 input, bucket included, or the local path."""
    if settings.is_s3:
        bucket, key = settings.s3_location
        return f"s3://{bucket}/{key}"
    return settings.video_key


def application_name(settings: Settings) -> str:
    """How this run shows in pg_stat_activity (and so to a duplicate that finds the lock taken)."""
    return f"analyzer:job={settings.batch_job_id or 'local'}:pid={os.getpid()}"


class Job:
    """One run of the job.

    Args:
        settings: the resolved settings.
        analyze: the analysis step (``pipeline.analyze_video`` by default).
        store: makes the run's store from the settings and the session's name; by default the
            PostgreSQL store at DATABASE_URL when it is set (else the local run: a file lock, JSON).
    """

    def __init__(self, settings: Settings, analyze: AnalyzeFn | None = None, store: StoreFactory | None = None) -> None:
        self.settings = settings
        self._analyze = analyze
        self._store_factory = store
        self.summary: dict[str, object] = {"outcome": "failed"}
        self._workdir: Path | None = None  # this run's temp folder (the download), removed on any exit
        self._on_interrupt: Callable[[], ExitCode] | None = None  # the forced exit's status write
        self._started = time.monotonic()

    def run(self) -> ExitCode:
        s = self.settings
        self._started = time.monotonic()
        with_database = bool(s.database_url) or self._store_factory is not None
        check_writable(s, lock_dir=not with_database)  # exit 2 now, not after the analysis
        with StopSignals() as signals:
            signals.on_force = self._forced_exit
            control = _RunControl(signals)
            try:
                if with_database:
                    return self._run_with_database(control)
                return self._run_locally(control)
            except AnalyzerError as exc:
                if signals.stop.is_set() and not isinstance(exc, Interrupted):
                    # e.g. the forced exit ended the lock session under a blocked write: a stop, not a failure
                    raise Interrupted(f"stopped by signal ({exc})") from exc
                raise

    def _forced_exit(self) -> ExitCode:
        """On a forced exit (the grace after SIGTERM ran out): what the unwinding would have done;
        returns the exit code, which follows what the database holds (0 if the final write committed)."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if self._on_interrupt is not None:
            return self._on_interrupt()
        return ExitCode.INTERRUPTED

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

    def _run_with_database(self, control: _RunControl) -> ExitCode:
        s = self.settings
        store = (self._store_factory or postgres_store)(s, application_name(s))
        try:
            self._on_interrupt = lambda: self._forced_before_start(store)
            try:
                begun = self._begin(store, control)
            except Exception as exc:  # the run ends before its row said it began: a row says so now
                self._end_unstarted(store, exc, stopped=control.signals.stop.is_set())
                raise
            if begun is None:
                return ExitCode.OK
            run_id, fingerprint, version = begun
            logs.CONTEXT["run_id"] = run_id
            started = time.monotonic()
            self._on_interrupt = lambda: _mark_interrupted(store, s.video_id, run_id, time.monotonic() - started)
            heartbeat = store.heartbeat(s.video_id, run_id, s.heartbeat_interval)
            control.heartbeat = heartbeat
            heartbeat.start()
            try:
                result = self._analyse(control, fingerprint)
                control.check()
                heartbeat.stop()
                store.write_events(s.video_id, run_id, result.events, version, result.frames, result.faces)
            except Exception as exc:  # known or not, the status row says why the run ended
                stopped = control.signals.stop.is_set()
                ended = _record_failure(store, s.video_id, run_id, exc, stopped, time.monotonic() - started)
                if ended != "succeeded":
                    raise
                # The final write committed, and then its connection failed (e.g. the forced exit
                # ended the session just after the commit): the run succeeded, and says so.
                log.warning("video %s: the final write committed before %s", s.video_id, exc)
            finally:
                heartbeat.stop()
            self._done(result)
            return ExitCode.OK
        finally:
            store.close()

    def _begin(self, store: RunStore, control: _RunControl) -> tuple[str, str, str] | None:
        """Everything before the analysis: schema, lock, videos guard, skip if done, the run's row.
        Returns the new run id, the input's fingerprint and the model version, or None when the
        run has nothing to do (a duplicate, or already done)."""
        s = self.settings
        store.migrate()
        if not self._lock(store):
            return None
        self._check_videos_table(store)
        version = model_version(s)  # after the lock: a duplicate's cost stays the lock's
        fingerprint = self._fingerprint()
        if self._already_done(store.get_analysis(s.video_id), fingerprint, version):
            return None
        control.check()  # stopped meanwhile: no run begins (the row says interrupted)
        run_id = store.begin_run(
            s.video_id,
            input_key=recorded_input(s),
            fingerprint=fingerprint,
            model_version=version,
            batch_job_id=s.batch_job_id,
            batch_attempt=s.batch_attempt,
        )
        log.info("video %s: run started", s.video_id, extra={"action": "start", "fingerprint": fingerprint})
        return run_id, fingerprint, version

    def _forced_before_start(self, store: RunStore) -> ExitCode:
        """The forced exit before the run began: its row says interrupted (exit 143)."""
        self._end_unstarted(store, Interrupted(FORCED), stopped=True, forced=True)
        return ExitCode.INTERRUPTED

    def _end_unstarted(self, store: RunStore, exc: Exception, stopped: bool, forced: bool = False) -> None:
        """A row for a run that ended before ``begin_run`` (stopped while waiting for a lock, S3 down,
        object not found...), so that the operator and the stale sweep find the video; written
        only while no other run holds the video (``RunStore.record_end``). Not for a refused run
        (a setting, or a video_id the videos table gives another key): a row under that video_id
        would name the wrong input. Best effort: a failure to write is logged."""
        if isinstance(exc, (SettingsError, VideoMismatch)):
            return
        if stopped and not isinstance(exc, Interrupted):  # e.g. the forced exit ended a lock wait
            exc = Interrupted(f"stopped by signal ({exc})")
        status, code, error = _ending(exc, stopped, time.monotonic() - self._started)
        s = self.settings
        try:
            written = store.record_end(
                s.video_id,
                input_key=recorded_input(s),
                model_version=model_version(s),
                batch_job_id=s.batch_job_id,
                batch_attempt=s.batch_attempt,
                status=status,
                exit_code=int(code),
                error=error,
                forced=forced,
            )
        except InfrastructureError as db_exc:
            log.warning("video %s: could not record the %s status: %s", s.video_id, status, db_exc)
        else:
            if not written:
                log.info(
                    "video %s: %s status not recorded: the video is held by another session, or succeeded before",
                    s.video_id,
                    status,
                )

    # Steps

    def _lock(self, store: RunStore) -> bool:
        """Take the video's lock; False for a duplicate whose holder is alive.

        A holder silent for ``stale_after_s`` (no heartbeat, or a session that started that long
        ago without one) may be dead while the server still holds its session: the run is then
        retryable (exit 75), never a "duplicate" that would leave the video to a dead run.

        Raises:
            InfrastructureError: the holder is silent (exit 75: Batch retries later).
        """
        s = self.settings
        holder = None
        for _ in range(2):  # a holder that finishes between the two queries frees the lock: try again
            if store.try_lock(s.video_id):
                return True
            holder = store.lock_holder(s.video_id)
            if holder is not None:
                break
        silent = holder["silent_s"] if holder else None  # None: the holder's session is not visible to us
        if holder is not None and silent is not None and silent > stale_after_s(s):
            raise InfrastructureError(
                f"video {s.video_id}: the lock is held by {holder['application_name'] or 'an unnamed session'}"
                f" (backend {holder['pid']}), silent for {silent:.0f} s (stale after"
                f" {stale_after_s(s):.0f} s): it may be dead; not skipping as a duplicate, retry later"
            )
        self._skip_duplicate(holder=holder["application_name"] if holder else None)
        return False

    def _check_videos_table(self, store: RunStore) -> None:
        """The guard against a video_id that names another video (exit 7), and one line saying so.

        With VIDEOS_TABLE set the table must exist (a typo is exit 2, never "no guard"); unset,
        the default ``videos`` table is checked when it exists, and the run says when it does not.
        """
        s = self.settings
        table = s.videos_table or DEFAULT_VIDEOS_TABLE
        checked = store.check_video_row(
            table,
            s.videos_id_column,
            s.videos_key_column,
            s.video_id,
            recorded_input(s),
            required=s.videos_table is not None,
        )
        if checked:
            log.info("video %s: checked against table %s", s.video_id, table, extra={"action": "videos_guard"})
        else:
            log.info(
                "video %s: videos-table guard off: no table %s (set VIDEOS_TABLE to require one)",
                s.video_id,
                table,
                extra={"action": "videos_guard"},
            )

    def _skip_duplicate(self, holder: str | None) -> None:
        self.summary = {"outcome": "duplicate"}
        log.info(
            "video %s: duplicate run skipped; the lock is held by %s",
            self.settings.video_id,
            holder or "another run",
            extra={"action": "duplicate_skipped", "holder": holder},
        )

    def _fingerprint(self) -> str:
        from analyzer.source.inputs import head_input

        s = self.settings
        return head_input(s.video_key, s.s3_bucket, s.s3_endpoint_url)

    def _already_done(self, previous: dict[str, Any] | None, fingerprint: str, version: str) -> bool:
        s = self.settings
        if previous is None or previous["status"] != "succeeded":
            return False
        same = previous["input_fingerprint"] == fingerprint and previous["model_version"] == version
        if same and not s.force:
            self.summary = {"outcome": "already_done"}
            log.info(
                "video %s: already analysed (run %s, same input and model); skipped; --force re-analyses",
                s.video_id,
                previous["run_id"],
                extra={"action": "already_done"},
            )
            return True
        return False

    def _analyse(self, control: _RunControl, fingerprint: str | None) -> AnalysisResult:
        from analyzer.source.inputs import fetch_input

        s = self.settings
        analyze = self._analyze or default_analyze()
        started = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="analyzer-run-"))
        try:
            with fetch_input(
                s.video_key, s.s3_bucket, s.s3_endpoint_url, workdir=self._workdir, fingerprint=fingerprint
            ) as local:
                control.check()
                result = analyze(local.path, s, control)
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)
        result.stats.setdefault("wall_s", round(time.monotonic() - started, 3))
        return result

    def _done(self, result: AnalysisResult, stdout_json: bool = False) -> None:
        """After the events are stored: JSON output (if asked) and the summary line."""
        if self.settings.json_path is not None or stdout_json:
            _write_json(result, self.settings.json_path)
        self.summary = {
            "outcome": "succeeded",
            "frames": result.frames,
            "faces": result.faces,
            "events": len(result.events),
            **result.stats,
            "model_version": model_version(self.settings),  # what is stored (the pipeline's says models only)
        }
        log.info(
            "video %s: succeeded: %s frames, %s faces, %s events",
            self.settings.video_id,
            result.frames,
            result.faces,
            len(result.events),
            extra={"action": "summary", **self.summary},
        )


def stale_after_s(settings: Settings) -> float:
    """How long a lock holder may go without a heartbeat before it is presumed dead."""
    return STALE_AFTER_BEATS * settings.heartbeat_interval


def _ending(exc: BaseException, stopped: bool, seconds: float) -> tuple[str, ExitCode, str]:
    """(status, exit code, error) of a run that ended with ``exc``: a stop after as long as the
    job's attempt timeout was most likely that timeout, so the error says how long it ran."""
    interrupted = stopped or isinstance(exc, Interrupted)
    status = "interrupted" if interrupted else "failed"
    code = ExitCode.INTERRUPTED if interrupted else getattr(exc, "exit_code", ExitCode.INTERNAL_ERROR)
    error = str(exc) if isinstance(exc, AnalyzerError) else f"internal error: {type(exc).__name__}: {exc}"
    return status, code, f"{error} (after {seconds:.0f} s)"


def _record_failure(
    store: RunStore, video_id: int, run_id: str, exc: Exception, stopped: bool = False, seconds: float = 0.0
) -> str | None:
    """Best effort: the status row says why the run ended (if this run still owns it and it is
    still running). Returns how the row ended for this run (``succeeded``: the final write
    committed first), None when unknown or another run's."""
    if isinstance(exc, LockLost) and not stopped:
        return None  # another run owns the row, or our connection is gone
    status, code, error = _ending(exc, stopped, seconds)
    try:
        return store.finish_run(video_id, run_id, status, int(code), error=error)
    except InfrastructureError as db_exc:
        log.warning("video %s: could not record the %s status: %s", video_id, status, db_exc)
        return None


def _mark_interrupted(store: RunStore, video_id: int, run_id: str, seconds: float) -> ExitCode:
    """The forced exit's status write (see ``Store.interrupt``); a failure is logged, not raised.
    The exit code follows the row: 0 when the final write committed before the session ended."""
    try:
        ended = store.interrupt(video_id, run_id, f"{FORCED} (after {seconds:.0f} s)")
    except InfrastructureError as exc:
        log.warning("video %s: could not mark the run interrupted: %s", video_id, exc)
        return ExitCode.INTERRUPTED
    if ended == "succeeded":
        log.info("video %s: the final write committed before the forced exit: exit 0", video_id)
        return ExitCode.OK
    return ExitCode.INTERRUPTED


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
    document = json.dumps(
        {"events": [e.as_dict() for e in result.events], "frames": result.frames, "faces": result.faces}, indent=2
    )
    if path is None or str(path) == "-":
        sys.stdout.write(document + "\n")
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(document + "\n")
    publish(tmp.name, path)
