"""Synthetic labelled video tracks: FairFace 540 crops shown in H.264 clips, degraded the way video is.

Each FairFace crop becomes one labelled appearance ("track"): the face is shown for 2-3 s of a
25 fps 1280x720 clip, at a face width drawn from 40-100 px, then leaves its place empty for at
least 1.6 s (longer than the tracker's 1 s ``max_gap_ms``), so the worker's tracker must see each
track as an appearance of its own. Four places ("slots", one per quarter of the frame) run side by
side, each showing its tracks one after another, on a plain or a smoothly textured background.

How a track is degraded, all drawn per track from a seeded generator (``TrackPlan``):

- size: the face width is drawn from ``FACE_PX``; a square cut centred on the face, about twice
  as wide as it (face, hair, neck), is scaled so that RetinaFace's box of the face is that wide.
  Where the face is in each crop is RetinaFace's box, measured once and kept in ``FACE_BOXES``
  (in FairFace's crops the face is only 0.35 of the crop wide, not the 1/1.5 that their margin of
  0.25 suggests, and off centre by up to a quarter of its width);
- poses: smooth jitter of rotation (+-10 deg), scale (+-8 %) and position (two sines per
  component, 0.4-1.3 Hz, so the 200 ms samples of the worker see different poses), a horizontal
  flip over part of the track, and a slow drift of the whole face (at most ``DRIFT_SIDES`` face
  widths over the track, so the labelled box at ``t_s`` holds for the whole span);
- optics: Gaussian blur (``BLUR_SIGMA``, log-uniform), linear motion blur in 30 % of the tracks,
  contrast and brightness drifting linearly over the track;
- sensor and codec: Gaussian noise over the whole frame, then libx264 at a CRF of 26-30 per clip
  (real compression artefacts, which blur a small face further).

The blur is drawn log-uniform because the worker's sharpness measure (variance of the Laplacian of
the aligned crop, gate 8) falls fast with blur: with sigma uniform in 0.4-1.5 and motion blur of
2-6 px in half of the tracks, only about half of the faces passed the gate (medians 8-21 by size)
where the faces of 40-100 px in facenet_pytorch_walking.mp4 measure 12-69 and nearly all pass.

The edge of the pasted cut is feathered so it does not read as a sharp-edged picture. Labels go
to ``labels.json`` in the schema of the real labelled clips (``kind: "synthetic"``), one entry per
clip, with each appearance's span, the face box at ``t_s`` (mid-span) in frame pixels, its face
width and blur. Everything is deterministic for a seed: the same seed, limit and PyAV (FFmpeg,
x264) version give the same frames, labels and bytes.

The faces are from FairFace (Kärkkäinen and Joo, "FairFace: Face Attribute Dataset for Balanced
Race, Gender, and Age", WACV 2021), licensed CC BY 4.0; the labels file credits them.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from analyzer.evaluation.fairface import AGE_BINS, CREDIT, HALVES, LICENCE, FairFaceImage, half, load_fairface

__all__ = [
    "ClipPlan",
    "TrackPlan",
    "generate",
    "plan_clips",
    "render_clip",
]

FPS = 25
FRAME_W, FRAME_H = 1280, 720  # px
SLOTS = ((320, 180), (960, 180), (320, 540), (960, 540))  # centres of the four places, px
SLOT_W, SLOT_H = 640, 360  # px; a track stays inside its slot's cell
TRACKS_PER_SLOT = 4  # so a clip holds 16 tracks and lasts about 17 s
LEAD_S = (0.2, 2.4)  # s before a slot's first face: wide, so the slots are out of step
TRACK_S = (2.0, 3.0)  # s a face is shown
GAP_S = (1.6, 2.2)  # s of empty place between two faces of a slot; over the tracker's 1 s max_gap_ms
TAIL_S = 0.6  # s after the last face of the clip
FACE_PX = (40, 100)  # face width (RetinaFace's box), px
BLUR_SIGMA = (0.4, 1.5)  # px of the frame, log-uniform: sharp faces as often as very blurred ones
MOTION_BLUR_PX = (1.5, 4.0)  # length of the linear motion blur, px, in MOTION_BLUR_SHARE of the tracks
MOTION_BLUR_SHARE = 0.3
ROTATION_DEG = 10.0  # largest jitter rotation
SCALE_JITTER = 0.08  # largest jitter of the size, share
SHIFT_JITTER_SIDES = 0.05  # largest jitter of the position, face widths
JITTER_HZ = (0.4, 1.3)
DRIFT_SIDES = (0.1, 0.3)  # drift over the whole track, face widths
FLIP_SHARE = (0.25, 0.5)  # share of the track shown mirrored
CONTRAST = (0.8, 1.15)  # gain on the face, at the start and at the end of the track
BRIGHTNESS = (-20.0, 20.0)  # offset on the face, grey levels
NOISE_SIGMA = (1.5, 5.0)  # grey levels, per clip
NOISE_FRAMES = 8  # noise fields per clip, one drawn per frame: fresh noise cost 30 ms a frame
TEXTURED_SHARE = 0.5  # share of clips on a textured background
PLAIN_SHADE = 30.0  # grey levels a plain background's shading varies by
FEATHER = 0.12  # share of the crop side over which its edge fades into the background
CRF = (26, 30)  # libx264 constant rate factor, per clip: visible compression, as in uploaded video
PRESET = "veryfast"
X264_THREADS = 2  # fixed: x264's output depends on its thread count
CROP_PX = 448  # px; the crops of FairFace 540 are 448x448 (its README says 224)
# RetinaFace's box (x, y, w, h in crop px) of the face nearest the centre of each FairFace 540 crop
# (scripts/measure_synthetic_tracks.py box --write); a crop missing there gets the median box,
# FACE_IN_CROP (centre x, centre y, width, height as shares of the crop side, medians over the 538
# crops with a face; quartiles of the width 0.331-0.374, of the height 0.442-0.515).
FACE_BOXES = Path(__file__).with_name("fairface_540_boxes.tsv")
FACE_IN_CROP = (0.501, 0.464, 0.347, 0.476)
CUT_PX = 320  # px; side of the square cut around the face, resampled from the crop at about 1:1
FACE_W = 0.48  # the face box's width as a share of the cut's side: the cut is about 2 face widths
SOURCE = "FairFace 540 (CC BY 4.0)"


@dataclass(frozen=True)
class Jitter:
    """Two sines per pose component: amplitudes are the largest excursion, ``hz`` and ``phase`` per sine."""

    hz: tuple[float, ...]
    phase: tuple[float, ...]

    def at(self, t: float) -> float:
        """In [-1, 1]: the mean of the sines at ``t`` seconds from the track's start."""
        return sum(math.sin(2 * math.pi * f * t + p) for f, p in zip(self.hz, self.phase, strict=True)) / len(self.hz)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Jitter:
        return cls(tuple(rng.uniform(*JITTER_HZ, 2).tolist()), tuple(rng.uniform(0, 2 * math.pi, 2).tolist()))


@dataclass(frozen=True)
class Pose:
    """Where the cut is at one moment: its centre (the face's) in frame px, scale (frame px per cut
    px), rotation, mirror."""

    cx: float
    cy: float
    scale: float
    angle_deg: float
    flipped: bool


@dataclass(frozen=True)
class TrackPlan:
    """One FairFace crop shown in one slot from ``first_frame`` to ``last_frame`` (inclusive)."""

    image: FairFaceImage
    slot: int
    first_frame: int
    last_frame: int
    face_px: int
    blur_sigma: float
    motion_px: float  # 0: no motion blur
    motion_deg: float
    face_in_crop: tuple[float, float, float, float]  # RetinaFace's box in the FairFace crop, crop px
    start_xy: tuple[float, float]  # the face's centre at the first frame, px
    drift_xy: tuple[float, float]  # its move over the track, px
    contrast: tuple[float, float]  # at the first and the last frame
    brightness: tuple[float, float]
    flip_span: tuple[float, float]  # share of the track (from, to) shown mirrored
    rotation: Jitter
    scale: Jitter
    shift_x: Jitter
    shift_y: Jitter

    @property
    def start_s(self) -> float:
        return self.first_frame / FPS

    @property
    def end_s(self) -> float:
        return self.last_frame / FPS

    @property
    def label_frame(self) -> int:
        """The frame of ``t_s``: mid-span, where the labelled box is furthest from neither end."""
        return (self.first_frame + self.last_frame) // 2

    def progress(self, frame: int) -> float:
        return (frame - self.first_frame) / max(1, self.last_frame - self.first_frame)

    def pose(self, frame: int) -> Pose:
        t = (frame - self.first_frame) / FPS
        u = self.progress(frame)
        nominal = self.face_px / (FACE_W * CUT_PX)
        shift = SHIFT_JITTER_SIDES * self.face_px
        return Pose(
            cx=self.start_xy[0] + u * self.drift_xy[0] + shift * self.shift_x.at(t),
            cy=self.start_xy[1] + u * self.drift_xy[1] + shift * self.shift_y.at(t),
            scale=nominal * (1 + SCALE_JITTER * self.scale.at(t)),
            angle_deg=ROTATION_DEG * self.rotation.at(t),
            flipped=self.flip_span[0] <= u < self.flip_span[1],
        )

    def face_box(self, frame: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) in frame px of the face at ``frame``, where RetinaFace would box it: the
        cut is centred on the face, so the box is centred on the pose (rotation ignored)."""
        pose = self.pose(frame)
        w = FACE_W * CUT_PX * pose.scale
        h = w * self.face_in_crop[3] / self.face_in_crop[2]
        return pose.cx - w / 2, pose.cy - h / 2, w, h

    def label(self) -> dict[str, Any]:
        """This track's entry in ``labels.json``."""
        number = self.image.path.stem.rsplit("_", 1)[-1]
        return {
            "id": f"ff-{number}",
            "person": f"ff-{number}",
            "gender": self.image.gender,
            "age_bin": self.image.age_bin,
            "start_s": round(self.start_s, 2),
            "end_s": round(self.end_s, 2),
            "t_s": round(self.label_frame / FPS, 2),
            "box": [round(v) for v in self.face_box(self.label_frame)],
            # a crop where RetinaFace found no face even sharp and large cannot be asked of a video
            "judgeable": self.image.path.name in face_boxes(),
            "face_px": self.face_px,
            "blur_sigma": round(self.blur_sigma, 2),
            "image": self.image.path.name,
        }


@dataclass(frozen=True)
class ClipPlan:
    """One clip: its name, half, tracks and background, and how many frames it has."""

    name: str
    half: str
    tracks: tuple[TrackPlan, ...]
    frames: int
    textured: bool
    background_seed: int
    noise_sigma: float
    crf: int

    def label(self, file: str) -> dict[str, Any]:
        return {
            "file": file,
            "name": self.name,
            "kind": "synthetic",
            "half": self.half,
            "source": SOURCE,
            "licence": LICENCE,
            "appearances": [t.label() for t in sorted(self.tracks, key=lambda t: (t.first_frame, t.slot))],
        }


def plan_clips(images: Sequence[FairFaceImage], half_name: str, seed: int) -> list[ClipPlan]:
    """The clips showing ``images`` in order, ``4 * TRACKS_PER_SLOT`` per clip. Clip ``k`` draws
    from its own generator (seed, half, k), so a ``--limit`` changes only the last clip."""
    per_clip = len(SLOTS) * TRACKS_PER_SLOT
    clips = []
    for k in range(0, len(images), per_clip):
        rng = np.random.default_rng([seed, HALVES.index(half_name), k // per_clip])
        clips.append(_plan_clip(rng, images[k : k + per_clip], f"synth-{half_name}-{k // per_clip:02d}", half_name))
    return clips


def _plan_clip(rng: np.random.Generator, images: Sequence[FairFaceImage], name: str, half_name: str) -> ClipPlan:
    textured = bool(rng.random() < TEXTURED_SHARE)
    background_seed = int(rng.integers(2**31))
    noise_sigma = float(rng.uniform(*NOISE_SIGMA))
    next_free_s = rng.uniform(*LEAD_S, len(SLOTS))  # when each slot may show its next face
    tracks = []
    for i, image in enumerate(images):
        slot = i % len(SLOTS)
        first = math.ceil(next_free_s[slot] * FPS)
        last = first + round(rng.uniform(*TRACK_S) * FPS) - 1
        tracks.append(_plan_track(rng, image, slot, first, last))
        next_free_s[slot] = (last + 1) / FPS + rng.uniform(*GAP_S)
    frames = max(t.last_frame for t in tracks) + 1 + round(TAIL_S * FPS)
    crf = int(rng.integers(CRF[0], CRF[1] + 1))
    return ClipPlan(name, half_name, tuple(tracks), frames, textured, background_seed, noise_sigma, crf)


def _plan_track(rng: np.random.Generator, image: FairFaceImage, slot: int, first: int, last: int) -> TrackPlan:
    face_px = int(rng.integers(FACE_PX[0], FACE_PX[1] + 1))
    blur_sigma = float(np.exp(rng.uniform(*np.log(BLUR_SIGMA))))
    motion = rng.random() < MOTION_BLUR_SHARE
    motion_px = float(rng.uniform(*MOTION_BLUR_PX)) if motion else 0.0
    motion_deg = float(rng.uniform(0, 180))
    drift_angle = rng.uniform(0, 2 * math.pi)
    drift = rng.uniform(*DRIFT_SIDES) * face_px
    drift_xy = (drift * math.cos(drift_angle), drift * math.sin(drift_angle))
    start_xy = _start_in_slot(rng, slot, face_px, drift_xy)
    face_in_crop = face_boxes().get(image.path.name, MEDIAN_BOX)
    flip_from = rng.uniform(0, 1 - FLIP_SHARE[1])
    flip_span = (flip_from, flip_from + rng.uniform(*FLIP_SHARE))
    contrast = (float(rng.uniform(*CONTRAST)), float(rng.uniform(*CONTRAST)))
    brightness = (float(rng.uniform(*BRIGHTNESS)), float(rng.uniform(*BRIGHTNESS)))
    jitters = [Jitter.draw(rng) for _ in range(4)]
    return TrackPlan(
        image, slot, first, last, face_px, blur_sigma, motion_px, motion_deg, face_in_crop, start_xy, drift_xy,
        contrast, brightness, (float(flip_span[0]), float(flip_span[1])), *jitters,
    )  # fmt: skip


MEDIAN_BOX = (
    (FACE_IN_CROP[0] - FACE_IN_CROP[2] / 2) * CROP_PX,
    (FACE_IN_CROP[1] - FACE_IN_CROP[3] / 2) * CROP_PX,
    FACE_IN_CROP[2] * CROP_PX,
    FACE_IN_CROP[3] * CROP_PX,
)


@functools.cache
def face_boxes() -> dict[str, tuple[float, float, float, float]]:
    """``FACE_BOXES``: crop file name -> RetinaFace's (x, y, w, h) of its face, crop px."""
    with open(FACE_BOXES, newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {row["file"]: (float(row["x"]), float(row["y"]), float(row["w"]), float(row["h"])) for row in rows}


def _start_in_slot(
    rng: np.random.Generator, slot: int, face_px: int, drift_xy: tuple[float, float]
) -> tuple[float, float]:
    """A start for the face's centre such that the whole cut's path, jitter included, stays in the slot's cell."""
    crop_px = face_px / FACE_W * (1 + SCALE_JITTER)
    half_extent = crop_px * (math.cos(math.radians(ROTATION_DEG)) + math.sin(math.radians(ROTATION_DEG))) / 2
    half_extent += SHIFT_JITTER_SIDES * face_px
    start = []
    for centre, size, move in zip(SLOTS[slot], (SLOT_W, SLOT_H), drift_xy, strict=True):
        low, high = centre - size / 2 + half_extent - min(0.0, move), centre + size / 2 - half_extent - max(0.0, move)
        start.append(float(rng.uniform(low, high)))
    return start[0], start[1]


class _TrackArt:
    """A track's cut, scaled once to its nominal size (plain and mirrored), and its feathered alpha."""

    def __init__(self, plan: TrackPlan) -> None:
        crop = cv2.imread(str(plan.image.path), cv2.IMREAD_COLOR)
        if crop is None:
            raise FileNotFoundError(f"cannot read {plan.image.path}")
        x, y, w, h = plan.face_in_crop
        # the cut: the face's centre to the cut's, the face's width to FACE_W of it; past the
        # crop's edge (a face near it) the crop is mirrored rather than left black
        scale = FACE_W * CUT_PX / w
        m = np.array([[scale, 0, CUT_PX / 2 - scale * (x + w / 2)], [0, scale, CUT_PX / 2 - scale * (y + h / 2)]])
        cut = cv2.warpAffine(crop, m, (CUT_PX, CUT_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        self.nominal = plan.face_px / (FACE_W * CUT_PX)  # frame px per cut px
        side = max(8, round(CUT_PX * self.nominal))
        # INTER_AREA to the nominal size first: warping a 320 px cut straight down to 120 px aliases
        small = cv2.resize(cut, (side, side), interpolation=cv2.INTER_AREA)
        self.images = (small, np.ascontiguousarray(small[:, ::-1]))
        ramp = np.clip((np.minimum(np.arange(side), np.arange(side)[::-1]) + 0.5) / (FEATHER * side), 0, 1)
        self.alpha = np.outer(ramp, ramp).astype(np.float32)
        self.side = side


def _background(plan: ClipPlan) -> np.ndarray:
    """The clip's still background: a plain wall (one muted colour, gently shaded), or smooth colour
    blobs with finer mottling.

    Never one flat colour: its pixels all fall in one or two bins of the tracker's hue-saturation
    histogram, and the encoder's frame-to-frame shifts of that colour then read as scene cuts
    (correlation 0.54-0.69 between samples; 9 of the first 270 tracks were split so, 3 at a time)."""
    rng = np.random.default_rng(plan.background_seed)
    if not plan.textured:
        colour = rng.uniform(50, 200, 3)
        shade = cv2.resize(
            rng.uniform(-PLAIN_SHADE, PLAIN_SHADE, (3, 4, 1)), (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC
        )
        return np.clip(colour + shade[..., None], 0, 255).astype(np.uint8)
    coarse = cv2.resize(rng.uniform(40, 210, (5, 9, 3)), (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.normal(0, 18, (45, 80, 3)), (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    return np.clip(coarse + fine, 0, 255).astype(np.uint8)


def _motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line of ``length`` px at ``angle_deg``: the blur of a face moving during the exposure."""
    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle_deg)) * length / 2, math.sin(math.radians(angle_deg)) * length / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def _paste(frame: np.ndarray, scene: _Scene, plan: TrackPlan, art: _TrackArt, index: int) -> None:
    """Draw the track's face into ``frame`` (uint8) at ``index`` over the clean background, blur
    the region, then add the frame's noise field: the same noise as the rest of the frame."""
    pose = plan.pose(index)
    m = cv2.getRotationMatrix2D((art.side / 2, art.side / 2), pose.angle_deg, pose.scale / art.nominal)
    m[:, 2] += (pose.cx - art.side / 2, pose.cy - art.side / 2)
    reach = art.side * pose.scale / art.nominal * 0.75 + 3 * plan.blur_sigma + plan.motion_px + 2
    x0, y0 = max(0, int(pose.cx - reach)), max(0, int(pose.cy - reach))
    x1, y1 = min(FRAME_W, int(pose.cx + reach) + 1), min(FRAME_H, int(pose.cy + reach) + 1)
    m[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    face = cv2.warpAffine(art.images[pose.flipped], m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.warpAffine(art.alpha, m, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    u = plan.progress(index)
    gain = plan.contrast[0] + u * (plan.contrast[1] - plan.contrast[0])
    offset = plan.brightness[0] + u * (plan.brightness[1] - plan.brightness[0])
    region = scene.background[y0:y1, x0:x1]
    region = alpha * np.clip(face.astype(np.float32) * gain + offset, 0, 255) + (1 - alpha) * region
    region = cv2.GaussianBlur(region, (0, 0), plan.blur_sigma)
    if plan.motion_px:
        region = cv2.filter2D(region, -1, _motion_kernel(plan.motion_px, plan.motion_deg))
    region += scene.noise[scene.noise_index][y0:y1, x0:x1]
    frame[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)


class _Scene:
    """A clip's still background, clean (float32) and with each of its noise fields (uint8)."""

    def __init__(self, plan: ClipPlan) -> None:
        rng = np.random.default_rng(plan.background_seed + 1)
        self.background = _background(plan).astype(np.float32)
        self.noise = rng.normal(0, plan.noise_sigma, (NOISE_FRAMES, FRAME_H, FRAME_W, 3)).astype(np.float32)
        self.noisy = [np.clip(self.background + field, 0, 255).astype(np.uint8) for field in self.noise]
        self.rng = rng
        self.noise_index = 0

    def next_frame(self) -> np.ndarray:
        """A fresh uint8 frame: the background under a noise field drawn for this frame."""
        self.noise_index = int(self.rng.integers(NOISE_FRAMES))
        return self.noisy[self.noise_index].copy()


def render_clip(plan: ClipPlan) -> Iterator[np.ndarray]:
    """The clip's frames, H x W x 3 uint8 BGR, in order."""
    scene = _Scene(plan)
    arts: dict[int, _TrackArt] = {}
    for index in range(plan.frames):
        frame = scene.next_frame()
        for n, track in enumerate(plan.tracks):
            if track.first_frame <= index <= track.last_frame:
                art = arts.get(n) or arts.setdefault(n, _TrackArt(track))
                _paste(frame, scene, track, art, index)
            elif index > track.last_frame:
                arts.pop(n, None)
        yield frame


def write_clip(path: Path, frames: Iterator[np.ndarray], crf: int) -> None:
    """Encode BGR frames as H.264 (libx264, yuv420p, constant rate factor ``crf``) in an MP4 with PyAV."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height = FRAME_W, FRAME_H
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = X264_THREADS
        stream.options = {"crf": str(crf), "preset": PRESET}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())


def generate(
    fairface_dir: str | Path, out: str | Path, *, half_name: str = "fit", seed: int = 0, limit: int | None = None
) -> dict[str, Any]:
    """Plan, render and encode the clips of one half (or of both, ``"all"``) into ``out/clips``, write
    ``out/labels.json`` and return what it holds. ``limit`` keeps the first N crops of each half.

    Each clip is written under a temporary name and renamed when complete, and the labels are
    rewritten after each clip, so a run stopped half-way leaves labels for exactly the clips there."""
    images = load_fairface(fairface_dir)
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    labels: dict[str, Any] = {
        "version": 1,
        "age_bins": list(AGE_BINS),
        "credit": f"Faces from {CREDIT}, degraded and re-encoded by analyzer.evaluation.synthetic",
        "generator": {"seed": seed, "half": half_name, "limit": limit},
        "videos": [],
    }
    for name in HALVES if half_name == "all" else (half_name,):
        for clip in plan_clips(half(images, name)[:limit], name, seed):
            file = f"clips/{clip.name}.mp4"
            partial = out / f"{file}.partial"
            write_clip(partial, render_clip(clip), clip.crf)
            partial.replace(out / file)
            labels["videos"].append(clip.label(file))
            _write_json(out / "labels.json", labels)
    return labels


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
