"""People: which appearances are embedded, person keys on the events, gender and age per person
(the models' side, cut_chips and describe, is tests/models/test_dlib_resnet.py's)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analyzer.analysis.descriptors import linkable
from analyzer.analysis.people import LINK_THRESHOLD, assign_people, descriptors, linking_digest
from analyzer.analysis.pooling import AppearanceFaces, concat_faces, judge
from analyzer.analysis.tracking import FrameFaces, Tracker
from analyzer.evaluation import videoset
from analyzer.job.runner import model_version
from analyzer.settings import Settings
from tests.unit.test_tracking import ANSWER_ALL, FRAME_MS, HEIGHT, MEAN, WIDTH, face, frame_faces


def direction(degrees: float) -> np.ndarray:
    """A raw descriptor (norm 1.38, as dlib's) in the plane of the first two of 128 dimensions."""
    vector = np.zeros(128, np.float32)
    vector[:2] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return vector * 1.38


def frame(faces: list[dict]) -> FrameFaces:
    return frame_faces(faces)


def described(events: list, appearances: dict[str, AppearanceFaces], vectors: list) -> dict[str, AppearanceFaces]:
    """The appearances with one descriptor each (None: not embedded) on their best face, NaN rows
    elsewhere, as analyzer.analysis.descriptors gives them."""
    result = {}
    for event, vector in zip(events, vectors):
        faces = appearances[event.event_key]
        rows = np.full((len(faces.times_ms), 128), np.nan, np.float32)
        if vector is not None:
            rows[int(np.flatnonzero(faces.times_ms == event.best_frame_ms)[0])] = vector
        result[event.event_key] = replace(faces, embedding=rows)
    return result


def shot(colour: tuple[int, int, int]) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = colour
    return image


STAGE, AUDIENCE = shot((120, 40, 20)), shot((40, 120, 200))


def run(frames: list[tuple[int, list[dict], np.ndarray]]) -> tuple[list, dict[str, AppearanceFaces]]:
    """The tracker's events and appearances, then the people's events (as the pipeline does)."""
    tracker = Tracker(ANSWER_ALL, frame_width=WIDTH, frame_height=HEIGHT)
    for timestamp, faces, image in frames:
        tracker.update(timestamp, frame(faces), image)
    events = tracker.finish()
    return events, tracker.appearances


def scene(start: int, count: int, image: np.ndarray, *faces: dict) -> list[tuple[int, list[dict], np.ndarray]]:
    return [(start + i * FRAME_MS, list(faces), image) for i in range(count)]


def test_the_tracker_names_each_faces_track_its_best_face_and_each_events_track():
    tracker = Tracker(ANSWER_ALL, frame_width=WIDTH, frame_height=HEIGHT)
    assert tracker.update(0, frame([face(300, 300, face_px=60), face(900, 300)])) == [0, 1]
    assert tracker.update(200, frame([face(900, 300), face(300, 300, face_px=90)])) == [1, 0]
    assert tracker.update(400, frame([face(300, 300, face_px=70)])) == [0]
    assert (tracker.best_face_ms(0), tracker.best_face_ms(1)) == (200, 0)  # the largest face; the earliest on a tie
    events = tracker.finish()
    assert [tracker.track_ids[e.event_key] for e in events] == [0, 1]


def test_linkable_needs_another_appearance_apart_in_time():
    events, _ = run(scene(0, 3, STAGE, face(300, 300), face(900, 300)) + scene(1000, 2, STAGE, face(300, 300, side=60)))
    assert [(e.start_ms, e.end_ms) for e in events] == [(0, 400), (0, 400), (1000, 1200)]
    assert linkable(events) == [True, True, True]
    assert linkable(events[:2]) == [False, False]  # on screen together: never one person, nothing to embed
    assert linkable(events[:1]) == [False] and linkable([]) == []


def test_one_person_across_a_scene_cut_shares_a_key_and_is_judged_from_all_faces():
    """She leaves the stage shot and comes back after a cut in the audience shot's corner; a man
    is on screen beside her the whole time. She is one person (p1) across the cut; the man (p2) is
    never linked to her, whose appearances overlap his in time."""
    her, him = direction(0), direction(80)
    first = scene(0, 5, STAGE, face(300, 300, p_male=0.2), face(900, 300, p_male=0.9))
    second = scene(1000, 2, AUDIENCE, face(200, 500, p_male=0.6), face(900, 300, p_male=0.9))
    events, appearances = run(first + second)
    assert len(events) == 4  # the cut ended both tracks
    appearances = described(events, appearances, [her, him, direction(8), him])
    people = assign_people(events, appearances, MEAN, min_score=0.0)
    assert [e.person_key for e in people] == ["p1", "p2", "p1", "p2"]

    hers = [e for e in people if e.person_key == "p1"]
    expected = judge(MEAN, concat_faces([appearances[e.event_key] for e in hers]), 0.0)
    # 5 faces at 0.2 and 2 at 0.6, equal weights, plain mean of log-odds: female
    assert expected[0] == "female"
    assert {(e.gender, e.gender_score, e.age, e.age_low, e.age_high) for e in hers} == {expected}
    alone = next(e for e in events if e.start_ms == 1000 and e.x < 600)
    assert alone.gender == "male"  # on its own the short appearance said male
    for before, after in zip(events, people):  # time span, box, best frame and face count stay the event's
        kept = replace(after, person_key=None, gender=before.gender, gender_score=before.gender_score,
                       age=before.age, age_low=before.age_low, age_high=before.age_high)  # fmt: skip
        assert kept == before


def test_a_person_of_one_appearance_keeps_the_trackers_judgement():
    events, appearances = run(scene(0, 3, STAGE, face(300, 300, p_male=0.7)))
    appearances = described(events, appearances, [direction(0)])
    assert assign_people(events, appearances, MEAN, 0.0) == [replace(events[0], person_key="p1")]


def test_different_people_and_appearances_without_descriptors_stay_apart():
    far = 2 * np.degrees(np.arcsin(LINK_THRESHOLD / 2)) + 5  # just past the threshold on the unit circle
    frames = (
        scene(0, 2, STAGE, face(300, 300))
        + scene(2000, 2, STAGE, face(300, 300))
        + scene(4000, 2, STAGE, face(300, 300))
    )
    events, appearances = run(frames)
    appearances = described(events, appearances, [direction(0), direction(far), None])
    assert [e.person_key for e in assign_people(events, appearances, MEAN, 0.0)] == ["p1", "p2", "p3"]
    near = assign_people(events, appearances, MEAN, 0.0, threshold=2.0)  # anything links but no descriptor
    assert [e.person_key for e in near] == ["p1", "p1", "p2"]
    assert descriptors(appearances[events[2].event_key]).shape == (0, 128)
    assert descriptors(replace(appearances[events[2].event_key], embedding=None)).shape == (0, 0)


def test_the_same_input_gives_the_same_keys_and_judgements():
    frames = scene(0, 3, STAGE, face(300, 300)) + scene(2000, 3, STAGE, face(700, 300, p_male=0.3))
    events, appearances = run(frames)
    appearances = described(events, appearances, [direction(0), direction(3)])
    first = assign_people(events, appearances, MEAN, 0.0)
    assert first == assign_people(events, appearances, MEAN, 0.0)
    assert [e.person_key for e in first] == ["p1", "p1"]


def test_concat_faces_keeps_order_and_drops_an_embedding_some_part_lacks():
    events, appearances = run(scene(0, 2, STAGE, face(300, 300)))
    (a,) = described(events, appearances, [direction(0)]).values()
    b = replace(a, times_ms=a.times_ms + 5000)
    both = concat_faces([a, b])
    assert both.times_ms.tolist() == [0, 200, 5000, 5200] and both.embedding is not None
    assert both.embedding.shape == (4, 128)
    assert concat_faces([a, replace(b, embedding=None)]).embedding is None
    assert concat_faces([a]) is a
    with pytest.raises(ValueError):
        concat_faces([])


def test_descriptors_never_go_into_the_cached_json():
    events, appearances = run(scene(0, 2, STAGE, face(300, 300)))
    cached = videoset.faces_to_json(described(events, appearances, [direction(0)]))
    assert all("embedding" not in columns for columns in cached.values())
    assert next(iter(videoset.faces_from_json(cached).values())).embedding is None


def test_model_version_names_the_embedding_weights_and_the_threshold(tmp_path):
    assert linking_digest(LINK_THRESHOLD) != linking_digest(LINK_THRESHOLD + 0.01)
    version = model_version(Settings(video_key="v", video_id=1, model_dir=tmp_path))
    assert version.endswith(f"+people-{linking_digest()}")
