"""The real worker on a synthetic clip: each FairFace track is found as one appearance where its label says."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.analysis.pipeline import analyze_video
from analyzer.evaluation import synthetic
from analyzer.evaluation.appearances import SLACK_S, event_box, iou, match_events
from analyzer.settings import Settings
from tests.conftest import SHARED

FAIRFACE_DIR = SHARED / "data" / "fairface_540"


@pytest.mark.slow
@pytest.mark.skipif(not FAIRFACE_DIR.is_dir(), reason="../shared/data/fairface_540 not present")
def test_worker_finds_each_track_once_with_its_span_and_box(tmp_path: Path, models_dir: Path) -> None:
    labels = synthetic.generate(FAIRFACE_DIR, tmp_path, half_name="fit", seed=0, limit=4)
    (video,) = labels["videos"]
    path = tmp_path / video["file"]
    settings = Settings(video_key=str(path), video_id=1, model_dir=models_dir, device="cpu", log_format="json")

    result = analyze_video(path, settings)

    matches, unmatched = match_events(video["appearances"], result.events)
    assert not unmatched
    assert [m.outcome for m in matches] == ["one"] * 4
    for match in matches:
        (event,) = match.events
        assert iou(event_box(event), match.label["box"]) >= 0.5
        assert abs(event.start_ms / 1000 - match.label["start_s"]) <= SLACK_S
        assert abs(event.end_ms / 1000 - match.label["end_s"]) <= SLACK_S
