"""The labelled video set: reading labels.json and matching the worker's appearances to labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzer.analysis.pooling import POOLINGS, AppearanceFaces
from analyzer.evaluation import videoset


def faces(times_s: list[float], box: list[float]) -> AppearanceFaces:
    k = len(times_s)
    return AppearanceFaces(
        times_ms=(np.array(times_s) * 1000).astype(np.int64),
        boxes=np.tile(np.array(box, dtype=float), (k, 1)),
        gender_logit=np.zeros(k),
        age_probs=np.full((k, 81), 1 / 81),
        face_px=np.full(k, 60.0),
        sharpness=np.full(k, 50.0),
        weights=np.ones(k),
        judgeable=np.ones(k, bool),
    )


def labels_file(folder: Path, appearances: list[dict]) -> Path:
    (folder / "clip.mp4").write_bytes(b"not read here")
    path = folder / "labels.json"
    video = {"file": "clip.mp4", "name": "clip", "kind": "real", "appearances": appearances}
    path.write_text(json.dumps({"version": 1, "videos": [video]}))
    return path


LABEL = {
    "id": "clip-01",
    "person": "clip-p1",
    "gender": "female",
    "age_bin": "60-69",
    "start_s": 0.0,
    "end_s": 3.0,
    "t_s": 1.0,
    "box": [100, 100, 50, 60],
    "judgeable": True,
}


def test_labels_load_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (video,) = videoset.load(labels_file(tmp_path, [LABEL]))
    assert video.path == tmp_path / "clip.mp4" and video.kind == "real" and video.half == ""
    (label,) = video.appearances
    assert (label.gender, label.age_bin, label.box, label.is_male) == ("female", "60-69", (100, 100, 50, 60), False)


@pytest.mark.parametrize("change", [{"gender": "woman"}, {"age_bin": "60-70"}])
def test_unknown_labels_are_refused(tmp_path: Path, change: dict) -> None:
    with pytest.raises(ValueError, match="clip-01"):
        videoset.load(labels_file(tmp_path, [LABEL | change]))


def test_a_missing_video_is_named(tmp_path: Path) -> None:
    path = labels_file(tmp_path, [LABEL])
    (tmp_path / "clip.mp4").unlink()
    with pytest.raises(FileNotFoundError, match="clip.mp4"):
        videoset.load(path)


def test_each_label_matches_the_appearance_on_its_box_near_its_time(tmp_path: Path) -> None:
    (video,) = videoset.load(labels_file(tmp_path, [LABEL, LABEL | {"id": "clip-02", "t_s": 5.0}]))
    appearances = {
        "elsewhere": faces([0.8, 1.0, 1.2], [400, 100, 450, 160]),  # right time, other place
        "hers": faces([0.6, 0.8], [105, 102, 155, 160]),  # 0.2 s before t_s, same place
        "later": faces([2.0, 2.2], [100, 100, 150, 160]),  # same place, 1 s after t_s
    }
    first, second = videoset.match(video, appearances)
    assert first.event_key == "hers" and first.faces is appearances["hers"]
    assert second.event_key is None and second.faces is None  # nothing near 5 s: missed
    again = videoset.faces_from_json(videoset.faces_to_json(appearances))
    assert again["hers"].times_ms.tolist() == [600, 800] and again["hers"].boxes.shape == (2, 4)


def test_one_appearance_answers_for_one_label_only(tmp_path: Path) -> None:
    side_by_side = [LABEL, LABEL | {"id": "clip-02", "box": [130, 100, 50, 60]}]  # overlapping boxes
    (video,) = videoset.load(labels_file(tmp_path, side_by_side))
    appearances = {"left": faces([1.0], [100, 100, 150, 160]), "right": faces([1.0], [135, 100, 185, 160])}
    assert [m.event_key for m in videoset.match(video, appearances)] == ["left", "right"]
    (first, second) = videoset.match(video, {"left": appearances["left"]})
    assert (first.event_key, second.event_key) == ("left", None)


def test_what_the_worker_writes_is_scored_at_the_threshold(tmp_path: Path) -> None:
    from analyzer.events import Event

    labels = [LABEL, LABEL | {"id": "clip-02", "t_s": 5.0}, LABEL | {"id": "clip-03", "judgeable": False}]
    (video,) = videoset.load(labels_file(tmp_path, labels))
    matches = videoset.match(video, {"hers": faces([1.0], [100, 100, 150, 160])})
    event = Event(
        event_key="hers",
        start_ms=0,
        end_ms=1000,
        best_frame_ms=1000,
        x=100,
        y=100,
        w=50,
        h=60,
        det_score=0.99,
        gender="female",
        gender_score=90.0,
        age=60,
        face_count=1,
    )
    pairs = [(matches[0], event), (matches[1], None), (matches[2], None)]
    assert videoset.events_report(pairs, 85.0) == {
        "appearances": 2,
        "answered": 1,
        "answered_share": 0.5,
        "right_of_answered": 1.0,
    }
    assert videoset.events_report(pairs, 95.0)["answered"] == 0


def test_judged_as_written_takes_every_face_of_the_persons_appearances(tmp_path: Path) -> None:
    # Two appearances of one woman (linked by the worker, "p1"), a man apart ("p2"); the record is
    # what scripts/video_features.py writes. Per appearance, the label sees its own 2 faces; as
    # written, the 2 + 3 faces of its person; the man's stays his own.
    labels = [LABEL, LABEL | {"id": "clip-02", "person": "clip-p2", "gender": "male", "t_s": 5.0}]
    (video,) = videoset.load(labels_file(tmp_path, labels))
    appearances = {
        "hers": faces([0.8, 1.0], [100, 100, 150, 160]),
        "hers-later": faces([3.0, 3.2, 3.4], [300, 100, 350, 160]),
        "his": faces([5.0, 5.2], [100, 100, 150, 160]),
    }
    record = {
        "name": "clip",
        "kind": "real",
        "half": "",
        "temperature": 1.0,
        "appearances": videoset.faces_to_json(appearances),
        "people": {"hers": "p1", "hers-later": "p1", "his": "p2"},
    }
    (tmp_path / "clip.json").write_text(json.dumps(record))
    records = videoset.load_records([tmp_path / "clip.json"], [video])
    pooling = POOLINGS["cydral"]
    alone = videoset.judged(records, 1.0, pooling)
    written = videoset.judged(records, 1.0, pooling, per_person=True)
    assert [len(r.z) for r in alone] == [2, 2]  # type: ignore[arg-type]
    assert [len(r.z) for r in written] == [5, 2]  # type: ignore[arg-type]
    del record["people"]  # a cache written before person keys: each appearance is its own person
    (tmp_path / "clip.json").write_text(json.dumps(record))
    old = videoset.judged(videoset.load_records([tmp_path / "clip.json"], [video]), 1.0, pooling, per_person=True)
    assert [len(r.z) for r in old] == [2, 2]  # type: ignore[arg-type]
