"""Turn an appearance's faces into one gender, gender_score, age and age range.

Tracking (analyzer.analysis.tracking) decides which faces are one appearance; this module decides
what they say together. Its constants are fitted on permissive data only (FairFace 540's fit half,
its chips degraded the way video degrades faces, and the development video set) by
``scripts/fit_pooling.py``; UTKFace stays an evaluation set. Figures: docs/quality.md.

- **Which faces count.** A face is *judgeable* when ``face_px >= min_face_px`` and ``sharpness >=
  min_sharpness``; only judgeable faces vote. With none, gender, score, age and range are all None.
- **Weights.** Each face weighs detector score x size (saturating at FULL_DETAIL_FACE_PX) x sharpness
  (saturating at FULL_DETAIL_SHARPNESS) x a frontal-pose measure from its landmarks (floored at
  MIN_POSE_WEIGHT so that an all-profile appearance still gets an answer).
- **A face's evidence depends on its quality.** The classifier's log-odds, already divided by its
  temperature for a sharp photo face (``gender_temperature`` in models/weights.py), is divided once
  more by ``quality_temperature``: ``1 + size_slope * halvings below full size + blur_slope *
  halvings below full sharpness``. A 40-px blurred face that says "80 % male" is right less often
  than a sharp 200-px one that says so (measured on degraded chips).
- **Faces add evidence, but not independently.** The appearance's log-odds is the weighted mean of its
  faces' log-odds times an effective number of independent faces, ``n / (1 + (n - 1) * rho)``,
  where ``n`` is the Kish effective count of the weights, ``(sum w)^2 / sum w^2``, and ``rho`` the
  fitted correlation of the faces' errors: rho = 1 is the plain mean (twenty agreeing frames no
  surer than one), rho = 0 a sum (as if every frame were a new photo). Between them, an appearance
  grows surer with frames, up to ``1 / rho`` faces' worth. Faces that disagree pull the mean, and so
  the score, towards 50. The result is capped at MAX_GENDER_SCORE.
- **Age.** The faces' weighted mean age distribution, softened, gives an expectation, which a
  monotone, piecewise-linear correction maps to an age (the net reads old faces young); the range
  around it has a lower and an upper half-width that grow with the corrected age, fitted so that it
  holds the age for about 80 % of faces in every age bin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from analyzer.analysis.calibration import (
    AGE_CALIBRATIONS,
    FULL_DETAIL_FACE_PX,
    FULL_DETAIL_SHARPNESS,
    AgeCalibration,
    AgeCorrection,
    effective_faces,
    pooled_log_odds,
    quality_halvings,
    sigmoid,
)

__all__ = [
    "AgeCorrection",
    "AppearanceFaces",
    "FEMALE",
    "MALE",
    "Pooling",
    "POOLINGS",
    "concat_faces",
    "effective_faces",
    "face_weight",
    "frontal_pose",
    "judge",
    "judge_age",
    "judge_gender",
    "pooling_digest",
]

MALE = "male"
FEMALE = "female"

MIN_POSE_WEIGHT = 0.1  # weight factor of a profile face (frontal measure 0)
# Highest gender_score stored: the constants are fitted on some thousands of faces, which cannot show
# a probability nearer certainty than about 1 in 1000, so "100 %" would claim more than is known.
MAX_GENDER_SCORE = 99.9


@dataclass(frozen=True)
class Pooling:
    """The constants of one classifier's pooling (see the module docstring).

    size_slope, blur_slope: growth of a face's extra temperature per halving of its size below
        FULL_DETAIL_FACE_PX and of its sharpness below FULL_DETAIL_SHARPNESS.
    rho: correlation of the errors of one appearance's faces (1 = plain mean, 0 = sum).
    age: the age correction and range (an AgeCalibration for classifiers not refitted).
    fitted_on: where the constants come from, for the record.
    """

    size_slope: float
    blur_slope: float
    rho: float
    age: AgeCorrection | AgeCalibration
    fitted_on: str

    def quality_temperature(self, face_px: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
        """(k,) factor >= 1 dividing each face's calibrated log-odds."""
        small, blurred = quality_halvings(face_px, sharpness)
        return 1.0 + self.size_slope * small + self.blur_slope * blurred

    def face_log_odds(self, logits: np.ndarray, face_px: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
        """(k,) each face's log-odds of male after its quality: ``logits`` (already over the
        classifier's temperature) divided by ``quality_temperature``."""
        return np.asarray(logits, dtype=np.float64) / self.quality_temperature(face_px, sharpness)

    def effective_faces(self, weights: np.ndarray) -> float:
        """Independent faces' worth of evidence of faces weighing ``weights`` (>= 1 for any face)."""
        return effective_faces(weights, self.rho)

    def log_odds(self, logits: np.ndarray, face_px: np.ndarray, sharpness: np.ndarray, weights: np.ndarray) -> float:
        """The appearance's log-odds of male from its judgeable faces' arrays (k,), k >= 1."""
        return pooled_log_odds(self.face_log_odds(logits, face_px, sharpness), weights, self.rho)


# Fitted with scripts/fit_pooling.py (docs/quality.md): the quality slopes and the age correction and
# range on FairFace 540's fit half, clean and degraded to 80, 56 and 40 px faces (1,076 faces); rho on
# the appearances of the synthetic FairFace tracks' fit half and the real clips of tests/data/video_set.
# insightface keeps its UTKFace-fitted constants and the plain mean.
POOLINGS: dict[str, Pooling] = {
    "cydral": Pooling(
        size_slope=0.0,
        blur_slope=0.1,
        rho=0.51,
        age=AgeCorrection(
            temperature=1.6,
            knots=(0.0, 20.0, 80.0),
            ages=(0.0, 20.0, 92.0),
            range_knots=(0.0, 5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 85.0),
            below=(2.71, 4.62, 14.15, 20.64, 25.41, 22.38, 17.37, 17.27, 19.48, 23.31),
            above=(5.71, 8.15, 13.88, 31.46, 34.33, 40.0, 24.66, 20.26, 8.6, 1.6),
            coverage=0.82,
        ),
        fitted_on="FairFace 540 fit half (clean + degraded chips); rho on the video set (synthetic fit half + real)",
    ),
    "insightface": Pooling(
        size_slope=0.0,
        blur_slope=0.0,
        rho=1.0,
        age=AGE_CALIBRATIONS["insightface"],
        fitted_on="UTKFace fit half (temperature and age range; not refitted on permissive data)",
    ),
}


def pooling_digest(classifier: str) -> str:
    """First 8 hex digits of the sha256 of the classifier's pooling constants (part of
    model_version, so a refit re-analyses stored videos)."""
    pooling = POOLINGS[classifier]
    text = repr((pooling.size_slope, pooling.blur_slope, pooling.rho, pooling.age))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def frontal_pose(landmarks: np.ndarray) -> np.ndarray:
    """(k,) 0-1 frontal measure of (k, 5, 2) landmarks: 1 when the nose projects midway between
    the eyes along the eye line, 0 when it projects level with an eye or beyond (a profile).
    Faces with unknown (NaN) landmarks or eyes on one point count as frontal (1)."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    left, right, nose = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    axis = right - left
    half = np.linalg.norm(axis, axis=1) / 2.0
    offset = np.abs(np.sum((nose - (left + right) / 2.0) * axis, axis=1)) / np.where(half > 0, 2.0 * half, 1.0)
    frontal = np.clip(1.0 - offset / np.where(half > 0, half, 1.0), 0.0, 1.0)
    return np.where(np.isfinite(frontal) & (half > 0), frontal, 1.0)


def face_weight(det_score: np.ndarray, face_px: np.ndarray, sharpness: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(k,) weight of each face in its appearance's gender and age: detector score x size x
    sharpness (each saturating, see the module docstring) x frontal pose (floored)."""
    size = np.clip(np.asarray(face_px, dtype=np.float64) / FULL_DETAIL_FACE_PX, 0.0, 1.0)
    sharp = np.clip(np.asarray(sharpness, dtype=np.float64) / FULL_DETAIL_SHARPNESS, 0.0, 1.0)
    pose = np.maximum(frontal_pose(landmarks), MIN_POSE_WEIGHT)
    return np.asarray(det_score, dtype=np.float64) * size * sharp * pose


@dataclass(frozen=True)
class AppearanceFaces:
    """Every face of one appearance, as arrays over its k faces in time order.

    times_ms: (k,) int64; boxes: (k, 4) x1y1x2y2 source pixels; gender_logit: (k,) log-odds of
    male over the classifier's temperature; age_probs: (k, len(AGE_CLASSES)); face_px,
    sharpness, weights: (k,) (weights: ``face_weight``); judgeable: (k,) bool, the faces that vote;
    embedding: (k, 128) dlib descriptors, NaN rows for faces not embedded, or None when the
    analysis computed none (used to link appearances of one person; never stored or written out).
    """

    times_ms: np.ndarray
    boxes: np.ndarray
    gender_logit: np.ndarray
    age_probs: np.ndarray
    face_px: np.ndarray
    sharpness: np.ndarray
    weights: np.ndarray
    judgeable: np.ndarray
    embedding: np.ndarray | None = None


def concat_faces(parts: list[AppearanceFaces]) -> AppearanceFaces:
    """The faces of several appearances as one (a person's, for ``judge``), in the order given;
    the embedding is kept only when every part has one."""
    if not parts:
        raise ValueError("concat_faces needs at least one appearance")
    if len(parts) == 1:
        return parts[0]
    names = [name for name in AppearanceFaces.__dataclass_fields__ if name != "embedding"]
    arrays = {name: np.concatenate([getattr(part, name) for part in parts]) for name in names}
    embeddings = [part.embedding for part in parts]
    embedding = None if any(e is None for e in embeddings) else np.concatenate(embeddings)  # type: ignore[arg-type]
    return AppearanceFaces(**arrays, embedding=embedding)


def judge(
    pooling: Pooling, faces: AppearanceFaces, min_score: float = 0.0
) -> tuple[str | None, float | None, int | None, int | None, int | None]:
    """(gender, gender_score, age, age_low, age_high) of an appearance from its judgeable faces."""
    j = faces.judgeable
    gender, score = judge_gender(
        pooling, faces.gender_logit[j], faces.face_px[j], faces.sharpness[j], faces.weights[j], min_score
    )
    return (gender, score, *judge_age(pooling, faces.age_probs[j], faces.weights[j]))


def judge_gender(
    pooling: Pooling,
    logits: np.ndarray,
    face_px: np.ndarray,
    sharpness: np.ndarray,
    weights: np.ndarray,
    min_score: float = 0.0,
) -> tuple[str | None, float | None]:
    """(gender, gender_score percent) of an appearance's judgeable faces, or (None, None).

    logits: (k,) log-odds of male over the classifier's temperature; face_px, sharpness, weights:
    (k,). The score is 100 * max(p, 1 - p) of the pooled log-odds, rounded to 0.1, at most
    MAX_GENDER_SCORE. No faces, a score of 50 (no lean either way) or one below ``min_score``
    give (None, None).
    """
    if len(logits) == 0 or float(np.sum(weights)) <= 0:
        return None, None
    p_male = float(sigmoid(pooling.log_odds(logits, face_px, sharpness, weights)))
    score = min(round(100.0 * max(p_male, 1.0 - p_male), 1), MAX_GENDER_SCORE)
    if score <= 50.0 or score < min_score:
        return None, None
    return (MALE if p_male > 0.5 else FEMALE), score


def judge_age(
    pooling: Pooling, age_probs: np.ndarray, weights: np.ndarray
) -> tuple[int | None, int | None, int | None]:
    """(age, age_low, age_high) in whole years of an appearance, or three Nones.

    age_probs: (k, len(AGE_CLASSES)) distributions of its judgeable faces; weights: (k,). Their
    weighted mean distribution goes through the pooling's age correction and range.
    """
    from models.cydral import AGE_CLASSES  # torch: the runner imports this module for its digest alone

    total = float(np.sum(weights))
    if len(age_probs) == 0 or total <= 0:
        return None, None, None
    mixture = (weights[:, None] * age_probs).sum(axis=0) / total
    age, low, high = pooling.age.estimate(mixture[None], np.asarray(AGE_CLASSES))
    return int(age[0]), int(low[0]), int(high[0])
