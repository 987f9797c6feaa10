"""Person keys on the README's sample video (issue 20): the curly-haired woman seen twice
(labels walking-06 at 0.0-1.8 s and walking-07 at 3.72-4.16 s, tests/data/video_set/labels.json)
is one person, and no one else shares her key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzer.analysis.people import CHIPS_PER_TRACK
from analyzer.analysis.pipeline import analyze_video
from analyzer.evaluation import videoset
from analyzer.settings import Settings
from tests.conftest import SHARED

pytestmark = pytest.mark.slow

LABELS = Path(__file__).resolve().parents[1] / "data" / "video_set" / "labels.json"


def test_the_curly_haired_woman_is_one_person_and_no_one_else_is_her(models_dir, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ANALYZER_SHARED_DIR", str(SHARED))
    (video,) = [v for v in videoset.load(LABELS) if v.name == "walking"]
    settings = Settings(
        video_key="walking", video_id=1, model_dir=models_dir, device="cpu", contact_sheet=tmp_path / "s.png"
    )
    result = analyze_video(video.path, settings)
    by_label = {m.label.id: m.event_key for m in videoset.match(video, result.appearances)}
    keys = {e.event_key: e.person_key for e in result.events}
    hers = {keys[by_label["walking-06"]], keys[by_label["walking-07"]]}
    assert len(hers) == 1, f"her two appearances got keys {hers}"
    sharing = [key for key, person in keys.items() if person in hers]
    assert sorted(sharing) == sorted([by_label["walking-06"], by_label["walking-07"]])
    # One person, one judgement; each event keeps its own span
    first, second = (next(e for e in result.events if e.event_key == by_label[i]) for i in ("walking-06", "walking-07"))
    assert (first.gender, first.gender_score, first.age) == (second.gender, second.gender_score, second.age)
    assert first.end_ms < second.start_ms
    assert all(e.person_key is not None for e in result.events)
    # Descriptors stay in the process, and only on the faces linking needed: at most CHIPS_PER_TRACK
    # per embedded appearance, all of them judgeable
    embedded = [np.isfinite(f.embedding).all(axis=1) for f in result.appearances.values()]
    assert max(rows.sum() for rows in embedded) == CHIPS_PER_TRACK and sum(rows.any() for rows in embedded) >= 2
    assert all(f.judgeable[rows].all() for f, rows in zip(result.appearances.values(), embedded))
