"""The job in-process against the real PostgreSQL server (``store=None``: the store at DATABASE_URL):
the schema it makes, the session it names, the heartbeat it keeps, the videos-table guard's columns.
Only the analysis is a stand-in (``stepped_analysis``)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from analyzer.analysis.control import Control
from analyzer.errors import ExitCode, VideoMismatch
from analyzer.events import AnalysisResult
from analyzer.job.runner import Job, model_version
from analyzer.settings import Settings
from analyzer.source.inputs import head_input
from analyzer.store.postgres import Store
from tests.support.sql import query
from tests.support.worker import stepped_analysis

pytestmark = pytest.mark.integration

VIDEO_ID = 42


@pytest.fixture
def video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_ANALYSIS_PAUSE", "0")
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded: the analysis step derives its events from these bytes")
    return path


def settings(video: Path, database_url: str, **overrides: object) -> Settings:
    return Settings(
        video_key=str(video), video_id=VIDEO_ID, database_url=database_url, lock_dir=video.parent, **overrides
    )


def test_a_run_on_a_new_database_makes_its_schema_names_its_session_and_beats(video: Path, database_url: str) -> None:
    s = settings(video, database_url, batch_job_id="job-7", batch_attempt=2, heartbeat_interval=0.02)
    seen: dict = {}

    def watched(path: Path, s: Settings, control: Control) -> AnalysisResult:
        deadline = time.monotonic() + 5
        while not query(database_url, "SELECT 1 FROM video_analyses WHERE heartbeat_at > started_at"):
            assert time.monotonic() < deadline, "no heartbeat"
            control.check()
        seen["sessions"] = [
            r["application_name"] for r in query(database_url, "SELECT application_name FROM pg_stat_activity")
        ]
        return stepped_analysis(path, s, control)

    done = Job(s, analyze=watched, store=None)
    assert done.run() is ExitCode.OK and done.summary["outcome"] == "succeeded"
    name = f"analyzer:job=job-7:pid={os.getpid()}"
    assert name in seen["sessions"] and f"{name}:hb" in seen["sessions"]
    [row] = query(database_url, "SELECT * FROM video_analyses")
    assert (row["video_id"], row["status"], row["events"], row["batch_job_id"], row["batch_attempt"]) == (
        VIDEO_ID,
        "succeeded",
        4,
        "job-7",
        2,
    )
    assert row["input_fingerprint"] == head_input(str(video), None) and row["model_version"] == model_version(s)
    assert len(query(database_url, "SELECT * FROM events WHERE video_id = %s", VIDEO_ID)) == 4
    assert not query(database_url, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")
    again = Job(s, analyze=stepped_analysis, store=None)
    assert again.run() is ExitCode.OK and again.summary == {"outcome": "already_done"}


def test_a_duplicate_names_the_session_that_holds_the_lock(video: Path, database_url: str, caplog) -> None:
    caplog.set_level(logging.INFO)
    holder = Store(database_url, "analyzer:job=first:pid=1")
    try:
        holder.migrate()
        assert holder.try_lock(VIDEO_ID)
        duplicate = Job(settings(video, database_url), analyze=stepped_analysis, store=None)
        assert duplicate.run() is ExitCode.OK and duplicate.summary == {"outcome": "duplicate"}
    finally:
        holder.close()
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "duplicate_skipped"]
    assert record.holder == "analyzer:job=first:pid=1"
    assert not query(database_url, "SELECT 1 FROM video_analyses")


def test_the_guard_reads_the_named_table_and_columns(video: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE clips (clip_id bigint PRIMARY KEY, path text, other text)")
    query(database_url, "INSERT INTO clips VALUES (%s, %s, 'elsewhere.mp4')", VIDEO_ID, str(video))
    s = settings(video, database_url, videos_table="clips", videos_id_column="clip_id", videos_key_column="path")
    assert Job(s, analyze=stepped_analysis, store=None).run() is ExitCode.OK
    other = settings(video, database_url, videos_table="clips", videos_id_column="clip_id", videos_key_column="other")
    with pytest.raises(VideoMismatch):
        Job(other, analyze=stepped_analysis, store=None).run()


def test_an_s3_input_is_downloaded_into_the_run_folder_and_removed(
    video: Path, database_url: str, s3_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in s3_server.env().items():
        if name not in ("S3_ENDPOINT_URL", "S3_BUCKET"):  # the run's settings name them
            monkeypatch.setenv(name, value)
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    key = f"videos/{uuid.uuid4()}/clip.mp4"
    etag = s3_server.upload(video, key)
    seen: list[Path] = []

    def read(path: Path, s: Settings, control: Control) -> AnalysisResult:
        assert path.read_bytes() == video.read_bytes()
        seen.append(path)
        return stepped_analysis(path, s, control)

    s = Settings(
        video_key=key,
        video_id=VIDEO_ID,
        s3_bucket=s3_server.bucket,
        s3_endpoint_url=s3_server.endpoint_url,
        database_url=database_url,
        lock_dir=tmp_path,
    )
    assert Job(s, analyze=read, store=None).run() is ExitCode.OK
    [path] = seen
    assert path.parent.parent == system_tmp and path.parent.name.startswith("analyzer-run-")
    assert list(system_tmp.iterdir()) == []
    [row] = query(database_url, "SELECT input_key, input_fingerprint FROM video_analyses")
    assert row == {
        "input_key": f"s3://{s3_server.bucket}/{key}",
        "input_fingerprint": f"etag:{etag}:size:{video.stat().st_size}",
    }
