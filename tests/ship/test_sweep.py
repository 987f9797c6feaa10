"""The stale sweep (issue 19 items 1 and 4) against moto's Batch, a real PostgreSQL and, for the
bucket, a real S3 server: what `analyzer submit --stale` and the scheduled dispatcher Lambda run."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from analyzer.errors import ExitCode, SettingsError
from analyzer.fleet import dispatch
from analyzer.fleet.sweep import SweepSettings, sweep
from tests.integration.test_exactly_once import _events, _status, _status_is
from tests.integration.test_reliability import _beating, _hold_lock
from tests.ship.conftest import BUCKET, DEFINITION, QUEUE, REPO, job_env
from tests.ship.test_dispatch import _lambda_runtime_packages
from tests.ship.test_metrics import check_emf
from tests.ship.test_submit import run as submit
from tests.support import procs
from tests.support.sql import query
from tests.support.worker import expected_event

pytestmark = pytest.mark.integration

SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, "resources": ["arn:rule"]}
VIDEO_ID = 4242  # test_exactly_once's, whose helpers read its row


@pytest.fixture
def migrated(pg_server) -> str:
    from analyzer.store import db
    from analyzer.store.migrate import migrate

    url = pg_server.create_database()
    with db.connect(url, "test") as conn:
        migrate(conn)
    return url


def add_row(url: str, video_id: int, status: str, *, age_s: float = 3600, exit_code: int | None = None, **more) -> None:
    """A video_analyses row whose last heartbeat (and start) was ``age_s`` seconds ago."""
    columns = {"input_key": f"s3://{BUCKET}/videos/{video_id}.mp4", "exit_code": exit_code, **more}
    names = ", ".join(columns)
    query(
        url,
        f"INSERT INTO video_analyses (video_id, run_id, status, model_version, heartbeat_at, started_at, {names})"
        f" VALUES (%s, gen_random_uuid(), %s, 'm', now() - make_interval(secs => %s),"
        f" now() - make_interval(secs => %s), {', '.join(['%s'] * len(columns))})",
        video_id,
        status,
        age_s,
        age_s,
        *columns.values(),
    )


def row(url: str, video_id: int) -> dict:
    return query(url, "SELECT * FROM video_analyses WHERE video_id = %s", video_id)[0]


def emf_lines(text: str) -> list[dict]:
    docs = [json.loads(line) for line in text.splitlines() if line.startswith('{"StaleRuns')]
    for doc in docs:
        check_emf(doc)
    return docs


def scheduled(monkeypatch, url: str, **env: str) -> dict:
    """The dispatcher Lambda invoked by the EventBridge schedule, with its environment."""
    monkeypatch.setenv("DATABASE_URL", url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return dispatch.handler(SCHEDULE, None)


# Item 4: the scheduled sweep


def test_the_schedule_runs_the_sweep_through_the_dispatcher(stack, migrated, monkeypatch, capsys):
    add_row(migrated, 201, "running", age_s=3600)  # heartbeat stopped an hour ago
    add_row(migrated, 202, "running", age_s=5)  # alive
    add_row(migrated, 203, "interrupted", exit_code=143)
    add_row(migrated, 204, "failed", exit_code=75)
    add_row(migrated, 205, "failed", exit_code=5)  # a retry would fail the same way
    add_row(migrated, 206, "succeeded", exit_code=0)
    assert scheduled(monkeypatch, migrated) == {"resubmitted": 3, "given_up": 0}
    jobs = {job["jobName"]: job_env(job) for job in stack.jobs()}
    assert sorted(jobs) == ["video-process-201", "video-process-203", "video-process-204"]
    assert jobs["video-process-203"]["VideoKey"] == "videos/203.mp4"
    assert [row(migrated, v)["resubmits"] for v in (201, 202, 203, 204, 205, 206)] == [1, 0, 1, 1, 0, 0]
    [metrics] = emf_lines(capsys.readouterr().out)
    assert (metrics["StaleRunsResubmitted"], metrics["StaleRunsGivenUp"]) == (3, 0)
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "VideoAnalyzer"


def test_the_lambda_zip_runs_the_scheduled_sweep(stack, migrated, tmp_path, monkeypatch):
    """The zip holds what the sweep needs (its modules and the store's queries.sql); psycopg comes
    as ``package-dispatcher.sh --with-psycopg`` adds it (linked here from this environment)."""
    add_row(migrated, 801, "interrupted", exit_code=143)
    archive = tmp_path / "dispatcher.zip"
    subprocess.run(
        ["bash", str(REPO / "deploy" / "package-dispatcher.sh"), str(archive)], check=True, capture_output=True
    )
    runtime = _lambda_runtime_packages(tmp_path / "runtime")
    for name in ("psycopg", "psycopg_binary", "typing_extensions"):
        origin = Path(importlib.util.find_spec(name).origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    code = (
        "import json, sys; sys.path[:0] = sys.argv[1:3]; import analyzer.fleet.dispatch as d; "
        "assert d.__file__.startswith(sys.argv[1]), d.__file__; "
        "print(json.dumps(d.handler(json.loads(sys.argv[3]), None)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(archive), str(runtime), json.dumps(SCHEDULE)],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": migrated},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip().splitlines()
    assert json.loads(out[-1]) == {"resubmitted": 1, "given_up": 0}
    assert [(m["StaleRunsResubmitted"], m["StaleRunsGivenUp"]) for m in emf_lines(result.stdout)] == [(1, 0)]
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-801"]


def test_the_sweep_settings_come_from_the_lambda_environment(stack, migrated, monkeypatch):
    for video_id in (301, 302, 303):
        add_row(migrated, video_id, "running", age_s=120 * (video_id - 300))
    assert scheduled(monkeypatch, migrated, SWEEP_OLDER_THAN_S="200", SWEEP_LIMIT="1")["resubmitted"] == 1
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-303"]  # the oldest; 301 is not stale
    assert SweepSettings.from_env({}) == SweepSettings(older_than_s=600, limit=100, max_resubmits=3)
    for name, value in (("SWEEP_LIMIT", "abc"), ("SWEEP_MAX_RESUBMITS", "-1"), ("SWEEP_OLDER_THAN_S", "0")):
        with pytest.raises(SettingsError, match=name):
            SweepSettings.from_env({name: value})
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        dispatch.handler(SCHEDULE, None)


def sweep_once(url: str, stack, **settings) -> dict:
    result = sweep(url, stack.batch, SweepSettings(**settings), job_queue=QUEUE, job_definition=DEFINITION)
    return {"jobs": [r["jobName"] for r in result.requests], "given_up": result.given_up}


def test_a_video_is_resubmitted_at_most_max_resubmits_times_then_given_up_once(stack, migrated, caplog, capsys):
    add_row(migrated, 401, "interrupted", exit_code=143)
    for attempt in (1, 2):
        assert sweep_once(migrated, stack, max_resubmits=2) == {"jobs": ["video-process-401"], "given_up": []}
        assert row(migrated, 401)["resubmits"] == attempt
        # its job ran and was stopped again: a new run began after the resubmission
        query(migrated, "UPDATE video_analyses SET started_at = now(), run_id = gen_random_uuid()")
    caplog.set_level(logging.ERROR, logger="analyzer.fleet.sweep")
    assert sweep_once(migrated, stack, max_resubmits=2) == {"jobs": [], "given_up": [401]}
    [given_up] = [r for r in caplog.records if getattr(r, "action", None) == "stale_given_up"]
    assert "video 401: given up after 2 resubmissions" in given_up.getMessage()
    assert sweep_once(migrated, stack, max_resubmits=2) == {"jobs": [], "given_up": []}  # counted once
    assert [(m["StaleRunsResubmitted"], m["StaleRunsGivenUp"]) for m in emf_lines(capsys.readouterr().out)] == [
        (1, 0),
        (1, 0),
        (0, 1),
        (0, 0),
    ]
    assert len(stack.jobs()) == 2


def test_a_resubmitted_job_still_queued_is_not_resubmitted_again(stack, migrated):
    add_row(migrated, 501, "failed", exit_code=75)
    assert sweep_once(migrated, stack)["jobs"] == ["video-process-501"]
    assert sweep_once(migrated, stack)["jobs"] == []  # its job has not begun a run yet
    assert sweep_once(migrated, stack, pending_s=0.001)["jobs"] == ["video-process-501"]  # lost in the queue
    assert row(migrated, 501)["resubmits"] == 2


def test_a_dry_run_counts_nothing_and_lists_the_videos_given_up_on(stack, migrated, caplog):
    add_row(migrated, 601, "interrupted", exit_code=143)
    add_row(migrated, 602, "interrupted", exit_code=143, resubmits=3)
    add_row(migrated, 603, "failed", exit_code=75, resubmits=3, error="S3 down")
    query(migrated, "UPDATE video_analyses SET given_up_at = now() WHERE video_id = 603")
    caplog.set_level(logging.INFO, logger="analyzer.fleet.sweep")
    result = sweep(migrated, None, SweepSettings(), job_queue=QUEUE, job_definition=DEFINITION, dry_run=True)
    [listed] = [r.getMessage() for r in caplog.records if getattr(r, "action", None) == "stale_given_up"]
    assert listed.startswith("video 603: given up on at ") and "exit code 75): S3 down" in listed
    assert ([r["jobName"] for r in result.requests], result.job_ids, result.given_up) == (["video-process-601"], [], [])
    assert [(row(migrated, v)["resubmits"], row(migrated, v)["given_up_at"]) for v in (601, 602)] == [
        (0, None),
        (3, None),
    ]
    assert stack.jobs() == []


@pytest.fixture
def video(tmp_path: Path, media_dir: Path) -> Path:
    path = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "short_hamilton_clip.mp4", path)
    return path


def test_a_success_resets_the_count(stack, migrated, video):
    add_row(migrated, VIDEO_ID, "interrupted", exit_code=143, input_key=str(video), resubmits=3)
    query(migrated, "UPDATE video_analyses SET given_up_at = now()")
    result = procs.run(["run", str(video), "--video-id", str(VIDEO_ID)], procs.worker_env(DATABASE_URL=migrated))
    assert result.returncode == 0, result.stderr
    after = row(migrated, VIDEO_ID)
    assert (after["status"], after["resubmits"], after["resubmitted_at"], after["given_up_at"]) == (
        "succeeded",
        0,
        None,
        None,
    )


# The known limits that stay are covered by the sweep


def test_a_frozen_worker_is_found_and_resubmitted_by_the_sweep(stack, migrated, video):
    """A worker alive but frozen keeps its lock until Batch's attempt timeout; its duplicates exit
    75 (silent holder) and its row's heartbeat stops: the sweep resubmits the video."""
    env = procs.worker_env(DATABASE_URL=migrated, TEST_ANALYSIS_STEPS="600", ANALYZER_HEARTBEAT_INTERVAL="0.2")
    worker = procs.start(["run", str(video), "--video-id", str(VIDEO_ID)], env)
    try:
        procs.wait_for(_status_is(migrated, "running"), what="the run to start")
        worker.send_signal(signal.SIGSTOP)  # frozen: process stopped, sockets open, lock held
        time.sleep(1.5)
        duplicate = procs.run(["run", str(video), "--video-id", str(VIDEO_ID)], env)
        assert duplicate.returncode == ExitCode.RETRYABLE, duplicate.stderr
        assert sweep_once(migrated, stack, older_than_s=1.0)["jobs"] == [f"video-process-{VIDEO_ID}"]
        [job] = stack.jobs()
        assert job_env(job)["VideoKey"] == str(video)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)


def test_a_duplicate_within_30_s_of_its_holders_death_is_covered_by_the_sweep(stack, migrated, video):
    """The holder's last heartbeat is recent, so its duplicate exits 0; then the holder turns out
    dead (its row stays running, its heartbeat stops): the sweep resubmits the video."""
    env = procs.worker_env(DATABASE_URL=migrated, ANALYZER_HEARTBEAT_INTERVAL="0.2")
    add_row(migrated, VIDEO_ID, "running", age_s=0, input_key=str(video))
    holder = _hold_lock(migrated, "analyzer:job=dying-job:pid=1")
    with _beating(migrated, every_s=0.1):
        duplicate = procs.run(["run", str(video), "--video-id", str(VIDEO_ID)], env)
    assert duplicate.returncode == 0, duplicate.stderr
    holder.close()  # the holder dies without a word: no status written
    time.sleep(1.2)
    assert _status(migrated)["status"] == "running"
    assert sweep_once(migrated, stack, older_than_s=1.0)["jobs"] == [f"video-process-{VIDEO_ID}"]


# Item 1: the bucket a run read is the bucket its resubmission reads


def test_a_stale_video_is_resubmitted_with_the_bucket_its_run_read(stack, migrated, s3_server, media_dir, tmp_path):
    """Two buckets hold the same key with different videos; the run in one is interrupted; the
    resubmission reads that bucket's object, not the job definition's default bucket's."""
    key = "videos/2026/12/06/701_talk.mp4"
    client = s3_server.client()
    other = tmp_path / "other.mp4"
    other.write_bytes((media_dir / "short_hamilton_clip.mp4").read_bytes()[::-1])  # another object
    client.upload_file(str(other), s3_server.bucket, key)  # in the default bucket
    eu = f"uploads-eu-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=eu)
    client.upload_file(str(media_dir / "short_hamilton_clip.mp4"), eu, key)
    s3 = {**s3_server.env(), "S3_BUCKET": eu}
    env = procs.worker_env(DATABASE_URL=migrated, TEST_ANALYSIS_STEPS="600", TEST_ANALYSIS_PAUSE="0.1", **s3)
    env.pop("AWS_ENDPOINT_URL", None)  # moto's, for Batch
    worker = procs.start(["run", key, "--video-id", str(VIDEO_ID)], env)
    procs.wait_for(_status_is(migrated, "running"), what="the run to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == ExitCode.INTERRUPTED
    assert _status(migrated)["input_key"] == f"s3://{eu}/{key}"

    assert submit(["--stale", "--database-url", migrated]) == 0
    [job] = stack.jobs()
    resubmitted = job_env(job)
    assert (resubmitted["S3_BUCKET"], resubmitted["VideoKey"]) == (eu, key)  # not the default bucket, BUCKET
    assert row(migrated, VIDEO_ID)["resubmits"] == 1

    # The resubmitted job, as Batch runs it: the job's environment over the worker's settings.
    job_settings = {name: resubmitted[name] for name in ("VideoKey", "video_id", "S3_BUCKET")}
    retry = procs.run(["run"], {**env, "TEST_ANALYSIS_STEPS": "1", "S3_BUCKET": s3_server.bucket, **job_settings})
    assert retry.returncode == 0, retry.stderr
    digest = hashlib.sha256((media_dir / "short_hamilton_clip.mp4").read_bytes()).digest()
    assert [e[0] for e in _events(migrated)] == sorted(expected_event(digest, i).event_key for i in range(4))
    assert _status(migrated)["status"] == "succeeded"


def test_the_videos_guard_compares_the_bucket_when_the_table_names_one(migrated, video):
    query(migrated, "CREATE TABLE videos (id bigint PRIMARY KEY, s3_key text NOT NULL)")
    query(migrated, "INSERT INTO videos VALUES (%s, 's3://uploads-us/videos/701.mp4')", VIDEO_ID)
    env = procs.worker_env(DATABASE_URL=migrated, S3_BUCKET="uploads-eu", S3_ENDPOINT_URL="http://127.0.0.1:1")
    refused = procs.run(["run", "videos/701.mp4", "--video-id", str(VIDEO_ID)], env)
    assert refused.returncode == ExitCode.VIDEO_MISMATCH, refused.stderr
    assert "s3://uploads-us/videos/701.mp4" in refused.stderr and "s3://uploads-eu/videos/701.mp4" in refused.stderr
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM video_analyses").fetchone()[0] == 0  # refused: nothing written
