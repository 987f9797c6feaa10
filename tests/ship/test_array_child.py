"""An AWS Batch array child, run locally: ANALYZER_MANIFEST + AWS_BATCH_JOB_ARRAY_INDEX pick its row."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from analyzer.errors import ExitCode
from analyzer.fleet.manifest import ManifestRow, format_manifest
from tests.ship.conftest import REPO
from tests.support import procs

pytestmark = pytest.mark.integration


@pytest.fixture
def manifest(tmp_path: Path, media_dir: Path) -> tuple[Path, list[ManifestRow]]:
    rows = []
    for video_id, name in ((501, "facenet_pytorch_walking.mp4"), (502, "short_hamilton_clip.mp4")):
        shutil.copy(media_dir / name, tmp_path / name)
        rows.append(ManifestRow(video_id, str(tmp_path / name)))
    path = tmp_path / "backfill.jsonl"
    path.write_text(format_manifest(rows))
    return path, rows


def _status(url: str) -> dict[int, dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM video_analyses").fetchall()
    return {row["video_id"]: row for row in rows}


def _events(url: str, video_id: int) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM events WHERE video_id = %s", (video_id,)).fetchall()


def test_child_analyses_only_its_row_and_a_rerun_is_a_duplicate(manifest, database_url):
    path, rows = manifest
    env = procs.worker_env(
        ANALYZER_MANIFEST=str(path),
        AWS_BATCH_JOB_ARRAY_INDEX="1",
        AWS_BATCH_JOB_ID="array-1:1",
        AWS_BATCH_JQ_NAME="video-analyzer",
        DATABASE_URL=database_url,
    )
    first = procs.run(["run"], env)
    assert first.returncode == ExitCode.OK, first.stderr[-2000:]
    status = _status(database_url)
    assert set(status) == {502}
    assert status[502]["status"] == "succeeded" and status[502]["input_key"] == rows[1].key
    assert len(_events(database_url, 502)) == 4  # tests.support.worker's analysis
    again = procs.run(["run"], env)
    assert again.returncode == ExitCode.OK
    assert _status(database_url)[502]["run_id"] == status[502]["run_id"]  # skipped, not redone


@pytest.mark.parametrize(("index", "message"), [("2", "out of range"), ("x", "not an integer")])
def test_child_with_a_bad_index_exits_with_bad_settings(manifest, database_url, index, message):
    path, _ = manifest
    env = procs.worker_env(ANALYZER_MANIFEST=str(path), AWS_BATCH_JOB_ARRAY_INDEX=index, DATABASE_URL=database_url)
    done = procs.run(["run"], env)
    assert done.returncode == ExitCode.BAD_SETTINGS
    assert message in done.stderr


@pytest.mark.slow
def test_container_entrypoint_analyses_its_row_with_the_real_models(manifest, database_url, models_dir, tmp_path):
    """What the image runs (entrypoint.py), with the real weights on a real clip."""
    path, rows = manifest
    env = procs.worker_env(
        ANALYZER_MANIFEST=str(path),
        AWS_BATCH_JOB_ARRAY_INDEX="1",
        AWS_BATCH_JQ_NAME="video-analyzer",
        DATABASE_URL=database_url,
        ANALYZER_MODEL_DIR=str(models_dir),
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert set(_status(database_url)) == {502}
    events = _events(database_url, 502)
    assert events and all(e["video_id"] == 502 for e in events)
    emf = [json.loads(line) for line in done.stdout.splitlines() if '"_aws"' in line]
    if emf:  # once the runner emits its metrics line
        assert emf[-1]["RunSucceeded"] == 1 and emf[-1]["QueueName"] == "video-analyzer"
