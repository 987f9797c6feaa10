"""Result quality on real video: the README's two sample videos through ``analyzer evaluate
--video-set``, scored against the hand labels of tests/data/video_set/labels.json.

The labels of the two clips name 16 appearances with a judgeable face (15 with a face the worker
finds large and sharp enough to judge). At the default threshold 8 are answered, all right
(before the pooling was refitted: 2); issue 18 asked for 11, which the threshold chosen for 95 %
right answers on the whole video set does not reach (docs/quality.md). The guard: no wrong answer,
and no fewer answers than now. The other clips of the set are scored by ``scripts/fit_pooling.py``,
which takes too long for CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer import cli
from tests.conftest import SHARED

pytestmark = pytest.mark.slow

LABELS = Path(__file__).resolve().parents[1] / "data" / "video_set" / "labels.json"
SAMPLES = ("walking", "hamilton")


def test_the_sample_videos_are_mostly_answered_and_never_wrong(tmp_path, models_dir, monkeypatch, capsys) -> None:
    data = json.loads(LABELS.read_text())
    data["videos"] = [v for v in data["videos"] if v["name"] in SAMPLES]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(data))
    monkeypatch.setenv("ANALYZER_SHARED_DIR", str(SHARED))
    out = tmp_path / "report"
    code = cli.main(
        ["evaluate", "--video-set", str(labels), "--out", str(out), "--model-dir", str(models_dir), "--device", "cpu"]
    )
    assert code == 0
    real = json.loads((out / "videos.json").read_text())["real"]
    assert real["appearances"] == 16
    answered = [right for score, right in zip(real["scores"], real["right"]) if score >= real["min_gender_score"]]
    assert len(answered) == real["answered"] >= 8
    assert all(answered), f"{answered.count(False)} wrong answers"
    assert "| real | 16 |" in capsys.readouterr().out
