"""End to end, every part real: SeaweedFS S3 on loopback, the PostgreSQL server, the real weights,
the real sample videos, and ``entrypoint.py`` run as a subprocess with a Batch-like environment."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from analyzer.errors import ExitCode
from tests.support import procs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VIDEOS = {  # name: (file, duration ms, width, height, fewest and most appearances)
    "walking": ("facenet_pytorch_walking.mp4", 4200, 1920, 1080, 5, 25),
    "hamilton": ("short_hamilton_clip.mp4", 9176, 640, 360, 3, 20),
}
EVENT_COLUMNS = (
    "event_key, start_ms, end_ms, best_frame_ms, box_x, box_y, box_w, box_h, det_score, gender,"
    " gender_score, age, age_low, age_high, face_count, model_version, person_key"
)


def _rows(url: str, sql: str, *params) -> list[dict]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def _events(url: str, video_id: int) -> list[dict]:
    return _rows(url, f"SELECT {EVENT_COLUMNS} FROM events WHERE video_id = %s ORDER BY event_key", video_id)


def _batch_env(s3_server, database_url: str, key: str, video_id: int, models_dir: Path, **extra: str) -> dict:
    return procs.worker_env(
        **s3_server.env(),
        DATABASE_URL=database_url,
        VideoKey=key,
        video_id=str(video_id),
        AWS_BATCH_JOB_ID=f"job-{uuid.uuid4().hex[:8]}",
        AWS_BATCH_JOB_ATTEMPT="1",
        AWS_BATCH_JQ_NAME="video-analyzer",
        ANALYZER_MODEL_DIR=str(models_dir),
        **extra,
    )


def _entrypoint(env: dict) -> procs.Finished:
    return procs.run([], env, module="entrypoint")


def _upload(s3_server, path: Path) -> str:
    key = f"videos/2025/12/29/{uuid.uuid4()}_{path.name}"
    s3_server.upload(path, key)
    return key


@pytest.mark.parametrize("name", VIDEOS)
def test_real_video_gives_sound_events_and_reruns_identically(name, s3_server, database_url, media_dir, models_dir):
    file, duration_ms, width, height, fewest, most = VIDEOS[name]
    key = _upload(s3_server, media_dir / file)
    env = _batch_env(s3_server, database_url, key, 84, models_dir)

    first = _entrypoint(env)
    assert first.returncode == 0, first.stderr[-3000:]
    events = _events(database_url, 84)
    assert fewest <= len(events) <= most, [(e["start_ms"], e["end_ms"]) for e in events]
    for e in events:
        assert 0 <= e["start_ms"] <= e["best_frame_ms"] <= e["end_ms"] <= duration_ms
        assert e["box_w"] > 0 and e["box_h"] > 0
        assert e["box_x"] + e["box_w"] <= width and e["box_y"] + e["box_h"] <= height
        assert (e["gender"] is None) == (e["gender_score"] is None)
        assert e["gender_score"] is None or 50 < e["gender_score"] <= 100
        assert (e["age"] is None) == (e["age_low"] is None) == (e["age_high"] is None)
        assert e["age"] is None or e["age_low"] <= e["age"] <= e["age_high"]
    assert any(e["age_low"] is not None for e in events)
    # Person keys p1..pN by first appearance, no more people than events (a person may appear twice)
    people = {e["person_key"] for e in events}
    assert people == {f"p{n}" for n in range(1, len(people) + 1)} and len(people) <= len(events)
    status = _rows(database_url, "SELECT * FROM video_analyses WHERE video_id = 84")[0]
    assert status["status"] == "succeeded" and status["events"] == len(events)
    assert status["input_fingerprint"].startswith("etag:")

    rerun = _entrypoint(env)
    assert rerun.returncode == 0 and '"already_done"' in rerun.stderr
    # A forced run over rows changed since (by hand, or by an older model) puts its own values back.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE events SET age = 99, age_low = 90, age_high = 110, box_w = box_w + 1 WHERE video_id = 84")
    forced = _entrypoint({**env, "ANALYZER_FORCE": "true"})
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert _events(database_url, 84) == events


def test_duplicate_jobs_for_one_upload_analyse_once(s3_server, database_url, media_dir, models_dir, tmp_path):
    key = _upload(s3_server, media_dir / "short_hamilton_clip.mp4")
    env = _batch_env(s3_server, database_url, key, 7, models_dir)
    workers = [procs.start([], env, module="entrypoint", log_dir=tmp_path) for _ in range(3)]
    results = [procs.wait_rusage(w, timeout=300) for w in workers]
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-2000:] for r in results]
    assert sum('"action": "start"' in r.stderr for r in results) == 1
    assert sum('"action": "duplicate_skipped"' in r.stderr for r in results) == 2
    assert 3 <= len(_events(database_url, 7)) <= 20


BAD = {  # fixture name: expected exit code
    "zero_byte_video": ExitCode.UNDECODABLE_VIDEO,
    "truncated_video": ExitCode.UNDECODABLE_VIDEO,
    "random_bytes_video": ExitCode.UNDECODABLE_VIDEO,
    "image_as_video": ExitCode.UNDECODABLE_VIDEO,
    "one_frame_video": ExitCode.UNDECODABLE_VIDEO,
    "oversized_video": ExitCode.INPUT_REJECTED,
}


@pytest.mark.parametrize("fixture", BAD)
def test_bad_video_fails_with_its_code_and_writes_nothing(fixture, request, s3_server, database_url, models_dir):
    key = _upload(s3_server, request.getfixturevalue(fixture))
    result = _entrypoint(_batch_env(s3_server, database_url, key, 99, models_dir))
    assert result.returncode == BAD[fixture], result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if '"level": "ERROR"' in line]
    assert len(errors) == 1 and key in errors[0]
    assert _events(database_url, 99) == []
    status = _rows(database_url, "SELECT status, error FROM video_analyses WHERE video_id = 99")[0]
    assert status["status"] == "failed" and status["error"]


def test_missing_s3_key_is_not_found(s3_server, database_url, models_dir):
    result = _entrypoint(_batch_env(s3_server, database_url, "videos/2025/12/29/missing.mp4", 98, models_dir))
    assert result.returncode == ExitCode.INPUT_NOT_FOUND, result.stderr[-2000:]
    assert "missing.mp4" in result.stderr
    assert _events(database_url, 98) == []


def test_local_run_without_database_prints_json_and_draws_a_contact_sheet(media_dir, models_dir, tmp_path):
    import json

    import cv2

    sheet = tmp_path / "sheet.png"
    result = procs.run(
        [
            "run",
            str(media_dir / "short_hamilton_clip.mp4"),
            "--video-id",
            "5",
            "--model-dir",
            str(models_dir),
            "--contact-sheet",
            str(sheet),
        ],
        procs.worker_env(),
        module="analyzer.cli",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert 3 <= len(document["events"]) <= 20 and document["frames"] > 0
    # The person key is in the JSON; the descriptors never are
    assert all(e["person_key"].startswith("p") for e in document["events"])
    assert "embedding" not in result.stdout and "descriptor" not in result.stdout
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
