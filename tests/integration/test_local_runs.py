"""Runs without DATABASE_URL: events as JSON, duplicates guarded by a local file lock."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

from tests.support import procs


def _video(tmp_path: Path, media_dir: Path) -> Path:
    path = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "short_hamilton_clip.mp4", path)
    return path


def test_local_run_writes_json_file(tmp_path, media_dir):
    out = tmp_path / "events" / "clip.json"
    result = procs.run(
        ["run", str(_video(tmp_path, media_dir)), "--video-id", "3", "--json", str(out), "--lock-dir", str(tmp_path)],
        procs.worker_env(),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert len(document["events"]) == 4 and result.stdout == ""
    assert not list(out.parent.glob(".clip.json.*"))  # written atomically, no temp file left


def test_local_duplicate_is_skipped_while_the_file_lock_is_held(tmp_path, media_dir):
    video = _video(tmp_path, media_dir)
    with open(tmp_path / "video-analyzer-3.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = procs.run(["run", str(video), "--video-id", "3", "--lock-dir", str(tmp_path)], procs.worker_env())
    assert result.returncode == 0
    assert result.stdout == "" and '"action": "duplicate_skipped"' in result.stderr
    after = procs.run(["run", str(video), "--video-id", "3", "--lock-dir", str(tmp_path)], procs.worker_env())
    assert after.returncode == 0 and len(json.loads(after.stdout)["events"]) == 4
