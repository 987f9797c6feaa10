"""The job's branches (done, already done, duplicate, stale holder, fence lost, videos guard) on the
in-memory store: the real runner, source and signals, no PostgreSQL. The same protocol against a
real PostgreSQL server is tests/integration/test_exactly_once.py."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer import logs
from analyzer.analysis.control import Control
from analyzer.errors import (
    ExitCode,
    InfrastructureError,
    InputNotFound,
    InputRejected,
    Interrupted,
    LockLost,
    SettingsError,
    VideoMismatch,
)
from analyzer.events import AnalysisResult
from analyzer.job.runner import Job, application_name, file_lock, model_version
from analyzer.settings import Settings
from analyzer.source.inputs import head_input
from analyzer.store.memory import MemoryDatabase, MemoryStore
from tests.support.exits import Exits
from tests.support.worker import expected_event, stepped_analysis

VIDEO_ID = 42


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANALYSIS_PAUSE", "0")  # nothing here signals the analysis between its steps


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded: the analysis step derives its events from these bytes")
    return path


def settings(video: Path, **overrides: object) -> Settings:
    return Settings(video_key=str(video), video_id=VIDEO_ID, **{"lock_dir": video.parent, **overrides})


def job(database: MemoryDatabase, s: Settings, analyze=stepped_analysis, store: type[MemoryStore] = MemoryStore) -> Job:
    """A job on ``database``, each of its sessions a ``store`` (a MemoryStore that misbehaves)."""
    return Job(s, analyze=analyze, store=lambda _settings, name: store(database, name))


def failing(exc: Exception) -> Callable[[Path, Settings, Control], AnalysisResult]:
    """An analysis step that raises ``exc``."""

    def analyze(path: Path, s: Settings, control: Control) -> AnalysisResult:
        raise exc

    return analyze


def test_a_run_writes_its_events_once_and_the_next_is_already_done(video: Path) -> None:
    database = MemoryDatabase()
    first = job(database, settings(video))
    assert first.run() is ExitCode.OK and first.summary["outcome"] == "succeeded"
    row = database.analyses[VIDEO_ID]
    assert row["status"] == "succeeded" and row["model_version"] == model_version(settings(video))
    assert len(database.events[VIDEO_ID]) == 4
    again = job(database, settings(video))
    assert again.run() is ExitCode.OK and again.summary == {"outcome": "already_done"}
    assert database.analyses[VIDEO_ID]["run_id"] == row["run_id"]
    forced = job(database, settings(video, force=True))
    assert forced.run() is ExitCode.OK and forced.summary["outcome"] == "succeeded"
    assert database.analyses[VIDEO_ID]["run_id"] != row["run_id"]
    assert not database.locks  # every run let go of its lock


def test_a_run_that_ends_before_it_begins_leaves_a_row(tmp_path: Path) -> None:
    database = MemoryDatabase()
    missing = tmp_path / "gone.mp4"
    with pytest.raises(InputNotFound):
        job(database, settings(missing, batch_job_id="job-9")).run()
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["exit_code"], row["input_key"], row["batch_job_id"]) == (
        "failed",
        ExitCode.INPUT_NOT_FOUND,
        str(missing),
        "job-9",
    )
    assert not database.locks


def test_a_refused_run_or_one_stopped_by_a_holder_writes_no_row(video: Path) -> None:
    refusing = MemoryDatabase(videos={VIDEO_ID: "s3://bucket/another.mp4"})
    with pytest.raises(VideoMismatch):
        job(refusing, settings(video)).run()
    assert refusing.analyses == {}  # a row under this video_id would name the wrong input
    database = MemoryDatabase()
    holder = MemoryStore(database, "analyzer:job=first")
    assert holder.try_lock(VIDEO_ID)
    holder.last_beat -= 1.0
    with pytest.raises(InfrastructureError, match="silent"):
        job(database, settings(video, heartbeat_interval=0.01)).run()
    assert database.analyses == {}  # the holder's row is its own


def test_a_duplicate_skips_while_the_holder_beats(video: Path) -> None:
    database = MemoryDatabase()
    holder = MemoryStore(database, "analyzer:job=first")
    assert holder.try_lock(VIDEO_ID)
    duplicate = job(database, settings(video))
    assert duplicate.run() is ExitCode.OK and duplicate.summary == {"outcome": "duplicate"}
    assert VIDEO_ID not in database.analyses


def test_a_silent_holder_is_retryable_not_a_duplicate(video: Path) -> None:
    database = MemoryDatabase()
    holder = MemoryStore(database, "analyzer:job=first")
    assert holder.try_lock(VIDEO_ID)
    s = settings(video, heartbeat_interval=0.01)
    holder.last_beat -= 1.0  # silent for 100 beats
    with pytest.raises(InfrastructureError, match="silent") as caught:
        job(database, s).run()
    assert caught.value.exit_code is ExitCode.RETRYABLE


def test_a_run_fenced_off_during_its_analysis_writes_nothing(video: Path) -> None:
    database = MemoryDatabase()

    def taken_over(path: Path, s: Settings, control: object) -> AnalysisResult:
        result = stepped_analysis(path, s, control)
        other = MemoryStore(database, "analyzer:job=second")  # a later run claims the video
        other.begin_run(
            VIDEO_ID, input_key="x", fingerprint=None, model_version="m", batch_job_id=None, batch_attempt=None
        )
        return result

    with pytest.raises(LockLost) as caught:
        job(database, settings(video), analyze=taken_over).run()
    assert caught.value.exit_code is ExitCode.RETRYABLE
    assert database.analyses[VIDEO_ID]["status"] == "running"  # the later run's row, untouched
    assert VIDEO_ID not in database.events


def test_the_videos_guard_refuses_another_video(video: Path) -> None:
    database = MemoryDatabase(videos={VIDEO_ID: "s3://bucket/another.mp4"})
    with pytest.raises(VideoMismatch) as caught:
        job(database, settings(video)).run()
    assert caught.value.exit_code is ExitCode.VIDEO_MISMATCH
    assert VIDEO_ID not in database.analyses


def test_a_failed_analysis_is_recorded_with_its_exit_code(video: Path) -> None:
    database = MemoryDatabase()
    with pytest.raises(VideoMismatch):
        job(database, settings(video), analyze=failing(VideoMismatch("stand-in for any analyzer error"))).run()
    row = database.analyses[VIDEO_ID]
    assert row["status"] == "failed" and row["exit_code"] == ExitCode.VIDEO_MISMATCH


@pytest.mark.parametrize("change", ["classifier", "detector", "input"])
def test_a_new_model_or_input_is_analysed_again(video: Path, change: str) -> None:
    database = MemoryDatabase()
    assert job(database, settings(video)).run() is ExitCode.OK
    first = dict(database.analyses[VIDEO_ID])
    changed = {"classifier": {"classifier": "insightface"}, "detector": {"detector": "yunet"}}.get(change, {})
    if change == "input":
        video.write_bytes(video.read_bytes() + b" re-uploaded")
    again = job(database, settings(video, **changed))
    assert again.run() is ExitCode.OK and again.summary["outcome"] == "succeeded"
    row = database.analyses[VIDEO_ID]
    assert row["run_id"] != first["run_id"]
    assert (row["model_version"] != first["model_version"]) == (change != "input")
    assert (row["input_fingerprint"] != first["input_fingerprint"]) == (change == "input")


def test_a_bug_in_the_analysis_is_recorded_as_an_internal_error(video: Path) -> None:
    database = MemoryDatabase()
    with pytest.raises(ZeroDivisionError):
        job(database, settings(video), analyze=failing(ZeroDivisionError("division by zero"))).run()
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["exit_code"]) == ("failed", ExitCode.INTERNAL_ERROR)
    assert row["error"].startswith("internal error: ZeroDivisionError: division by zero (after ")
    assert VIDEO_ID not in database.events and not database.locks


# The run's contract in detail: the summary, the log lines, the status row, the files it leaves.

RUNNER_LOG = "analyzer.job.runner"


@pytest.fixture
def run_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder for the run's download folder: empty again after every run."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def context(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(logs, "CONTEXT", {})
    return logs.CONTEXT


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(action, message) of the runner's log lines."""
    return [(getattr(r, "action", None), r.getMessage()) for r in caplog.records if r.name == RUNNER_LOG]


@pytest.fixture
def send(watcher: Callable[[], threading.Thread]) -> Callable[..., threading.Thread]:
    """Sends the running job's signal watcher signals (as Batch's SIGTERM would reach it); with
    ``control``, waits until the run sees the stop, as the analysis does between batches."""

    def send(*signums: int, control: Control | None = None) -> threading.Thread:
        thread = watcher()
        for signum in signums:
            signal.pthread_kill(thread.ident, signum)
        deadline = time.monotonic() + 5
        while control is not None:
            try:
                control.check()
            except Interrupted:
                break
            assert time.monotonic() < deadline, "the stop never came"
            threading.Event().wait(0.001)
        return thread

    return send


class HeldBy(MemoryStore):
    """A session that finds the video locked by ``holder`` (``lock_holder``'s row, or None when the
    holder's session is not visible), with ``silent_s`` exact for the stale rule's boundary."""

    def __init__(self, database: MemoryDatabase, name: str, holder: dict | None) -> None:
        super().__init__(database, name)
        self.holder, self.tries = holder, 0

    def try_lock(self, video_id: int) -> bool:
        self.tries += 1
        return False

    def lock_holder(self, video_id: int) -> dict | None:
        return self.holder


def held_by(database: MemoryDatabase, s: Settings, holder: dict | None) -> tuple[Job, list[HeldBy]]:
    stores: list[HeldBy] = []

    def factory(_settings: Settings, name: str) -> HeldBy:
        stores.append(HeldBy(database, name, holder))
        return stores[-1]

    return Job(s, analyze=stepped_analysis, store=factory), stores


def test_a_fresh_job_and_a_failed_one_say_failed(video: Path) -> None:
    assert Job(settings(video)).summary == {"outcome": "failed"}
    database = MemoryDatabase(videos={VIDEO_ID: "s3://bucket/another.mp4"})
    refused = job(database, settings(video))
    with pytest.raises(VideoMismatch):
        refused.run()
    assert refused.summary == {"outcome": "failed"}


def test_the_session_is_named_for_the_batch_job_and_process(video: Path) -> None:
    assert application_name(settings(video)) == f"analyzer:job=local:pid={os.getpid()}"
    assert application_name(settings(video, batch_job_id="job-7")) == f"analyzer:job=job-7:pid={os.getpid()}"
    database, names = MemoryDatabase(), []

    def factory(s: Settings, name: str) -> MemoryStore:
        names.append(name)
        return MemoryStore(database, name)

    assert Job(settings(video, batch_job_id="job-7"), analyze=stepped_analysis, store=factory).run() is ExitCode.OK
    assert names == [f"analyzer:job=job-7:pid={os.getpid()}"]


def test_a_run_logs_start_and_summary_and_records_who_ran_it(video: Path, caplog, context, run_tmp) -> None:
    caplog.set_level(logging.INFO)
    database = MemoryDatabase()
    s = settings(video, batch_job_id="job-7", batch_attempt=3)
    done = job(database, s)
    assert done.run() is ExitCode.OK
    row = database.analyses[VIDEO_ID]
    fingerprint = head_input(str(video), None)
    assert (row["input_key"], row["input_fingerprint"]) == (str(video), fingerprint)
    assert (row["batch_job_id"], row["batch_attempt"], row["status"]) == ("job-7", 3, "succeeded")
    assert (row["frames"], row["faces"], row["events"]) == (2, 8, 4)
    assert {e["model_version"] for e in database.events[VIDEO_ID].values()} == {model_version(s)}
    assert context["run_id"] == row["run_id"]
    wall_s = done.summary["wall_s"]
    assert done.summary == {
        "outcome": "succeeded",
        "frames": 2,
        "faces": 8,
        "events": 4,
        "wall_s": wall_s,
        "model_version": model_version(s),  # what was stored, whatever the analysis's figures say
    }
    assert 0 <= wall_s < 60
    assert lines(caplog) == [
        ("videos_guard", "video 42: videos-table guard off: no table videos (set VIDEOS_TABLE to require one)"),
        ("start", "video 42: run started"),
        ("summary", "video 42: succeeded: 2 frames, 8 faces, 4 events"),
    ]
    start, summary = [r for r in caplog.records if getattr(r, "action", None) in ("start", "summary")]
    assert start.fingerprint == fingerprint
    assert (summary.outcome, summary.frames, summary.faces, summary.events) == ("succeeded", 2, 8, 4)
    assert list(run_tmp.iterdir()) == []


def test_the_analysis_figures_join_the_summary(video: Path) -> None:
    given = settings(video, sample_fps=2.0)

    def timed(path: Path, s: Settings, control: Control) -> AnalysisResult:
        assert s is given
        result = stepped_analysis(path, s, control)
        result.stats.update(wall_s=12.5, realtime_factor=4.0, model_version="the models alone")
        return result

    done = job(MemoryDatabase(), given, analyze=timed)
    assert done.run() is ExitCode.OK
    assert done.summary == {
        "outcome": "succeeded",
        "frames": 2,
        "faces": 8,
        "events": 4,
        "wall_s": 12.5,
        "realtime_factor": 4.0,
        "model_version": model_version(given),  # the stored version, not the analysis's models alone
    }


@pytest.mark.parametrize("table", [None, "clips"])
def test_the_guard_says_which_table_it_checked(video: Path, caplog, table: str | None) -> None:
    caplog.set_level(logging.INFO)
    database = MemoryDatabase(videos={VIDEO_ID: str(video)})
    assert job(database, settings(video, videos_table=table)).run() is ExitCode.OK
    assert lines(caplog)[0] == ("videos_guard", f"video 42: checked against table {table or 'videos'}")


def test_a_videos_table_that_is_named_must_exist(video: Path) -> None:
    database = MemoryDatabase()
    with pytest.raises(SettingsError, match="no table clips") as caught:
        job(database, settings(video, videos_table="clips")).run()
    assert caught.value.exit_code is ExitCode.BAD_SETTINGS
    assert VIDEO_ID not in database.analyses and not database.locks


def test_a_duplicate_says_who_holds_the_lock(video: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    database = MemoryDatabase()
    assert MemoryStore(database, "analyzer:job=first").try_lock(VIDEO_ID)
    assert job(database, settings(video)).run() is ExitCode.OK
    assert lines(caplog) == [
        ("duplicate_skipped", "video 42: duplicate run skipped; the lock is held by analyzer:job=first")
    ]
    assert caplog.records[-1].holder == "analyzer:job=first"


@pytest.mark.parametrize(
    ("silent_s", "outcome"), [(30.0, "duplicate"), (None, "duplicate"), (31.0, "stale"), (1000.0, "stale")]
)
def test_a_holder_is_stale_after_six_missed_heartbeats(video: Path, silent_s, outcome) -> None:
    holder = {"application_name": "analyzer:job=first", "pid": 77, "silent_s": silent_s}
    duplicate, stores = held_by(MemoryDatabase(), settings(video, heartbeat_interval=5.0), holder)
    if outcome == "duplicate":
        assert duplicate.run() is ExitCode.OK and duplicate.summary == {"outcome": "duplicate"}
        return
    with pytest.raises(InfrastructureError) as caught:
        duplicate.run()
    assert caught.value.exit_code is ExitCode.RETRYABLE and duplicate.summary == {"outcome": "failed"}
    assert str(caught.value) == (
        f"video 42: the lock is held by analyzer:job=first (backend 77), silent for {silent_s:.0f} s"
        " (stale after 30 s): it may be dead; not skipping as a duplicate, retry later"
    )
    assert stores[0].tries == 1


def test_a_stale_unnamed_holder_is_called_so(video: Path) -> None:
    holder = {"application_name": "", "pid": 77, "silent_s": 0.7}
    stale, _ = held_by(MemoryDatabase(), settings(video, heartbeat_interval=0.1), holder)
    with pytest.raises(InfrastructureError, match=r"held by an unnamed session \(backend 77\), silent for 1 s"):
        stale.run()


def test_a_holder_whose_session_is_not_visible_is_another_run(video: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    duplicate, stores = held_by(MemoryDatabase(), settings(video), None)
    assert duplicate.run() is ExitCode.OK and duplicate.summary == {"outcome": "duplicate"}
    assert stores[0].tries == 2  # asked once more: the holder may have just finished
    assert lines(caplog) == [("duplicate_skipped", "video 42: duplicate run skipped; the lock is held by another run")]
    assert caplog.records[-1].holder is None


def test_a_holder_that_finishes_between_the_two_queries_frees_the_lock(video: Path) -> None:
    database = MemoryDatabase()
    holder = MemoryStore(database, "analyzer:job=first")
    assert holder.try_lock(VIDEO_ID)

    class Racing(MemoryStore):
        def lock_holder(self, video_id: int) -> dict | None:
            holder.close()
            return super().lock_holder(video_id)

    racing = job(database, settings(video), store=Racing)
    assert racing.run() is ExitCode.OK and racing.summary["outcome"] == "succeeded"
    assert database.analyses[VIDEO_ID]["status"] == "succeeded"


def test_already_done_names_the_run_that_did_it(video: Path, caplog) -> None:
    database = MemoryDatabase()
    assert job(database, settings(video)).run() is ExitCode.OK
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert job(database, settings(video)).run() is ExitCode.OK
    run_id = database.analyses[VIDEO_ID]["run_id"]
    assert lines(caplog)[-1] == (
        "already_done",
        f"video 42: already analysed (run {run_id}, same input and model); skipped; --force re-analyses",
    )


def test_a_failed_run_is_analysed_again(video: Path) -> None:
    database = MemoryDatabase()
    with pytest.raises(InputRejected):
        job(database, settings(video), analyze=failing(InputRejected("too long"))).run()
    again = job(database, settings(video))
    assert again.run() is ExitCode.OK and again.summary["outcome"] == "succeeded"


def test_an_input_changed_after_its_fingerprint_is_retried_not_analysed(video: Path) -> None:
    database = MemoryDatabase()

    class Reuploaded(MemoryStore):
        def begin_run(self, video_id: int, **kwargs: object) -> str:
            video.write_bytes(b"another upload under the same key")
            return super().begin_run(video_id, **kwargs)

    with pytest.raises(InfrastructureError, match="changed") as caught:
        job(database, settings(video), store=Reuploaded).run()
    assert caught.value.exit_code is ExitCode.RETRYABLE
    assert (database.analyses[VIDEO_ID]["status"], database.analyses[VIDEO_ID]["exit_code"]) == ("failed", 75)
    assert VIDEO_ID not in database.events


class Clock:
    """``time.monotonic`` standing still until a test moves it on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    now = Clock()
    monkeypatch.setattr(time, "monotonic", now)
    return now


def test_the_summary_times_the_analysis_to_the_millisecond(video: Path, clock: Clock) -> None:
    def slow(path: Path, s: Settings, control: Control) -> AnalysisResult:
        clock.now += 1.23456
        return stepped_analysis(path, s, control)

    done = job(MemoryDatabase(), settings(video), analyze=slow)
    assert done.run() is ExitCode.OK and done.summary["wall_s"] == 1.235


def test_the_failure_row_says_how_long_the_run_took(video: Path, run_tmp, clock: Clock) -> None:
    database = MemoryDatabase()

    def rejected(path: Path, s: Settings, control: Control) -> AnalysisResult:
        clock.now += 125.4
        raise InputRejected("too long: 7 h")

    with pytest.raises(InputRejected):
        job(database, settings(video), analyze=rejected).run()
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["exit_code"], row["error"]) == ("failed", 6, "too long: 7 h (after 125 s)")
    assert list(run_tmp.iterdir()) == [] and not database.locks


def test_a_failure_that_cannot_be_recorded_is_logged_and_the_error_kept(video: Path, caplog) -> None:
    class Unreachable(MemoryStore):
        def finish_run(self, *args: object, **kwargs: object) -> None:
            raise InfrastructureError("database unreachable")

    database = MemoryDatabase()
    with pytest.raises(InputRejected):
        job(database, settings(video), analyze=failing(InputRejected("too long: 7 h")), store=Unreachable).run()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "video 42: could not record the failed status: database unreachable"
    assert database.analyses[VIDEO_ID]["status"] == "running" and not database.locks


def test_a_lost_lock_stops_the_run_and_leaves_the_row_to_its_owner(video: Path, run_tmp) -> None:
    database = MemoryDatabase()

    def lost(path: Path, s: Settings, control: Control) -> AnalysisResult:
        control.heartbeat.lose("the lock connection is gone")
        control.check()
        raise AssertionError("check did not stop the run")

    with pytest.raises(LockLost, match="^lock lost: the lock connection is gone; not writing$"):
        job(database, settings(video), analyze=lost).run()
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["error"]) == ("running", None)
    assert VIDEO_ID not in database.events and not database.locks and list(run_tmp.iterdir()) == []


def test_a_stop_during_the_analysis_writes_nothing_and_marks_the_run_interrupted(video: Path, send, run_tmp) -> None:
    database = MemoryDatabase()

    def finishes_its_batch(path: Path, s: Settings, control: Control) -> AnalysisResult:
        send(signal.SIGTERM, control=control)
        return AnalysisResult(events=[], frames=1)

    with pytest.raises(Interrupted, match="^stopped by signal; nothing written$") as caught:
        job(database, settings(video), analyze=finishes_its_batch).run()
    assert caught.value.exit_code is ExitCode.INTERRUPTED
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["exit_code"]) == ("interrupted", 143)
    assert row["error"] == "stopped by signal; nothing written (after 0 s)"
    assert VIDEO_ID not in database.events and list(run_tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("exc", "raised", "error"),
    [
        (LockLost("connection terminated"), Interrupted, "connection terminated (after 0 s)"),
        (InputRejected("too long"), Interrupted, "too long (after 0 s)"),
        (RuntimeError("boom"), RuntimeError, "internal error: RuntimeError: boom (after 0 s)"),
    ],
)
def test_an_error_after_a_stop_is_an_interruption(video: Path, send, exc, raised, error) -> None:
    database = MemoryDatabase()

    def cut_short(path: Path, s: Settings, control: Control) -> AnalysisResult:
        send(signal.SIGTERM, control=control)
        raise exc

    with pytest.raises(raised) as caught:
        job(database, settings(video), analyze=cut_short).run()
    if raised is Interrupted:
        assert str(caught.value) == f"stopped by signal ({exc})" and caught.value.__cause__ is exc
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["exit_code"], row["error"]) == ("interrupted", 143, error)


def forced_exit(database: MemoryDatabase, run_tmp: Path, send, exits: Exits, seen: dict):
    """An analysis stuck in one long call when a second signal forces the exit; ``seen`` gets the
    status row and the temp folder as they were when the process would have ended."""

    def stuck(path: Path, s: Settings, control: Control) -> AnalysisResult:
        assert list(run_tmp.iterdir())[0].name.startswith("analyzer-run-")
        send(signal.SIGTERM, signal.SIGINT, control=control).join(5)  # the watcher ends after the exit
        assert exits.called.is_set()
        seen["row"] = dict(database.analyses.get(VIDEO_ID, {}))
        seen["tmp"] = list(run_tmp.iterdir())
        raise Interrupted("stopped by signal; nothing written")

    return stuck


def test_a_forced_exit_marks_the_run_interrupted_and_removes_the_download(
    video: Path, run_tmp: Path, send, exits: Exits
) -> None:
    database, seen = MemoryDatabase(), {}
    with pytest.raises(Interrupted):
        job(database, settings(video), analyze=forced_exit(database, run_tmp, send, exits, seen)).run()
    assert exits == [ExitCode.INTERRUPTED] and seen["tmp"] == [] and exits.errors == []
    row = seen["row"]
    assert (row["status"], row["exit_code"]) == ("interrupted", 143)
    assert row["error"] == "stopped by signal: forced exit after the grace period (after 0 s)"


def test_a_forced_exit_during_a_blocked_write_marks_the_run_interrupted(video: Path, send, exits: Exits) -> None:
    database, seen = MemoryDatabase(), {}

    class Blocked(MemoryStore):
        def write_events(self, video_id: int, run_id: str, *args: object) -> None:
            send(signal.SIGTERM, signal.SIGINT).join(5)  # the grace ran out while the write waited
            seen["row"] = dict(database.analyses[VIDEO_ID])
            raise LockLost("the forced exit ended the lock session")

    with pytest.raises(Interrupted, match=r"^stopped by signal \(the forced exit ended the lock session\)$"):
        job(database, settings(video), store=Blocked).run()
    assert exits == [ExitCode.INTERRUPTED] and exits.errors == []
    assert (seen["row"]["status"], seen["row"]["exit_code"]) == ("interrupted", 143)
    assert seen["row"]["error"].startswith("stopped by signal: forced exit after the grace period")


def test_a_forced_exit_that_cannot_mark_the_run_says_so(video: Path, run_tmp: Path, send, exits: Exits, caplog) -> None:
    class Unreachable(MemoryStore):
        def interrupt(self, video_id: int, run_id: str, error: str) -> None:
            raise InfrastructureError("database unreachable")

    database, seen = MemoryDatabase(), {}
    stuck = forced_exit(database, run_tmp, send, exits, seen)
    with pytest.raises(Interrupted):
        job(database, settings(video), analyze=stuck, store=Unreachable).run()
    assert exits == [ExitCode.INTERRUPTED] and seen["tmp"] == [] and seen["row"]["status"] == "running"
    assert "video 42: could not mark the run interrupted: database unreachable" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]


def test_a_forced_exit_of_a_local_run_removes_the_download(video: Path, run_tmp: Path, send, exits: Exits) -> None:
    seen: dict = {}
    stuck = forced_exit(MemoryDatabase(), run_tmp, send, exits, seen)
    with pytest.raises(Interrupted):
        Job(settings(video, json_path=video.parent / "out.json"), analyze=stuck).run()
    assert exits == [ExitCode.INTERRUPTED] and seen["tmp"] == [] and exits.errors == []
    assert not (video.parent / "out.json").exists()


# Without a database: the file lock, and the events as JSON


def expected_document(video: Path) -> dict:
    digest = hashlib.sha256(video.read_bytes()).digest()
    return {"events": [expected_event(digest, i).as_dict() for i in range(4)], "frames": 2, "faces": 8}


def test_a_local_run_prints_its_events_as_json(video: Path, capsys, run_tmp) -> None:
    local = Job(settings(video), analyze=stepped_analysis)
    assert local.run() is ExitCode.OK and local.summary["outcome"] == "succeeded"
    out = capsys.readouterr().out
    assert json.loads(out) == expected_document(video) and out.endswith("}\n")
    assert (video.parent / f"video-analyzer-{VIDEO_ID}.lock").exists() and list(run_tmp.iterdir()) == []


def test_a_local_run_prints_to_stdout_for_a_dash(video: Path, capsys) -> None:
    assert Job(settings(video, json_path=Path("-")), analyze=stepped_analysis).run() is ExitCode.OK
    assert json.loads(capsys.readouterr().out) == expected_document(video)
    assert not (video.parent / "-").exists()


@pytest.mark.parametrize("folder", ["new", "existing"])
@pytest.mark.parametrize("with_database", [False, True], ids=["local", "database"])
def test_the_json_file_is_written_whole_and_alone(video: Path, capsys, with_database: bool, folder: str) -> None:
    out = video.parent / "results" / "day" / "out.json"
    if folder == "existing":
        out.parent.mkdir(parents=True)
    s = settings(video, json_path=out, lock_dir=video.parent / "locks" / "here")
    run = job(MemoryDatabase(), s) if with_database else Job(s, analyze=stepped_analysis)
    assert run.run() is ExitCode.OK
    document = expected_document(video)
    assert out.read_text() == json.dumps(document, indent=2) + "\n"
    assert os.listdir(out.parent) == ["out.json"] and capsys.readouterr().out == ""


def test_the_json_file_is_renamed_into_place_from_its_own_folder(video: Path, run_tmp: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == run_tmp.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the temp folder's")
    folder = Path(tempfile.mkdtemp(dir=shm))
    try:
        out = folder / "out.json"
        assert Job(settings(video, json_path=out), analyze=stepped_analysis).run() is ExitCode.OK
        assert json.loads(out.read_text()) == expected_document(video) and os.listdir(folder) == ["out.json"]
    finally:
        shutil.rmtree(folder)


def test_a_database_run_prints_nothing_without_a_json_path(video: Path, capsys) -> None:
    assert job(MemoryDatabase(), settings(video)).run() is ExitCode.OK
    assert capsys.readouterr().out == ""


def test_a_local_duplicate_skips_while_the_file_lock_is_held(video: Path, capsys, caplog) -> None:
    caplog.set_level(logging.INFO)
    with file_lock(video.parent / f"video-analyzer-{VIDEO_ID}.lock") as locked:
        assert locked
        duplicate = Job(settings(video), analyze=stepped_analysis)
        assert duplicate.run() is ExitCode.OK and duplicate.summary == {"outcome": "duplicate"}
    assert capsys.readouterr().out == ""
    assert lines(caplog) == [("duplicate_skipped", "video 42: duplicate run skipped; the lock is held by another run")]
    with file_lock(video.parent / f"video-analyzer-{VIDEO_ID}.lock") as locked:
        assert locked  # let go


def test_a_local_stop_writes_no_json(video: Path, send) -> None:
    def finishes_its_batch(path: Path, s: Settings, control: Control) -> AnalysisResult:
        result = stepped_analysis(path, s, control)
        send(signal.SIGINT, control=control)
        return result

    out = video.parent / "out.json"
    with pytest.raises(Interrupted):
        Job(settings(video, json_path=out), analyze=finishes_its_batch).run()
    assert not out.exists()
