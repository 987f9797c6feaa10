"""Link faces across sampled frames into appearances, and turn each appearance into an Event.

The tracker sees the sampled frames in timestamp order. Each open track predicts where its
face is now (constant velocity of the box centre, last box size); detections are matched to
predictions greedily by affinity (box overlap plus centre closeness), gated by overlap or
centre shift and by size change. The shift allowed from the predicted centre, in face sides,
is ``CENTRE_JITTER_SIDES + speed * seconds since the track's last face``, at most
``MAX_SHIFT_SIDES``: ``speed`` is ``max_face_speed`` (10 sides/s) for a track of one face,
whose velocity is unknown (a face walking across the picture moves one to two face widths per
200 ms sample), and ``max_speed_change`` (3 sides/s) once the velocity is measured. The small
second allowance is what stops a track whose face is hidden behind another person from
taking over a neighbour's face when the gap ends. A track survives up to ``max_gap_ms``
without a face. Known limit: linking is geometric only (no face embedding), so when one
person walks in front of another and the one behind is first seen in the very place where
the front one vanishes, the track can change hands (seen once in facenet_pytorch_walking.mp4).

Scene cuts: geometry alone links a face before a cut to another person at the same place
after it (short_hamilton_clip.mp4 cuts from a performer to the audience). When frames are
given, each sampled frame's hue-saturation histogram is compared with the previous one's
(correlation); below ``scene_cut_correlation`` every open track ends. Measured on the test
clips, consecutive samples (200 ms apart) within a shot correlate at 0.90-1.00, across the
three cuts at 0.24-0.51; hence 0.7 (a strong flash of light may split an appearance in
two, which is better than merging two people). The pipeline must pass every sampled frame, whether or
not a contact sheet is wanted, so that the Events never depend on that choice.

Camera motion: a hand-held camera swung from one person to another (selfie.mp4 of the video set)
loses a face in the blurred frames of the swing, and another person's face then appears where the
lost one was predicted. Below ``camera_motion_correlation`` (0.85) the picture has moved too much
for a prediction made before the move: the tracks that lost their face in the previous sample end
(those that still see theirs go on). In the six steadier clips of the video set consecutive samples
never fall below 0.87; the selfie clip's swings fall to 0.13-0.83. An appearance cut in two this
way is joined again by person linking (analyzer.analysis.people) when its faces say it is one person.

Judging an appearance (which faces count, their weights, the pooled gender, score, age and range)
is analyzer.analysis.pooling's: this module keeps each appearance's faces and hands them over.
Best face: judgeable faces first, then the highest ``face_weight``, then the earliest. Its time,
box and detector score go into the Event.

Default thresholds, measured on aligned 112x112 grey crops with ``cv2.Laplacian(grey,
cv2.CV_64F).var()`` (3x3 aperture): sharp photo faces 90-1950; faces 40-100 px wide in
facenet_pytorch_walking.mp4 12-180; dark or motion-blurred audience faces in
short_hamilton_clip.mp4 1-4; the sharp photo faces blurred with a Gaussian of sigma 3: 3-6.
Hence ``min_sharpness = 8``. ``min_face_px = 40``: below it the gender-age network's
112 px input is an upscaled smudge (those crops measured 5-10).

Noise: a track with fewer than ``min_faces`` faces (default 2) is dropped: a face seen in a
single sampled frame (under 0.4 s at 5 samples/s) is most often a detector flicker, and too
brief for a timeline. When the whole video gave fewer sampled frames than ``min_faces``
(a clip shorter than one sampling period), the bar drops to that number of frames, so a real
face in a very short clip is not lost.

Face descriptors (for linking the appearances of one person, analyzer.analysis.people) are not
part of a frame's faces: ``update`` returns each face's track id, ``best_face_ms`` says which face
of a track is its best so far, and ``track_ids`` (filled by ``finish``) maps each event to its
track, so the caller can embed the few faces linking needs (docs/person-keys.md).

Event keys are ``<start_ms, 9 digits>-<first box centre x>-<y>`` with the centre snapped to a
``KEY_GRID_PX`` grid (so float noise between runs does not change the key), plus ``-<n>``
should two appearances share one; the same input and settings give the same keys.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from analyzer.analysis.pooling import FEMALE, MALE, POOLINGS, AppearanceFaces, Pooling, face_weight, judge
from analyzer.errors import SettingsError
from analyzer.events import Event
from analyzer.settings import DEFAULT_MIN_FACE_PX, DEFAULT_MIN_GENDER_SCORE
from models.cydral import AGE_CLASSES

__all__ = ["FEMALE", "MALE", "FrameFaces", "Tracker", "TrackerSettings"]

log = logging.getLogger(__name__)

DEFAULT_MAX_GAP_MS = 1000  # ms a track may go without a face
DEFAULT_MIN_FACES = 2  # faces an appearance needs to become an Event
DEFAULT_MIN_IOU = 0.2  # overlap of the predicted box that allows a match
DEFAULT_MAX_FACE_SPEED = 10.0  # face sides/s a face of unknown velocity may move
DEFAULT_MAX_SPEED_CHANGE = 3.0  # face sides/s a face may stray from its predicted path
DEFAULT_MAX_SIZE_RATIO = 1.6  # largest size change (side over side) between matched boxes
DEFAULT_MIN_SHARPNESS = 8.0  # variance of Laplacian of the aligned 112x112 grey crop
DEFAULT_SCENE_CUT_CORRELATION = 0.7  # histogram correlation below which a frame starts a new shot
DEFAULT_CAMERA_MOTION_CORRELATION = 0.85  # below it (the camera moved), a track whose face was lost ends

CENTRE_JITTER_SIDES = 0.25  # face sides of detector jitter always allowed
MAX_SHIFT_SIDES = 3.0  # face sides; no match strays further from the prediction
VELOCITY_SMOOTHING = 0.5  # weight of the newest velocity measurement (exponential average)

SIGNATURE_WIDTH_PX = 160  # px; frames are subsampled to about this width before their histogram
SIGNATURE_BINS = (18, 16)  # hue, saturation bins of the scene-cut histogram
KEY_GRID_PX = 8  # px; event-key centres are snapped to this grid
THUMB_MARGIN = 0.25  # thumbnail crop margin around the box, in box sides
THUMB_MAX_PX = 192  # px; longest side of a stored thumbnail


@dataclass(frozen=True)
class TrackerSettings:
    """Tunables of linking and judging; defaults and their reasons are in the module docstring."""

    max_gap_ms: int = DEFAULT_MAX_GAP_MS
    min_faces: int = DEFAULT_MIN_FACES
    min_iou: float = DEFAULT_MIN_IOU
    max_face_speed: float = DEFAULT_MAX_FACE_SPEED
    max_speed_change: float = DEFAULT_MAX_SPEED_CHANGE
    max_size_ratio: float = DEFAULT_MAX_SIZE_RATIO
    min_face_px: float = DEFAULT_MIN_FACE_PX
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    scene_cut_correlation: float = DEFAULT_SCENE_CUT_CORRELATION  # 0 turns cut detection off
    camera_motion_correlation: float = DEFAULT_CAMERA_MOTION_CORRELATION  # below: lost faces stay lost
    min_gender_score: float = DEFAULT_MIN_GENDER_SCORE  # percent; below it gender is None
    pooling: Pooling = POOLINGS["cydral"]  # how an appearance's faces are judged together

    def __post_init__(self) -> None:
        checks = {
            "max_gap_ms": self.max_gap_ms >= 0,
            "min_faces": self.min_faces >= 1,
            "min_iou": 0.0 < self.min_iou <= 1.0,
            "max_face_speed": self.max_face_speed >= 0.0,
            "max_speed_change": self.max_speed_change >= 0.0,
            "max_size_ratio": self.max_size_ratio >= 1.0,
            "min_face_px": self.min_face_px >= 0.0,
            "min_sharpness": self.min_sharpness >= 0.0,
            "scene_cut_correlation": 0.0 <= self.scene_cut_correlation <= 1.0,
            "camera_motion_correlation": self.scene_cut_correlation <= self.camera_motion_correlation <= 1.0,
            "min_gender_score": 0.0 <= self.min_gender_score <= 100.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise SettingsError(f"invalid tracker settings: {values}")


@dataclass(frozen=True)
class FrameFaces:
    """The faces of one sampled frame; k faces, every array's first axis is k.

    boxes: (k, 4) float64, x1, y1, x2, y2 in source-frame pixels.
    scores: (k,) float64, detector confidence 0-1.
    gender_logit: (k,) float64, calibrated log-odds of male (the classifier's logit / T).
    age_probs: (k, len(AGE_CLASSES)) float64, each face's age distribution.
    face_px: (k,) float64, face size in pixels.
    sharpness: (k,) float64, variance of Laplacian of the aligned 112x112 grey crop.
    landmarks: (k, 5, 2) float64, eyes (image-left, image-right), nose, mouth corners, in
        source pixels; NaN when unknown (the face then counts as frontal).
    """

    boxes: np.ndarray
    scores: np.ndarray
    gender_logit: np.ndarray
    age_probs: np.ndarray
    face_px: np.ndarray
    sharpness: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        boxes: np.ndarray,
        scores: np.ndarray,
        gender_logit: np.ndarray,
        age_probs: np.ndarray,
        face_px: np.ndarray,
        sharpness: np.ndarray,
        landmarks: np.ndarray | None = None,
    ) -> FrameFaces:
        """Check shapes and values and convert dtypes; raises ValueError on a mismatch."""
        box_array = np.asarray(boxes, dtype=np.float64)
        if box_array.size == 0:
            box_array = box_array.reshape(0, 4)
        if box_array.ndim != 2 or box_array.shape[1] != 4:
            raise ValueError(f"boxes must be (k, 4), got {box_array.shape}")
        k = box_array.shape[0]
        columns = {
            "scores": np.asarray(scores, dtype=np.float64).reshape(-1),
            "gender_logit": np.asarray(gender_logit, dtype=np.float64).reshape(-1),
            "face_px": np.asarray(face_px, dtype=np.float64).reshape(-1),
            "sharpness": np.asarray(sharpness, dtype=np.float64).reshape(-1),
        }
        for name, column in columns.items():
            if column.shape != (k,):
                raise ValueError(f"{name} must have {k} values (one per box), got {column.shape[0]}")
        probs = np.asarray(age_probs, dtype=np.float64).reshape(k, -1) if k else np.zeros((0, len(AGE_CLASSES)))
        if probs.shape != (k, len(AGE_CLASSES)):
            raise ValueError(f"age_probs must be ({k}, {len(AGE_CLASSES)}), got {probs.shape}")
        marks = np.full((k, 5, 2), np.nan) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
        if marks.shape != (k, 5, 2):
            raise ValueError(f"landmarks must be ({k}, 5, 2), got {marks.shape}")
        if not np.isfinite(box_array).all():
            raise ValueError("boxes must be finite")
        if not np.isfinite(columns["gender_logit"]).all():
            raise ValueError("gender_logit must be finite")
        if k and (np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)):
            raise ValueError("age_probs must be distributions (non-negative, summing to 1)")
        return cls(boxes=box_array, age_probs=probs, landmarks=marks, **columns)

    @classmethod
    def empty(cls) -> FrameFaces:
        """A frame without faces."""
        nothing = np.zeros(0)
        return cls.from_arrays(np.zeros((0, 4)), nothing, nothing, nothing, nothing, nothing)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class _Track:
    """One appearance being followed; per-face lists grow in timestamp order."""

    track_id: int
    times: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    gender_logit: list[float] = field(default_factory=list)
    age_probs: list[np.ndarray] = field(default_factory=list)
    face_px: list[float] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # face_weight of each face
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre px/ms
    best_index: int = -1
    best_key: tuple[bool, float, int] = (False, -1.0, 0)
    thumbnail: np.ndarray | None = None

    def predicted_box(self, timestamp_ms: int) -> np.ndarray:
        """(4,) x1y1x2y2: last box moved by the centre velocity over the time since it."""
        shift = self.velocity * (timestamp_ms - self.times[-1])
        return self.boxes[-1] + np.concatenate([shift, shift])


class Tracker:
    """Links per-frame faces into appearances; ``finish()`` turns them into Events.

    Example:
        tracker = Tracker(TrackerSettings(), frame_width=1920, frame_height=1080)
        for ts, faces, frame in sampled:
            tracker.update(ts, faces, frame)
        events = tracker.finish()
        thumbnails = tracker.thumbnails  # event_key -> BGR crop of the best face
    """

    def __init__(self, settings: TrackerSettings, frame_width: int, frame_height: int) -> None:
        if frame_width < 1 or frame_height < 1:
            raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")
        self.settings = settings
        self.frame_width = int(frame_width)
        self.frame_height = int(frame_height)
        self.frames = 0  # sampled frames seen
        self.faces = 0  # faces seen
        self.scene_cuts = 0  # scene cuts that ended the open tracks
        self.thumbnails: dict[str, np.ndarray] = {}  # filled by finish()
        self.appearances: dict[str, AppearanceFaces] = {}  # event_key -> its faces; filled by finish()
        self._open: list[_Track] = []
        self._tracks: dict[int, _Track] = {}  # every track by id, open or closed (best_face_ms)
        self.track_ids: dict[str, int] = {}  # event_key -> its track's id; filled by finish()
        self._closed: list[_Track] = []
        self._next_id = 0
        self._last_ms: int | None = None
        self._last_signature: np.ndarray | None = None
        self._finished = False

    def update(self, timestamp_ms: int, faces: FrameFaces, frame: np.ndarray | None = None) -> list[int]:
        """Add one sampled frame's faces; timestamps must increase strictly. Returns the track id
        of each face, in the order of ``faces``.

        frame: H x W x 3 uint8 BGR image (the source frame after rotation), used to detect scene
        cuts and to keep a thumbnail of each appearance's best face. Pass it for every sampled
        frame or for none.
        """
        if self._finished:
            raise RuntimeError("Tracker.update() after finish()")
        if self._last_ms is not None and timestamp_ms <= self._last_ms:
            raise ValueError(f"timestamps must increase: {timestamp_ms} ms after {self._last_ms} ms")
        if frame is not None and frame.shape[:2] != (self.frame_height, self.frame_width):
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, tracker expects {self.frame_width}x{self.frame_height}"
            )
        previous_ms, self._last_ms = self._last_ms, int(timestamp_ms)
        self.frames += 1
        self.faces += len(faces)
        self._close_stale(timestamp_ms)
        if frame is not None:
            self._check_scene_cut(timestamp_ms, previous_ms, frame)
        matches, unmatched = self._match(timestamp_ms, faces)
        ids = [-1] * len(faces)
        for track, index in matches:
            self._extend(track, timestamp_ms, faces, index, frame)
            ids[index] = track.track_id
        for index in unmatched:
            track = _Track(track_id=self._next_id)
            self._tracks[track.track_id] = track
            self._next_id += 1
            self._open.append(track)
            self._extend(track, timestamp_ms, faces, index, frame)
            ids[index] = track.track_id
        return ids

    def best_face_ms(self, track_id: int) -> int:
        """The time of the best face so far of track ``track_id`` (the one the Event and the
        thumbnail show)."""
        track = self._tracks[track_id]
        return track.times[track.best_index]

    def face_rank(self, track_id: int, timestamp_ms: int) -> tuple[bool, float, int]:
        """How good a face of track ``track_id`` (the one at ``timestamp_ms``) is as its best face:
        a sort key, higher is better (judgeable, then weight, then earlier)."""
        track = self._tracks[track_id]
        return self._best_rank(track, bisect.bisect_left(track.times, timestamp_ms))

    def finish(self) -> list[Event]:
        """Close every track; one Event per appearance kept, sorted by start_ms then key."""
        if self._finished:
            raise RuntimeError("Tracker.finish() called twice")
        self._finished = True
        tracks = self._closed + self._open
        self._open, self._closed = [], []
        min_faces = min(self.settings.min_faces, max(self.frames, 1))
        kept = [track for track in tracks if len(track.times) >= min_faces]
        kept.sort(key=lambda t: (t.times[0], *_key_centre(t.boxes[0]), t.track_id))
        events: list[Event] = []
        used: set[str] = set()
        for track in kept:
            key = _unique(_event_key(track), used)
            self.appearances[key] = _faces_of(track, self.settings)
            self.track_ids[key] = track.track_id
            events.append(
                _event_from_track(track, key, self.appearances[key], self.settings, self.frame_width, self.frame_height)
            )
            if track.thumbnail is not None:
                self.thumbnails[key] = track.thumbnail
        log.debug(
            "tracker: %s frames, %s faces, %s scene cuts, %s tracks, %s events (%s under %s faces dropped)",
            self.frames,
            self.faces,
            self.scene_cuts,
            len(tracks),
            len(events),
            len(tracks) - len(kept),
            min_faces,
        )
        return events

    # -- steps of update() --

    def _close_stale(self, timestamp_ms: int) -> None:
        still_open = []
        for track in self._open:
            if timestamp_ms - track.times[-1] > self.settings.max_gap_ms:
                self._closed.append(track)
            else:
                still_open.append(track)
        self._open = still_open

    def _check_scene_cut(self, timestamp_ms: int, previous_ms: int | None, frame: np.ndarray) -> None:
        signature = frame_signature(frame)
        previous, self._last_signature = self._last_signature, signature
        if previous is None or previous_ms is None or self.settings.scene_cut_correlation <= 0.0:
            return
        correlation = cv2.compareHist(previous, signature, cv2.HISTCMP_CORREL)
        if correlation < self.settings.scene_cut_correlation:
            log.debug("tracker: scene cut at %s ms (correlation %.2f)", timestamp_ms, correlation)
            self.scene_cuts += 1
            self._closed.extend(self._open)
            self._open = []
        elif correlation < self.settings.camera_motion_correlation:
            # The picture moved: a track that lost its face in the previous sample cannot say where
            # that face is now, and another face in its old place is most often someone else
            lost = [track for track in self._open if track.times[-1] < previous_ms]
            self._closed.extend(lost)
            self._open = [track for track in self._open if track.times[-1] >= previous_ms]

    def _match(self, timestamp_ms: int, faces: FrameFaces) -> tuple[list[tuple[_Track, int]], list[int]]:
        """Greedy assignment of faces to open tracks; returns (track, face index) pairs and new faces."""
        if not self._open or len(faces) == 0:
            return [], list(range(len(faces)))
        predicted = np.stack([track.predicted_box(timestamp_ms) for track in self._open])
        max_shift = np.array([self._allowed_shift(track, timestamp_ms) for track in self._open])
        affinity = link_affinity(predicted, max_shift, faces.boxes, self.settings)
        pairs = greedy_assign(affinity)
        matched = {face for _, face in pairs}
        return (
            [(self._open[row], face) for row, face in pairs],
            [face for face in range(len(faces)) if face not in matched],
        )

    def _allowed_shift(self, track: _Track, timestamp_ms: int) -> float:
        """Face sides a face may lie from the track's predicted centre (see the module docstring)."""
        speed = self.settings.max_face_speed if len(track.times) == 1 else self.settings.max_speed_change
        elapsed_s = (timestamp_ms - track.times[-1]) / 1000.0
        return min(CENTRE_JITTER_SIDES + speed * elapsed_s, MAX_SHIFT_SIDES)

    def _extend(
        self, track: _Track, timestamp_ms: int, faces: FrameFaces, index: int, frame: np.ndarray | None
    ) -> None:
        box = faces.boxes[index].copy()
        if track.times:
            dt = timestamp_ms - track.times[-1]
            measured = (_centre(box) - _centre(track.boxes[-1])) / dt
            if len(track.times) == 1:
                track.velocity = measured
            else:
                track.velocity = VELOCITY_SMOOTHING * measured + (1 - VELOCITY_SMOOTHING) * track.velocity
        track.times.append(int(timestamp_ms))
        track.boxes.append(box)
        track.scores.append(float(faces.scores[index]))
        track.gender_logit.append(float(faces.gender_logit[index]))
        track.age_probs.append(faces.age_probs[index])
        track.face_px.append(float(faces.face_px[index]))
        track.sharpness.append(float(faces.sharpness[index]))
        track.weights.append(
            float(
                face_weight(
                    faces.scores[index : index + 1],
                    faces.face_px[index : index + 1],
                    faces.sharpness[index : index + 1],
                    faces.landmarks[index : index + 1],
                )[0]
            )
        )
        rank = self._best_rank(track, len(track.times) - 1)
        if rank > track.best_key:
            track.best_key = rank
            track.best_index = len(track.times) - 1
            if frame is not None:
                track.thumbnail = crop_thumbnail(frame, box)

    def _best_rank(self, track: _Track, i: int) -> tuple[bool, float, int]:
        """Sort key of face i as the best face: judgeable, weight, earlier (negated time)."""
        judgeable = bool(is_judgeable(track.face_px[i], track.sharpness[i], self.settings))
        return (judgeable, track.weights[i], -track.times[i])


# -- linking --


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4) with every box in b (k, 4), x1y1x2y2; returns (n, k)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def link_affinity(
    predicted: np.ndarray, max_shift: np.ndarray, boxes: np.ndarray, settings: TrackerSettings
) -> np.ndarray:
    """(n, k) affinity of n predicted track boxes to k face boxes; -inf where no match is allowed.

    predicted: (n, 4) x1y1x2y2; max_shift: (n,) centre shift each track allows, in face sides
    (> 0); boxes: (k, 4) x1y1x2y2.
    affinity = IoU + max(0, 1 - shift / MAX_SHIFT_SIDES), both in 0-1: the shift is between box
    centres, in sides (sqrt(area)) of the tracked face's predicted box. A pair is allowed when
    IoU >= min_iou or shift <= max_shift, and the sides differ by at most max_size_ratio.
    Closeness is scaled by one fixed distance, not by each track's own allowance: a new track's
    wide allowance (its velocity unknown) must not make a far face look as close as a near one
    does to a track whose path is known (selfie.mp4 at 4.6-5.0 s: a one-face track 2 sides away
    took a panning face from its own track, 0.8 sides from the prediction).
    """
    iou = box_iou(predicted, boxes)
    side_p = np.sqrt(np.clip(_areas(predicted), 1e-6, None))
    side_b = np.sqrt(np.clip(_areas(boxes), 1e-6, None))
    shift = np.linalg.norm(_centres(predicted)[:, None, :] - _centres(boxes)[None, :, :], axis=2)
    shift = shift / side_p[:, None]
    size_ratio = np.maximum(side_p[:, None] / side_b[None, :], side_b[None, :] / side_p[:, None])
    max_shift = max_shift[:, None]
    allowed = ((iou >= settings.min_iou) | (shift <= max_shift)) & (size_ratio <= settings.max_size_ratio)
    affinity = iou + np.clip(1.0 - shift / MAX_SHIFT_SIDES, 0.0, None)
    return np.where(allowed, affinity, -np.inf)


def greedy_assign(affinity: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, column) taken best affinity first, each row and column once; -inf never.

    Ties go to the lower row, then the lower column, so the result is deterministic.
    """
    rows, cols = np.nonzero(np.isfinite(affinity))
    order = np.lexsort((cols, rows, -affinity[rows, cols]))
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs = []
    for i in order:
        row, col = int(rows[i]), int(cols[i])
        if row not in used_rows and col not in used_cols:
            used_rows.add(row)
            used_cols.add(col)
            pairs.append((row, col))
    return pairs


# -- judging an appearance --


def is_judgeable(
    face_px: np.ndarray | float, sharpness: np.ndarray | float, settings: TrackerSettings
) -> np.ndarray | bool:
    """(k,) bool (or one bool): faces large and sharp enough for their gender and age to count."""
    return (face_px >= settings.min_face_px) & (sharpness >= settings.min_sharpness)


def clip_box(box: np.ndarray, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
    """x1y1x2y2 float box -> (x, y, w, h) ints covering it, inside the frame, w and h >= 1."""
    x1 = min(max(math.floor(box[0]), 0), frame_width - 1)
    y1 = min(max(math.floor(box[1]), 0), frame_height - 1)
    x2 = min(max(math.ceil(box[2]), x1 + 1), frame_width)
    y2 = min(max(math.ceil(box[3]), y1 + 1), frame_height)
    return x1, y1, x2 - x1, y2 - y1


def _faces_of(track: _Track, settings: TrackerSettings) -> AppearanceFaces:
    face_px, sharpness = np.asarray(track.face_px), np.asarray(track.sharpness)
    return AppearanceFaces(
        times_ms=np.asarray(track.times, dtype=np.int64),
        boxes=np.stack(track.boxes),
        gender_logit=np.asarray(track.gender_logit),
        age_probs=np.asarray(track.age_probs).reshape(len(track.times), -1),
        face_px=face_px,
        sharpness=sharpness,
        weights=np.asarray(track.weights),
        judgeable=np.asarray(is_judgeable(face_px, sharpness, settings), dtype=bool),
    )


def _event_from_track(
    track: _Track,
    event_key: str,
    faces: AppearanceFaces,
    settings: TrackerSettings,
    frame_width: int,
    frame_height: int,
) -> Event:
    """One appearance -> its Event (times of first, last and best face; gender; age and range)."""
    gender, gender_score, age, age_low, age_high = judge(settings.pooling, faces, settings.min_gender_score)
    best = track.best_index
    x, y, w, h = clip_box(track.boxes[best], frame_width, frame_height)
    return Event(
        event_key=event_key,
        start_ms=track.times[0],
        end_ms=track.times[-1],
        best_frame_ms=track.times[best],
        x=x,
        y=y,
        w=w,
        h=h,
        det_score=round(track.scores[best], 4),
        gender=gender,
        gender_score=gender_score,
        age=age,
        age_low=age_low,
        age_high=age_high,
        face_count=len(track.times),
    )


# -- thumbnails and keys --


def crop_thumbnail(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """BGR crop of a face with a margin, clipped to the frame, longest side at most THUMB_MAX_PX."""
    height, width = frame.shape[:2]
    margin = THUMB_MARGIN * max(box[2] - box[0], box[3] - box[1])
    grown = np.array([box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin])
    x, y, w, h = clip_box(grown, width, height)
    crop = frame[y : y + h, x : x + w]
    scale = THUMB_MAX_PX / max(w, h)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return crop.copy()


def frame_signature(frame: np.ndarray) -> np.ndarray:
    """Normalised hue-saturation histogram, (18 * 16,) float32, of a BGR frame.

    The frame is subsampled (every n-th pixel, n = width // 160) first: a histogram needs no
    smooth resize, and this keeps the cost near 0.1 ms for 1080p.
    """
    step = max(1, frame.shape[1] // SIGNATURE_WIDTH_PX)
    small = np.ascontiguousarray(frame[::step, ::step])
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, list(SIGNATURE_BINS), [0, 180, 0, 256])
    return cv2.normalize(histogram, None).flatten()


def _event_key(track: _Track) -> str:
    cx, cy = _key_centre(track.boxes[0])
    return f"{track.times[0]:09d}-{cx}-{cy}"


def _key_centre(box: np.ndarray) -> tuple[int, int]:
    cx, cy = np.clip(_centre(box), 0.0, None)
    return int(cx // KEY_GRID_PX) * KEY_GRID_PX, int(cy // KEY_GRID_PX) * KEY_GRID_PX


def _unique(key: str, used: set[str]) -> str:
    candidate, n = key, 1
    while candidate in used:
        n += 1
        candidate = f"{key}-{n}"
    used.add(candidate)
    return candidate


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0], axis=1)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
