"""The labelled video set: its labels, the worker's appearances matched to them, and the scores.

``labels.json`` (``tests/data/video_set/labels.json`` for real clips; the synthetic FairFace
tracks of analyzer.evaluation.synthetic write one of the same shape) lists videos, and per video
the appearances a person labelled by eye: gender, FairFace age bin, time span, and the face box
at one time ``t_s`` inside the span. Each video is analysed by the real pipeline (every
appearance's faces kept, analyzer.analysis.pooling.AppearanceFaces) and each label is matched to
the appearance that holds a face within MATCH_WINDOW_S of ``t_s`` overlapping the labelled box
by at least MATCH_IOU. A label no appearance matches is *missed* (counted as unanswered).

Scores are per labelled appearance with a judgeable face (``judgeable``: a person can tell the
gender from the face): answered share, share right of the answered, and age-bin accuracy;
real and synthetic videos are reported apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.analysis.calibration import imputed_ages, pooled_log_odds, reliability_bins, sigmoid
from analyzer.analysis.pooling import MAX_GENDER_SCORE, AppearanceFaces, Pooling, concat_faces
from analyzer.evaluation.evalset import FAIRFACE_BINS, bin_range, fairface_bin
from analyzer.events import AnalysisResult, Event

__all__ = [
    "Judged",
    "LabelledAppearance",
    "LabelledVideo",
    "Match",
    "analyse",
    "events_report",
    "judged",
    "load",
    "faces_from_json",
    "faces_to_json",
    "load_records",
    "match",
    "pooled_scores",
    "report",
]

MATCH_WINDOW_S = 0.5  # s; a face this near the label's time may match its box
MATCH_IOU = 0.3  # least overlap of that face's box with the labelled box


@dataclass(frozen=True)
class LabelledAppearance:
    """One appearance as a person labelled it; box is (x, y, w, h) at ``t_s``."""

    id: str
    person: str
    gender: str
    age_bin: str
    start_s: float
    end_s: float
    t_s: float
    box: tuple[float, float, float, float]
    judgeable: bool

    @property
    def is_male(self) -> bool:
        return self.gender == "male"


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    name: str
    kind: str  # "real" or "synthetic"
    half: str  # "fit", "held_out", or "" for real videos (scored leave-one-video-out)
    appearances: tuple[LabelledAppearance, ...]


@dataclass
class Match:
    """A labelled appearance and the worker's appearance matched to it (None: missed)."""

    video: str
    label: LabelledAppearance
    event_key: str | None
    faces: AppearanceFaces | None


def _resolve(reference: str, labels_dir: Path) -> Path:
    """A video path of the labels: ``../shared/...`` under ANALYZER_SHARED_DIR when set, else
    relative to the labels file, else to the working directory."""
    shared = os.environ.get("ANALYZER_SHARED_DIR")
    if shared and reference.startswith("../shared/"):
        return Path(shared) / reference.removeprefix("../shared/")
    for base in (labels_dir, Path.cwd()):
        if (base / reference).is_file():
            return base / reference
    raise FileNotFoundError(f"video {reference} of {labels_dir / 'labels.json'} not found")


def load(labels_path: str | Path) -> list[LabelledVideo]:
    """The videos of a labels.json; raises FileNotFoundError or ValueError naming the problem."""
    labels_path = Path(labels_path)
    data = json.loads(labels_path.read_text())
    videos = []
    for video in data["videos"]:
        appearances = []
        for a in video["appearances"]:
            if a["gender"] not in ("female", "male") or a["age_bin"] not in FAIRFACE_BINS:
                raise ValueError(f"{a['id']}: gender {a['gender']!r} or age bin {a['age_bin']!r} unknown")
            appearances.append(
                LabelledAppearance(
                    id=a["id"],
                    person=a.get("person", a["id"]),
                    gender=a["gender"],
                    age_bin=a["age_bin"],
                    start_s=float(a["start_s"]),
                    end_s=float(a["end_s"]),
                    t_s=float(a["t_s"]),
                    box=tuple(float(v) for v in a["box"]),  # type: ignore[arg-type]
                    judgeable=bool(a.get("judgeable", True)),
                )
            )
        path = _resolve(video.get("file") or video["path"], labels_path.parent)
        videos.append(LabelledVideo(path, video["name"], video["kind"], video.get("half", ""), tuple(appearances)))
    return videos


def _iou(a: tuple[float, float, float, float], b: np.ndarray) -> float:
    """IoU of an (x, y, w, h) box and an x1y1x2y2 box."""
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    w = max(0.0, min(ax2, b[2]) - max(a[0], b[0]))
    h = max(0.0, min(ay2, b[3]) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(video: LabelledVideo, appearances: dict[str, AppearanceFaces]) -> list[Match]:
    """Each label of ``video`` with the appearance that best overlaps its box near its time; one
    appearance answers for one label at most (pairs taken best overlap first)."""
    pairs = []
    for i, label in enumerate(video.appearances):
        for key, faces in appearances.items():
            near = np.flatnonzero(np.abs(faces.times_ms / 1000.0 - label.t_s) <= MATCH_WINDOW_S)
            overlap = max((_iou(label.box, faces.boxes[k]) for k in near), default=0.0)
            if overlap >= MATCH_IOU:
                pairs.append((-overlap, i, key))
    chosen: dict[int, str] = {}
    for _, i, key in sorted(pairs):
        if i not in chosen and key not in chosen.values():
            chosen[i] = key
    return [
        Match(video.name, label, chosen.get(i), appearances[chosen[i]] if i in chosen else None)
        for i, label in enumerate(video.appearances)
    ]


def analyse(video: LabelledVideo, model_dir: Path, **settings: Any) -> AnalysisResult:
    """The real pipeline on ``video``, every gender scored (``min_gender_score`` 0): its events and
    every appearance's faces (``result.appearances``, event_key -> AppearanceFaces)."""
    from analyzer.analysis.pipeline import analyze_video
    from analyzer.settings import Settings

    options = {"min_gender_score": 0.0, "log_format": "text", "device": "cpu"} | settings
    return analyze_video(video.path, Settings(video_key=str(video.path), video_id=1, model_dir=model_dir, **options))


def events_report(pairs: list[tuple[Match, Event | None]], min_score: float) -> dict[str, Any]:
    """What the worker writes, scored: per labelled appearance with a judgeable face and its
    matched event (None: missed), the event's gender at ``min_score`` (an event's answer may pool
    its whole person's faces)."""
    judgeable = [(m, event) for m, event in pairs if m.label.judgeable]
    said = [
        (event.gender, m.label.gender)
        for m, event in judgeable
        if event is not None and (event.gender_score or 0.0) >= min_score
    ]
    return {
        "appearances": len(judgeable),
        "answered": len(said),
        "answered_share": round(len(said) / max(len(judgeable), 1), 3),
        "right_of_answered": round(sum(g == t for g, t in said) / len(said), 3) if said else None,
    }


def faces_to_json(appearances: dict[str, AppearanceFaces]) -> dict[str, dict[str, list]]:
    """Appearances as JSON-ready dicts (arrays as lists), for caching a slow analysis; without the
    face descriptors, which never leave the process."""
    names = [name for name in AppearanceFaces.__dataclass_fields__ if name != "embedding"]
    return {key: {name: getattr(faces, name).tolist() for name in names} for key, faces in appearances.items()}


def faces_from_json(data: dict[str, dict[str, list]]) -> dict[str, AppearanceFaces]:
    """The inverse of ``faces_to_json``."""
    appearances = {}
    for key, columns in data.items():
        arrays = {name: np.asarray(value) for name, value in columns.items()}
        arrays["judgeable"] = arrays["judgeable"].astype(bool)
        arrays["boxes"] = arrays["boxes"].reshape(-1, 4)
        appearances[key] = AppearanceFaces(**arrays)
    return appearances


# -- scoring appearances --


@dataclass
class Judged:
    """A labelled appearance with a judgeable face, and what its matched faces say under given
    constants: ``z`` its judgeable faces' log-odds after quality, ``w`` their weights, ``age_probs``
    their age distributions (all None where the worker missed it or found no judgeable face)."""

    video: str
    kind: str
    half: str
    label: LabelledAppearance
    z: np.ndarray | None
    w: np.ndarray | None
    age_probs: np.ndarray | None


def load_records(paths: list[str | Path], videos: list[LabelledVideo]) -> list[dict[str, Any]]:
    """scripts/video_features.py's records (name, kind, half, temperature, appearances, people),
    each with ``faces`` (its appearances, event_key -> AppearanceFaces) and ``matches``: the labels
    of its video in ``videos`` matched to them."""
    by_name = {video.name: video for video in videos}
    records = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        if record["name"] not in by_name:
            continue
        record["faces"] = faces_from_json(record["appearances"])
        record["matches"] = match(by_name[record["name"]], record["faces"])
        records.append(record)
    return records


def judged(
    records: list[dict[str, Any]], temperature: float, pooling: Pooling, per_person: bool = False
) -> list[Judged]:
    """The labelled appearances with a judgeable face, their faces' evidence under ``temperature``
    (the classifier's) and ``pooling``'s quality temperature; each record's faces were divided by
    the temperature it names, which is undone first. ``per_person``: each appearance's evidence is
    all faces of its person (the record's ``people``, as the worker linked them), as it is written."""
    rows = []
    for record in records:
        people: dict[str, str] = record.get("people", {}) if per_person else {}
        for m in record["matches"]:
            if not m.label.judgeable:
                continue
            row = Judged(record["name"], record["kind"], record["half"], m.label, None, None, None)
            faces = m.faces
            if m.event_key in people:
                mine = people[m.event_key]
                faces = concat_faces([record["faces"][key] for key, person in people.items() if person == mine])
            if faces is not None and faces.judgeable.any():
                j = faces.judgeable
                logits = faces.gender_logit[j] * record["temperature"] / temperature
                row.z = pooling.face_log_odds(logits, faces.face_px[j], faces.sharpness[j])
                row.w = faces.weights[j]
                row.age_probs = faces.age_probs[j]
            rows.append(row)
    return rows


def pooled_scores(rows: list[Judged], rho: float) -> tuple[np.ndarray, np.ndarray]:
    """(gender score percent, right) of each row that has faces, pooled with ``rho``."""
    scores, right = [], []
    for row in rows:
        if row.z is None or row.w is None:
            continue
        p = float(sigmoid(pooled_log_odds(row.z, row.w, rho)))
        scores.append(min(100.0 * max(p, 1.0 - p), MAX_GENDER_SCORE))
        right.append((p > 0.5) == row.label.is_male)
    return np.array(scores), np.array(right, dtype=bool)


def report(rows: list[Judged], rho: float, min_score: float, age: Any = None) -> dict[str, Any]:
    """Appearance figures at ``min_score``: answered share of all rows (a missed appearance is
    unanswered), share right of the answered, reliability bins; with ``age`` (an AgeCorrection or
    AgeCalibration) the age-bin accuracy and the share of each bin's ages inside the range."""
    from models.cydral import AGE_CLASSES

    scores, right = pooled_scores(rows, rho)
    answered = scores >= min_score
    figures: dict[str, Any] = {
        "min_gender_score": min_score,
        "appearances": len(rows),
        "with_faces": int(len(scores)),
        "answered": int(answered.sum()),
        "answered_share": round(float(answered.sum()) / max(len(rows), 1), 3),
        "right_of_answered": round(float(right[answered].mean()), 3) if answered.any() else None,
        "right_of_all_judged": round(float(right.mean()), 3) if len(right) else None,
        "reliability": reliability_bins(scores / 100.0, right),
        "scores": [round(float(s), 1) for s in scores],
        "right": [bool(r) for r in right],
    }
    if age is not None:
        with_faces = [r for r in rows if r.age_probs is not None and r.w is not None]
        hits, holds = [], {}
        for row in with_faces:
            mixture = (row.w[:, None] * row.age_probs).sum(axis=0) / row.w.sum()  # type: ignore[index]
            years, low, high = age.estimate(mixture[None], np.asarray(AGE_CLASSES))
            hits.append(fairface_bin(float(years[0])) == row.label.age_bin)
            first, last = np.array([bin_range(row.label.age_bin)], np.float64).T
            spread = imputed_ages(first, last)[0]
            holds.setdefault(row.label.age_bin, []).append(float(np.mean((spread >= low[0]) & (spread <= high[0]))))
        figures["age_bin_accuracy"] = round(float(np.mean(hits)), 3) if hits else None
        figures["age_range_holds_by_bin"] = {b: round(float(np.mean(v)), 2) for b, v in sorted(holds.items())}
    return figures
