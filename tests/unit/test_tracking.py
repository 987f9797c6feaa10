"""Tracker: linking synthetic faces into appearances and judging each one into an Event."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from analyzer.analysis.calibration import AgeCalibration
from analyzer.analysis.pooling import FEMALE, MALE, Pooling, face_weight
from analyzer.analysis.tracking import (
    DEFAULT_CAMERA_MOTION_CORRELATION,
    DEFAULT_SCENE_CUT_CORRELATION,
    FrameFaces,
    Tracker,
    TrackerSettings,
    clip_box,
    frame_signature,
    greedy_assign,
)
from analyzer.errors import SettingsError
from models.cydral import AGE_CLASSES

WIDTH, HEIGHT = 1280, 720
FRAME_MS = 200  # 5 sampled frames per second


def face(cx: float, cy: float, side: float = 100.0, **attrs: float) -> dict:
    """One synthetic face: a square box around (cx, cy) and its attributes (sharp, large, sure)."""
    values = {"score": 0.99, "p_male": 0.9, "age": 30, "face_px": side, "sharpness": 200.0}
    values.update(attrs)
    values["box"] = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    return values


def logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def age_distribution(age: float, spread: float = 0.0) -> np.ndarray:
    """A distribution over AGE_CLASSES centred on ``age``: one class, or a Gaussian of ``spread`` years."""
    classes = np.asarray(AGE_CLASSES)
    if spread == 0.0:
        probs = (np.abs(classes - age) == np.abs(classes - age).min()).astype(float)
    else:
        probs = np.exp(-0.5 * ((classes - age) / spread) ** 2)
    return probs / probs.sum()


def frame_faces(faces: list[dict]) -> FrameFaces:
    if not faces:
        return FrameFaces.empty()
    return FrameFaces.from_arrays(
        boxes=np.array([f["box"] for f in faces]),
        scores=np.array([f["score"] for f in faces]),
        gender_logit=np.array([logit(f["p_male"]) for f in faces]),
        age_probs=np.stack([age_distribution(f["age"]) for f in faces]),
        face_px=np.array([f["face_px"] for f in faces]),
        sharpness=np.array([f["sharpness"] for f in faces]),
        landmarks=np.stack([f["landmarks"] for f in faces]) if all("landmarks" in f for f in faces) else None,
    )


# The tracker's judging tests look at which faces reach the judge, not at the pooling's fitted
# constants (tests/unit/test_pooling.py): the plain mean of log-odds, ages as read, every gender answered.
MEAN = Pooling(0.0, 0.0, 1.0, AgeCalibration(temperature=1.0, q=1.0, offset=0.5), "tests")
ANSWER_ALL = TrackerSettings(min_gender_score=0.0, pooling=MEAN)


def track(frames: list[tuple[int, list[dict]]], settings: TrackerSettings | None = None):
    tracker = Tracker(settings or ANSWER_ALL, frame_width=WIDTH, frame_height=HEIGHT)
    for timestamp_ms, faces in frames:
        tracker.update(timestamp_ms, frame_faces(faces))
    return tracker.finish()


def still(n: int, start_ms: int = 0, **attrs: float) -> list[tuple[int, list[dict]]]:
    """n sampled frames of one still face in the middle of the frame."""
    return [(start_ms + i * FRAME_MS, [face(640, 360, **attrs)]) for i in range(n)]


# -- linking --


def test_two_people_crossing_keep_their_identity():
    # A walks right, B walks left, 80 px per sampled frame; their boxes overlap while they
    # pass. At 1000 ms A's new face is nearer B's last box than its own: only the motion
    # prediction keeps them apart.
    frames = []
    for i in range(11):
        a = face(100 + 80 * i, 300, p_male=0.95, age=30)
        b = face(860 - 80 * i, 320, p_male=0.05, age=60)
        frames.append((i * FRAME_MS, [a, b]))
    events = track(frames)
    assert len(events) == 2
    by_gender = {e.gender: e for e in events}
    assert set(by_gender) == {MALE, FEMALE}
    for event in events:
        assert event.face_count == 11
        assert (event.start_ms, event.end_ms) == (0, 2000)
        assert event.gender_score == 95.0  # every face agreed: no swap happened
    assert by_gender[MALE].age == 30 and by_gender[FEMALE].age == 60


def test_gap_shorter_than_max_gap_is_bridged():
    frames = still(3) + still(3, start_ms=400 + 1000)  # 1000 ms without a face == max_gap_ms
    events = track(frames)
    assert len(events) == 1
    assert (events[0].start_ms, events[0].end_ms, events[0].face_count) == (0, 1800, 6)


def test_gap_longer_than_max_gap_splits_the_appearance():
    frames = still(3) + still(3, start_ms=400 + 1200)
    events = track(frames)
    assert [(e.start_ms, e.end_ms) for e in events] == [(0, 400), (1600, 2000)]


def test_gap_is_bridged_along_the_motion():
    # A man moving 60 px per frame is missed for 3 frames; meanwhile a woman appears where
    # he was last seen. The prediction follows him 240 px on and leaves her a track of her own.
    frames = [(i * FRAME_MS, [face(200 + 60 * i, 360, p_male=0.9)]) for i in (0, 1, 2, 3)]
    for i in (7, 8):
        frames.append((i * FRAME_MS, [face(200 + 60 * i, 360, p_male=0.9), face(380, 360, p_male=0.1)]))
    events = track(frames)
    assert [(e.start_ms, e.end_ms, e.face_count, e.gender, e.gender_score) for e in events] == [
        (0, 1600, 6, MALE, 90.0),
        (1400, 1600, 2, FEMALE, 90.0),
    ]


def test_a_known_path_wins_over_a_new_tracks_wide_allowance():
    # selfie.mp4 at 4.6-5.0 s: a panning face is 0.8 sides off its track's prediction, while a
    # one-face track 2 sides away allows 3 (its velocity unknown). Closeness counts in sides for
    # every track alike, so the face stays on its own track.
    frames = [
        (0, [face(436, 165, side=150, p_male=0.1), face(55, 200, side=150, p_male=0.6)]),
        (200, [face(338, 197, side=150, p_male=0.1)]),
        (400, [face(352, 189, side=150, p_male=0.1)]),
    ]
    events = track(frames)
    assert [(e.start_ms, e.end_ms, e.face_count, e.gender) for e in events] == [(0, 400, 3, FEMALE)]


def test_far_or_very_different_faces_start_new_appearances():
    frames = [
        (0, [face(200, 360)]),
        (200, [face(200, 360)]),
        (400, [face(900, 360)]),
        (600, [face(900, 360)]),
    ]
    assert len(track(frames)) == 2
    frames = [(0, [face(640, 360, side=60)]), (200, [face(640, 360, side=60)])]
    frames += [(400, [face(640, 360, side=200)]), (600, [face(640, 360, side=200)])]
    assert len(track(frames)) == 2  # size changed 3.3x: another person in front


def test_single_face_is_dropped_as_noise():
    frames = still(4) + [(800, [face(640, 360), face(100, 100)])]
    events = track(frames)
    assert len(events) == 1 and events[0].face_count == 5


def test_single_sampled_frame_keeps_its_faces():
    events = track([(0, [face(300, 300), face(900, 300)])])
    assert len(events) == 2 and all(e.face_count == 1 for e in events)


def test_min_faces_one_keeps_every_face():
    frames = still(4) + [(800, [face(640, 360), face(100, 100)])]
    assert len(track(frames, TrackerSettings(min_faces=1, min_gender_score=0.0))) == 2


def test_greedy_assign_takes_best_pairs_once():
    affinity = np.array([[1.5, 1.4], [1.45, -np.inf], [-np.inf, -np.inf]])
    assert sorted(greedy_assign(affinity)) == [(0, 0)]  # row 1 wants column 0 only, taken
    affinity = np.array([[0.5, 1.0], [0.9, 0.2]])
    assert sorted(greedy_assign(affinity)) == [(0, 1), (1, 0)]
    assert greedy_assign(np.full((2, 2), -np.inf)) == []


# -- judging --


def test_tiny_face_gives_null_gender_score_and_age():
    events = track(still(5, face_px=20.0, side=20.0))
    assert len(events) == 1
    event = events[0]
    assert event.gender is None and event.gender_score is None and event.age is None


def test_blurred_face_gives_null_gender_score_and_age():
    (event,) = track(still(5, sharpness=2.0))
    assert (event.gender, event.gender_score, event.age) == (None, None, None)


def test_only_judgeable_faces_vote_and_give_age():
    frames = still(3, p_male=0.02, age=80, face_px=20.0)  # tiny, female, old: ignored
    frames += still(2, start_ms=600, p_male=0.8, age=40, sharpness=3.0)  # blurred: ignored
    frames += still(3, start_ms=1000, p_male=0.7, age=25)
    (event,) = track(frames)
    assert event.face_count == 8
    assert (event.gender, event.gender_score, event.age) == (MALE, 70.0, 25)
    assert event.age_low <= 25 <= event.age_high
    assert event.best_frame_ms == 1000  # the first judgeable face; later ones are no better


def test_gender_below_the_least_score_is_none_and_age_stays():
    (event,) = track(still(4, p_male=0.7, age=33), TrackerSettings(min_gender_score=75.0, pooling=MEAN))
    assert (event.gender, event.gender_score, event.age) == (None, None, 33)
    (event,) = track(still(4, p_male=0.8, age=33), TrackerSettings(min_gender_score=75.0, pooling=MEAN))
    assert (event.gender, event.gender_score) == (MALE, 80.0)


def test_profile_faces_weigh_less_in_the_vote():
    eyes = [[600.0, 340.0], [680.0, 340.0]]
    mouth = [[610.0, 400.0], [670.0, 400.0]]
    front = eyes + [[640.0, 370.0]] + mouth
    side = eyes + [[690.0, 370.0]] + mouth
    weights = face_weight(np.ones(2), np.full(2, 120.0), np.full(2, 200.0), np.array([front, side]))
    assert weights[0] == 1.0 and weights[1] == pytest.approx(0.1)
    frames = [(i * FRAME_MS, [face(640, 360, p_male=0.9, landmarks=front)]) for i in range(2)]
    frames += [(400 + i * FRAME_MS, [face(640, 360, p_male=0.05, landmarks=side)]) for i in range(2)]
    (event,) = track(frames)
    assert event.gender == MALE  # the two frontal faces outweigh the two profiles


def test_best_face_is_large_sharp_and_confident():
    frames = [
        (0, [face(640, 360, side=60, face_px=60.0, score=0.95)]),
        (200, [face(640, 360, side=90, face_px=90.0, score=0.99, sharpness=300.0)]),
        (400, [face(640, 360, side=90, face_px=90.0, score=0.99, sharpness=20.0)]),  # softer
        (600, [face(640, 360, side=95, face_px=95.0, score=0.80)]),  # less sure
    ]
    (event,) = track(frames)
    assert event.best_frame_ms == 200 and event.det_score == 0.99
    assert (event.x, event.y, event.w, event.h) == (595, 315, 90, 90)


# -- boxes, keys, order --


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ([10.2, 20.7, 50.1, 60.0], (10, 20, 41, 40)),
        ([-30.0, -5.0, 40.0, 30.0], (0, 0, 40, 30)),
        ([1250.0, 700.0, 1330.0, 780.0], (1250, 700, 30, 20)),
        ([1400.0, 800.0, 1500.0, 900.0], (1279, 719, 1, 1)),  # wholly outside: one pixel at the edge
        ([100.0, 100.0, 100.0, 100.0], (100, 100, 1, 1)),  # degenerate
    ],
)
def test_clip_box_inside_frame_and_non_empty(box, expected):
    assert clip_box(np.array(box), WIDTH, HEIGHT) == expected


def test_event_boxes_lie_inside_the_frame():
    frames = [(i * FRAME_MS, [face(10, 10, side=80), face(1275, 715, side=80)]) for i in range(3)]
    events = track(frames)
    assert len(events) == 2  # one per corner: a tracker that drops them must not pass
    assert {(event.x == 0, event.y == 0) for event in events} == {(True, True), (False, False)}
    for event in events:
        assert event.w >= 1 and event.h >= 1
        assert event.x >= 0 and event.x + event.w <= WIDTH
        assert event.y >= 0 and event.y + event.h <= HEIGHT


def test_events_sorted_with_deterministic_unique_keys():
    frames = [(0, [face(900, 300)]), (200, [face(900, 300)])]
    frames += [(400, [face(300, 300), face(300, 300, side=40, face_px=40.0)])]  # same centre, two sizes
    frames += [(600, [face(300, 300), face(300, 300, side=40, face_px=40.0)])]
    first = track(frames)
    second = track(frames)
    assert first == second
    assert [e.start_ms for e in first] == sorted(e.start_ms for e in first)
    keys = [e.event_key for e in first]
    assert keys == ["000000000-896-296", "000000400-296-296", "000000400-296-296-2"]


def test_key_ignores_float_noise_in_the_box():
    frames = still(3)
    noisy = [(t, [dict(f, box=[v + 0.01 for v in f["box"]]) for f in faces]) for t, faces in frames]
    assert track(frames)[0].event_key == track(noisy)[0].event_key


def test_thumbnails_follow_event_keys():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    tracker = Tracker(TrackerSettings(), frame_width=WIDTH, frame_height=HEIGHT)
    for i in range(3):
        tracker.update(i * FRAME_MS, frame_faces([face(300, 300, side=100 + 10 * i)]), image)
    (event,) = tracker.finish()
    thumb = tracker.thumbnails[event.event_key]
    assert event.best_frame_ms == 400
    assert thumb.shape == (180, 180, 3)  # 120 px box plus 25 % margin each side, copied
    assert np.array_equal(thumb, image[210:390, 210:390])


def test_scene_cut_ends_every_track():
    # The same place in two shots: a dark blue stage, then a warm-lit audience.
    stage = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    stage[:] = (120, 40, 20)
    audience = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    audience[:] = (40, 120, 200)
    settings = TrackerSettings()
    tracker = Tracker(settings, frame_width=WIDTH, frame_height=HEIGHT)
    for i, image in enumerate([stage, stage, stage, audience, audience]):
        tracker.update(i * FRAME_MS, frame_faces([face(640, 360)]), image)
    assert [(e.start_ms, e.end_ms) for e in tracker.finish()] == [(0, 400), (600, 800)]
    assert tracker.scene_cuts == 1

    tracker = Tracker(TrackerSettings(scene_cut_correlation=0.0), frame_width=WIDTH, frame_height=HEIGHT)
    for i, image in enumerate([stage, stage, stage, audience, audience]):
        tracker.update(i * FRAME_MS, frame_faces([face(640, 360)]), image)
    assert len(tracker.finish()) == 1


def test_a_face_lost_while_the_camera_moves_stays_lost():
    # A hand-held camera swings (histogram correlation 0.79: below camera_motion_correlation, above
    # a scene cut). The face on the right is seen throughout and keeps its track; the one on the
    # left, lost in the sample before the swing, is not taken up again by whoever is now in its
    # place. Without the swing the gap is bridged as usual.
    still_picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    still_picture[:] = (120, 40, 20)
    still_picture[:, : WIDTH // 2] = (40, 120, 200)
    swung = still_picture.copy()
    swung[: int(HEIGHT * 0.35)] = (30, 200, 60)
    correlation = cv2.compareHist(frame_signature(still_picture), frame_signature(swung), cv2.HISTCMP_CORREL)
    assert DEFAULT_SCENE_CUT_CORRELATION < correlation < DEFAULT_CAMERA_MOTION_CORRELATION
    left, right = face(300, 360), face(900, 360)
    faces = [[left, right], [left, right], [right], [left, right], [left, right]]

    def spans(images: list[np.ndarray]) -> list[tuple[int, int]]:
        tracker = Tracker(TrackerSettings(), frame_width=WIDTH, frame_height=HEIGHT)
        for i, (image, found) in enumerate(zip(images, faces)):
            tracker.update(i * FRAME_MS, frame_faces(found), image)
        return sorted((e.start_ms, e.end_ms) for e in tracker.finish())

    assert spans([still_picture] * 3 + [swung] * 2) == [(0, 200), (0, 800), (600, 800)]
    assert spans([still_picture] * 5) == [(0, 800), (0, 800)]


# -- contract checks --


def test_frame_faces_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="scores"):
        FrameFaces.from_arrays(np.zeros((2, 4)), np.zeros(3), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="boxes"):
        FrameFaces.from_arrays(np.zeros((2, 3)), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="age_probs"):
        FrameFaces.from_arrays(
            np.zeros((1, 4)), np.ones(1), np.ones(1), np.full((1, len(AGE_CLASSES)), 0.5), np.ones(1), np.ones(1)
        )
    with pytest.raises(ValueError, match="gender_logit"):
        FrameFaces.from_arrays(
            np.zeros((1, 4)), np.ones(1), np.full(1, np.inf), age_distribution(30)[None], np.ones(1), np.ones(1)
        )
    with pytest.raises(ValueError, match="landmarks"):
        FrameFaces.from_arrays(
            np.zeros((1, 4)),
            np.ones(1),
            np.ones(1),
            age_distribution(30)[None],
            np.ones(1),
            np.ones(1),
            np.zeros((1, 4, 2)),
        )
    assert len(FrameFaces.empty()) == 0


def test_tracker_rejects_time_going_back_and_wrong_frames():
    tracker = Tracker(TrackerSettings(), frame_width=WIDTH, frame_height=HEIGHT)
    tracker.update(200, FrameFaces.empty())
    with pytest.raises(ValueError, match="increase"):
        tracker.update(200, FrameFaces.empty())
    with pytest.raises(ValueError, match="expects"):
        tracker.update(400, FrameFaces.empty(), np.zeros((10, 10, 3), np.uint8))
    assert tracker.finish() == []
    with pytest.raises(RuntimeError):
        tracker.update(600, FrameFaces.empty())


def test_invalid_settings_raise_settings_error():
    with pytest.raises(SettingsError, match="min_faces"):
        TrackerSettings(min_faces=0)
    with pytest.raises(SettingsError, match="min_iou"):
        TrackerSettings(min_iou=0.0)
    with pytest.raises(SettingsError, match="min_gender_score"):
        TrackerSettings(min_gender_score=101.0)
