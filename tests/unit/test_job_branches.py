"""The job's branches (done, already done, duplicate, stale holder, fence lost, videos guard) on the
in-memory store: the real runner, source and signals, no PostgreSQL. The same protocol against a
real PostgreSQL server is tests/integration/test_exactly_once.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.errors import ExitCode, InfrastructureError, LockLost, VideoMismatch
from analyzer.events import AnalysisResult
from analyzer.job.runner import Job, model_version
from analyzer.settings import Settings
from analyzer.store.memory import MemoryDatabase, MemoryStore
from tests.support.worker import stepped_analysis

VIDEO_ID = 42


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded: the analysis step derives its events from these bytes")
    return path


def settings(video: Path, **overrides: object) -> Settings:
    return Settings(video_key=str(video), video_id=VIDEO_ID, lock_dir=video.parent, **overrides)


def job(database: MemoryDatabase, s: Settings, analyze=stepped_analysis) -> Job:
    return Job(s, analyze=analyze, store=lambda _settings, name: MemoryStore(database, name))


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

    def broken(path: Path, s: Settings, control: object) -> AnalysisResult:
        raise VideoMismatch("stand-in for any analyzer error")

    with pytest.raises(VideoMismatch):
        job(database, settings(video), analyze=broken).run()
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

    def buggy(path: Path, s: Settings, control: object) -> AnalysisResult:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        job(database, settings(video), analyze=buggy).run()
    row = database.analyses[VIDEO_ID]
    assert (row["status"], row["exit_code"]) == ("failed", ExitCode.INTERNAL_ERROR)
    assert row["error"].startswith("internal error: ZeroDivisionError: division by zero (after ")
    assert VIDEO_ID not in database.events and not database.locks
