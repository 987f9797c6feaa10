"""Measuring result quality on a labelled folder of face images (``analyzer evaluate``).

Each image goes through the same FaceAnalyzer as a video frame (our detector, our chips, our
classifier); the face with the highest detector score is the image's face. An image where the
detector finds nothing is tried once more, scaled up 2x inside a border; if still nothing is
found it is a *miss*: counted and reported, and excluded from every other figure
(``accuracy_with_misses`` counts misses as wrong answers).

``fit`` fits the per-face calibration constants (gender temperature and its growth for small and
blurred faces, least gender score, age correction and range) on one set of faces; ``report``
measures one classifier with given constants; ``markdown`` and ``write_charts`` present one or
more reports side by side.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.analysis import calibration
from analyzer.analysis.pooling import POOLINGS, Pooling
from analyzer.errors import InputNotFound
from analyzer.evaluation import evalset
from analyzer.evaluation.degrade import Degradation, degrade
from analyzer.settings import DEFAULT_MIN_GENDER_SCORE

__all__ = ["Calibration", "ChipOutputs", "run_chips", "fit", "report", "markdown", "write_charts", "half"]

log = logging.getLogger(__name__)

BATCH = 32  # chips per FaceAnalyzer call
RETRY_SCALE = 2  # a chip without a face is retried this much larger, inside a border of
RETRY_BORDER = 0.25  # this share of its side on every edge
COVERAGE = 0.8  # the coverage at which "accuracy at coverage" is quoted
GENDER_TARGET = 0.95  # share right wanted among answered faces (ANALYZER_MIN_GENDER_SCORE)
POSE_GROUPS = {"frontal >= 0.8": 0.8, "0.5-0.8": 0.5, "turned < 0.5": 0.0}  # by frontal_pose, lower edges


@dataclass(frozen=True)
class Calibration:
    """The constants a report is computed with: gender temperature, least gender score
    (percent), and the pooling (per-face quality temperature, age correction and range)."""

    temperature: float
    min_gender_score: float
    pooling: Pooling


@dataclass
class ChipOutputs:
    """What the analyzer said about each labelled face (arrays over faces; NaN where missed)."""

    faces: list[evalset.EvalFace]
    found: np.ndarray  # (n,) bool
    gender_logit: np.ndarray  # (n,) raw log-odds of male
    age_probs: np.ndarray  # (n, len(AGE_CLASSES))
    det_score: np.ndarray  # (n,)
    face_px: np.ndarray  # (n,)
    frontal: np.ndarray  # (n,) frontal-pose measure 0-1 (analyzer.analysis.pooling.frontal_pose)
    sharpness: np.ndarray  # (n,) variance of Laplacian of the aligned crop (FaceBatch.sharpness)
    seconds_per_face: float  # alignment + classification per face (median over batches)
    detect_seconds_per_image: float  # detection per image (median over batches)

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(is_male, age) label arrays."""
        return (np.array([f.is_male for f in self.faces], bool), np.array([f.age for f in self.faces], np.float64))


def shipped_calibration(classifier: str) -> Calibration:
    """The constants the worker uses for ``classifier``."""
    from models.weights import classifier_config

    return Calibration(classifier_config(classifier).gender_temperature, DEFAULT_MIN_GENDER_SCORE, POOLINGS[classifier])


def _read(face: evalset.EvalFace) -> np.ndarray:
    import cv2

    image = cv2.imread(str(face.path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputNotFound(f"image {face.path}: not a decodable image")
    return image


def _enlarged(image: np.ndarray) -> np.ndarray:
    import cv2

    big = cv2.resize(image, None, fx=RETRY_SCALE, fy=RETRY_SCALE, interpolation=cv2.INTER_CUBIC)
    border = round(RETRY_BORDER * max(big.shape[:2]))
    return cv2.copyMakeBorder(big, border, border, border, border, cv2.BORDER_REPLICATE)


def _batches(images: list[np.ndarray]) -> list[list[int]]:
    """Indices grouped into runs of at most BATCH images of one shape (a batch is one array)."""
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and len(groups[-1]) < BATCH and images[groups[-1][0]].shape == image.shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _analyze(analyzer: Any, images: list[np.ndarray]) -> tuple[list[dict | None], list[tuple[float, float, int]]]:
    """Each image's best face (or None), and per batch: seconds of the whole analysis, seconds
    of detection alone, faces found."""
    import torch

    from analyzer.analysis.pooling import frontal_pose

    best: list[dict | None] = [None] * len(images)
    timings = []
    for rows in _batches(images):
        frames = np.stack([images[i] for i in rows])
        with torch.inference_mode():
            started = time.perf_counter()
            analyzer.detect(analyzer.to_float(analyzer.upload(frames)))
            detect = time.perf_counter() - started
        started = time.perf_counter()
        found = analyzer.analyze(frames)
        timings.append((time.perf_counter() - started, detect, len(found)))
        for k in range(len(found)):
            slot = rows[int(found.frame_index[k])]
            if best[slot] is None or found.scores[k] > best[slot]["det_score"]:
                best[slot] = {
                    "gender_logit": float(found.gender_logit[k]),
                    "age_probs": found.age_probs[k],
                    "det_score": float(found.scores[k]),
                    "face_px": float(found.face_px[k]),
                    "frontal": float(frontal_pose(found.landmarks[k : k + 1])[0]),
                    "sharpness": float(found.sharpness[k]),
                }
    return best, timings


def _per_face_seconds(timings: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Median over batches of (analysis - detection) seconds per face, and of detection seconds per
    image (approximated by faces, one per chip): medians, so that a busy moment of a shared machine
    does not set the figure."""
    batches = [(total, detect, faces) for total, detect, faces in timings if faces]
    if not batches:
        return math.nan, math.nan
    return (
        float(np.median([(total - detect) / faces for total, detect, faces in batches])),
        float(np.median([detect / faces for _, detect, faces in batches])),
    )


def run_chips(
    analyzer: Any, faces: list[evalset.EvalFace], level: Degradation | None = None, clean: ChipOutputs | None = None
) -> ChipOutputs:
    """Every labelled face through ``analyzer`` (a models.face_analyzer.FaceAnalyzer).

    level: degrade each chip first (analyzer.evaluation.degrade) to the face size of ``level``,
    measured on ``clean`` (the same faces' clean outputs; needed with ``level``). A face the clean
    run missed is missed at every level.
    """
    from models.cydral import AGE_CLASSES

    images = [_read(face) for face in faces]
    if level is not None:
        if clean is None or len(clean.faces) != len(faces):
            raise ValueError("a degraded run needs the same faces' clean outputs")
        images = [degrade(im, px, level) if ok else im for im, px, ok in zip(images, clean.face_px, clean.found)]
    best, timings = _analyze(analyzer, images)
    if level is not None and clean is not None:
        best = [b if ok else None for b, ok in zip(best, clean.found)]
    missed = [i for i, b in enumerate(best) if b is None and (clean is None or clean.found[i])]
    if missed:
        retried, _ = _analyze(analyzer, [_enlarged(images[i]) for i in missed])
        for i, b in zip(missed, retried):
            best[i] = b
    n = len(faces)
    found = np.array([b is not None for b in best], bool)
    nan_row = np.full(len(AGE_CLASSES), np.nan)

    def column(name: str) -> np.ndarray:
        return np.array([b[name] if b is not None else np.nan for b in best], np.float64)

    per_face, per_image = _per_face_seconds(timings)
    return ChipOutputs(
        faces=list(faces),
        found=found,
        gender_logit=column("gender_logit"),
        age_probs=np.stack([b["age_probs"] if b is not None else nan_row for b in best]) if n else np.zeros((0, 1)),
        det_score=column("det_score"),
        face_px=column("face_px"),
        frontal=column("frontal"),
        sharpness=column("sharpness"),
        seconds_per_face=per_face,
        detect_seconds_per_image=per_image,
    )


def _subset(outputs: ChipOutputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(is_male, age (NaN where only the bin is known), gender_logit, age_probs) of the detected faces."""
    is_male, ages = outputs.labels()
    keep = outputs.found
    return is_male[keep], ages[keep], outputs.gender_logit[keep], outputs.age_probs[keep]


def _label_years(faces: list[evalset.EvalFace]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) whole years of each face's label (``evalset.label_years``)."""
    ages = np.array([np.nan if f.age is None else f.age for f in faces], np.float64)
    return evalset.label_years(ages, np.array([f.bin for f in faces]))


def fit(outputs: ChipOutputs, rho: float = 1.0) -> Calibration:
    """Fit the temperature with its growth for small and blurred faces, then the least gender
    score (on the calibrated scores), then the age correction and range, on ``outputs`` (the
    fitting half). ``rho`` (how much an appearance's faces repeat each other) cannot be fitted on
    single photos: it is passed through."""
    from models.cydral import AGE_CLASSES

    is_male, _, logits, probs = _subset(outputs)
    face_px, sharpness = outputs.face_px[outputs.found], outputs.sharpness[outputs.found]
    temperature, size_slope, blur_slope = calibration.fit_quality_temperature(logits, is_male, face_px, sharpness)
    low, high = _label_years([f for f, ok in zip(outputs.faces, outputs.found) if ok])
    age = calibration.fit_age_correction(probs, low, high, np.asarray(AGE_CLASSES))
    pooling = Pooling(size_slope, blur_slope, rho, age, "analyzer evaluate --fit")
    z = pooling.face_log_odds(logits / temperature, face_px, sharpness)
    says_male, confidence = calibration.gender_confidence(calibration.sigmoid(z))
    min_score = calibration.choose_min_score(100.0 * confidence, says_male == is_male, GENDER_TARGET)
    return Calibration(temperature, min_score, pooling)


def _pose_group(frontal: float) -> str:
    return next(name for name, edge in POSE_GROUPS.items() if frontal >= edge)


def _share(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def report(outputs: ChipOutputs, constants: Calibration) -> dict[str, Any]:
    """All the figures of one classifier on one set of faces, as a JSON-ready dict."""
    from models.cydral import AGE_CLASSES

    is_male, ages, logits, probs = _subset(outputs)
    kept = [f for f, ok in zip(outputs.faces, outputs.found) if ok]
    exact = np.isfinite(ages)
    # UTKFace-style sets keep their ten-year bins; bin-labelled sets use their own bins
    bins = np.array([evalset.age_bin(f.age) if f.age is not None else f.bin for f in kept])
    races = np.array([f.race or "unknown" for f in kept])
    poses = np.array([_pose_group(x) for x in outputs.frontal[outputs.found]])
    z = constants.pooling.face_log_odds(
        logits / constants.temperature, outputs.face_px[outputs.found], outputs.sharpness[outputs.found]
    )
    says_male, confidence = calibration.gender_confidence(calibration.sigmoid(z))
    right = says_male == is_male
    _, raw_confidence = calibration.gender_confidence(calibration.sigmoid(logits))
    answered = 100.0 * confidence >= constants.min_gender_score
    age, low, high = constants.pooling.age.estimate(
        probs.reshape(len(probs), len(AGE_CLASSES)), np.asarray(AGE_CLASSES)
    )
    label_low, label_high = _label_years(kept)
    # a bin label holds many ages: the share of them (spread over the bin) inside the range
    truth = np.where(exact[:, None], label_low[:, None], calibration.imputed_ages(label_low, label_high))
    inside = ((truth >= low[:, None]) & (truth <= high[:, None])).mean(axis=1)
    right_bin = np.array([evalset.fairface_bin(a) for a in age]) == np.array([f.bin for f in kept])
    coverage, accuracy = calibration.coverage_curve(confidence, right)

    def groups(keys: np.ndarray, names: list[str]) -> dict[str, dict[str, Any]]:
        table = {}
        for name in names:
            g = keys == name
            table[name] = {
                "faces": int(g.sum()),
                "gender_accuracy": _share(right[g]),
                "age_mae": round(float(np.mean(np.abs(age - ages)[g & exact])), 2) if (g & exact).any() else None,
                "age_bin_accuracy": _share(right_bin[g]),
                "age_range_coverage": _share(inside[g]),
                "age_range_width": round(float(np.mean(high[g] - low[g])), 1) if g.any() else None,
            }
        return table

    n = len(outputs.faces)
    return {
        "images": n,
        "detected": int(outputs.found.sum()),
        "missed": n - int(outputs.found.sum()),
        "calibration": {
            "temperature": constants.temperature,
            "min_gender_score": constants.min_gender_score,
            "size_slope": constants.pooling.size_slope,
            "blur_slope": constants.pooling.blur_slope,
            "age": asdict(constants.pooling.age),
        },
        "gender": {
            "accuracy": _share(right),
            "accuracy_with_misses": round(float(right.sum()) / n, 4) if n else None,
            "accuracy_at_80_coverage": round(calibration.accuracy_at_coverage(confidence, right, COVERAGE), 4),
            "ece_points": round(calibration.expected_calibration_error(confidence, right), 2),
            "ece_points_uncalibrated": round(calibration.expected_calibration_error(raw_confidence, right), 2),
            "ece_points_noise_floor": round(calibration.ece_noise_floor(confidence), 2) if len(right) else None,
            "answered_share": _share(answered),
            "answered_accuracy": _share(right[answered]),
            "reliability": calibration.reliability_bins(confidence, right),
            "reliability_uncalibrated": calibration.reliability_bins(raw_confidence, right),
            "coverage_curve": [[round(float(c), 4), round(float(a), 4)] for c, a in zip(coverage[::5], accuracy[::5])],
        },
        "age": {
            "mae": round(float(np.mean(np.abs(age - ages)[exact])), 2) if exact.any() else None,
            "bin_accuracy": _share(right_bin),
            "range_coverage": _share(inside),
            "range_width_mean": round(float(np.mean(high - low)), 1) if len(ages) else None,
        },
        "by_age_bin": groups(bins, _bin_names(exact)),
        "by_race": groups(races, sorted(set(races.tolist()))),
        "by_pose": groups(poses, list(POSE_GROUPS)),
        "seconds_per_face": {
            "classify": round(outputs.seconds_per_face, 5),
            "detect_per_image": round(outputs.detect_seconds_per_image, 5),
        },
    }


def _bin_names(exact: np.ndarray) -> list[str]:
    """The bins a report is grouped by: UTKFace's ten-year bins where ages are exact, else FairFace's."""
    if len(exact) and exact.all():
        return [evalset.age_bin(edge) for edge in evalset.AGE_BINS]
    return list(evalset.FAIRFACE_BINS)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}"


def markdown(reports: dict[str, dict[str, Any]], half: str, detector: str) -> str:
    """The reports of one or more classifiers as markdown tables, side by side."""
    names = list(reports)
    head = "| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(reports[n]) for n in names) + " |\n"

    out = f"Half: {half}; detector: {detector}.\n\n" + head
    out += row("images (detected / missed)", lambda r: f"{r['images']} ({r['detected']} / {r['missed']})")
    out += row("gender accuracy %", lambda r: _pct(r["gender"]["accuracy"]))
    out += row("gender accuracy %, misses wrong", lambda r: _pct(r["gender"]["accuracy_with_misses"]))
    out += row("gender accuracy % at 80 % coverage", lambda r: _pct(r["gender"]["accuracy_at_80_coverage"]))
    out += row(
        "ECE, points (uncalibrated; a perfect one would show)",
        lambda r: (
            f"{r['gender']['ece_points']:.1f} ({r['gender']['ece_points_uncalibrated']:.1f}; "
            f"{r['gender']['ece_points_noise_floor']:.1f})"
        ),
    )
    out += row("temperature T", lambda r: f"{r['calibration']['temperature']:g}")
    out += row("min gender score", lambda r: f"{r['calibration']['min_gender_score']:g}")
    out += row(
        "answered % / right % of answered",
        lambda r: f"{_pct(r['gender']['answered_share'])} / {_pct(r['gender']['answered_accuracy'])}",
    )
    out += row("age MAE, years", lambda r: "-" if r["age"]["mae"] is None else f"{r['age']['mae']:.2f}")
    out += row("age-bin accuracy % (FairFace bins)", lambda r: _pct(r["age"]["bin_accuracy"]))
    out += row(
        "age range: holds the age % / mean width",
        lambda r: f"{_pct(r['age']['range_coverage'])} / {r['age']['range_width_mean']:.1f}",
    )
    out += row(
        "ms per face (classify) / per image (detect)",
        lambda r: (
            f"{1000 * r['seconds_per_face']['classify']:.2f} / {1000 * r['seconds_per_face']['detect_per_image']:.2f}"
        ),
    )
    for key, title in (("by_age_bin", "age bin"), ("by_race", "race"), ("by_pose", "pose (frontal measure)")):
        groups = list(reports[names[0]][key])
        out += f"\nBy {title}: gender accuracy % / age MAE / age range holds % (width)\n\n"
        out += f"| {title} | faces | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n"
        for g in groups:
            cells = []
            for n in names:
                r = reports[n][key][g]
                cells.append(
                    f"{_pct(r['gender_accuracy'])} / {r['age_mae']} / "
                    f"{_pct(r['age_range_coverage'])} ({r['age_range_width']})"
                )
            out += f"| {g} | {reports[names[0]][key][g]['faces']} | " + " | ".join(cells) + " |\n"
    return out


def write_charts(reports: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    """The accuracy-coverage curve, reliability diagram and age-MAE-per-bin chart as PNGs."""
    from analyzer.evaluation import charts

    curves = [
        charts.Series(
            [c for c, _ in r["gender"]["coverage_curve"]], [a for _, a in r["gender"]["coverage_curve"]], name
        )
        for name, r in reports.items()
    ]
    coverage = charts.line_chart(
        curves,
        "Gender accuracy when only the most confident faces are answered",
        "share of faces answered",
        "accuracy",
        (0.0, 1.0),
        (0.7, 1.0),
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0],
    )
    lines = [charts.Series([0.5, 1.0], [0.5, 1.0], "perfectly calibrated", dashed=True)]
    for i, (name, r) in enumerate(reports.items()):
        kinds = [("reliability", f"{name}", False)]
        if i == 0:  # the first classifier's uncalibrated curve too: what calibration changed
            kinds.append(("reliability_uncalibrated", f"{name}, T = 1", True))
        for key, label, dashed in kinds:
            lines.append(charts.reliability_series(r["gender"][key], label, dashed))
    reliability = charts.reliability_chart(lines, "Reliability: share right per gender-score bin (dot size: faces)")
    bins = list(next(iter(reports.values()))["by_age_bin"])
    mae = charts.bar_chart(
        bins,
        {name: [r["by_age_bin"][b]["age_mae"] or math.nan for b in bins] for name, r in reports.items()},
        "Age mean absolute error per age bin",
        "years",
        20.0,
        5.0,
    )
    return [
        charts.save(coverage, folder / "accuracy-coverage.png"),
        charts.save(reliability, folder / "reliability.png"),
        charts.save(mae, folder / "age-mae-by-bin.png"),
    ]


def half(faces: list[evalset.EvalFace], name: str) -> list[evalset.EvalFace]:
    """The faces of half ``name``: "fit", "held-out" or "all"."""
    fit_half, held_out = evalset.split(faces)
    return {"fit": fit_half, "held-out": held_out, "all": faces}[name]
