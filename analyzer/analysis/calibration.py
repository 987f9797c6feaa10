"""Calibration of what the classifiers say: the gender temperature, the gender-score threshold,
the age interval, and the figures that show how well they hold.

Everything here is plain numpy over per-face arrays, so that the tracker (one appearance at a
time), ``analyzer evaluate`` (a labelled folder) and the tests use the same arithmetic.

- **Gender.** The classifier gives a raw log-odds of male, ``gender_logit``; the calibrated
  probability is ``sigmoid(gender_logit / T)``, with the temperature ``T`` of the classifier's
  registry entry in ``models/weights.py`` fitted by ``fit_temperature`` (least negative
  log-likelihood) on the fitting half of the evaluation set. A face's gender score is the
  probability of the gender it is given, ``100 * max(p, 1 - p)``; ``expected_calibration_error``
  measures how far, on average, the share of right answers among faces with score near s lies
  from s.
- **Threshold.** ``choose_min_score`` picks the least score at which the faces answered are
  right at least as often as asked (the default ``ANALYZER_MIN_GENDER_SCORE``).
- **Age.** The age is the expectation of the net's distribution softened by an age
  temperature (``fit_age_temperature``, least mean absolute error). The distribution is too
  narrow to give a range by itself (its 10th-90th percentile holds the labelled age for only
  about a third of faces), so the range is conformal: ``mean +- q * (std + offset *
  sqrt(mean + 1))``, where ``offset`` and ``q`` are fitted on the fitting half so that the labelled age lies
  inside for the wanted share of faces with the least mean width (``fit_age_interval``).
  Bounds are whole years, ``floor`` and ``ceil`` of the real ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AgeCalibration",
    "AGE_CALIBRATIONS",
    "sigmoid",
    "wilson_lower",
    "fit_age_temperature",
    "fit_temperature",
    "gender_confidence",
    "expected_calibration_error",
    "ece_noise_floor",
    "reliability_bins",
    "accuracy_at_coverage",
    "coverage_curve",
    "choose_min_score",
    "age_moments",
    "fit_age_interval",
]

ECE_BINS = 10  # equal-width confidence bins over 50-100 % (5 points each)
WILSON_Z = 1.645  # one-sided 95 % normal quantile
TEMPERATURE_RANGE = (0.05, 20.0)  # searched for T, in log space
OFFSET_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 1000.0)  # tried by fit_age_interval; 1000 ~ width by age alone
AGE_TEMPERATURE_GRID = tuple(round(0.5 + 0.1 * i, 1) for i in range(26))  # 0.5 .. 3.0
# Coverage the age range is fitted to on the fitting half: 80 % plus about 1.3 standard errors of a
# share measured on ~640 faces (1.6 points), so that it still holds 80 % of faces it has not seen.
AGE_FIT_COVERAGE = 0.82


@dataclass(frozen=True)
class AgeCalibration:
    """How an age distribution becomes an age and a range, in whole years.

    temperature: the distribution is softened to ``p ** (1 / temperature)`` (renormalised; the
        same as dividing the net's logits by it) before its expectation is taken; fitted for the
        least mean absolute error.
    q, offset: the range is ``mean +- q * (std + offset * sqrt(mean + 1))`` of the softened
        distribution. The second term widens it with age, as the errors grow (a child is rarely
        10 years off, a 60-year-old often is), and keeps a near-certain distribution from getting
        a zero-width range: the net's own spread says little about its error (on the fitting
        half the fit leans mostly on the second term; docs/quality.md).
    coverage: the share of labelled ages the range was fitted to hold.
    """

    temperature: float
    q: float
    offset: float
    coverage: float = 0.8

    def soften(self, probs: np.ndarray) -> np.ndarray:
        """(n, C) distributions raised to 1 / temperature and renormalised."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.temperature != 1.0:
            probs = np.power(probs, 1.0 / self.temperature)
        return probs / probs.sum(axis=-1, keepdims=True)

    def bounds(self, mean: np.ndarray | float, std: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Whole-year (low, high) arrays: floor(mean - half), ceil(mean + half), low >= 0."""
        mean = np.asarray(mean, dtype=np.float64)
        return _bounds(mean, self.q * _scale(mean, np.asarray(std, dtype=np.float64), self.offset))

    def estimate(self, probs: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(age, low, high) whole-year arrays of (n, C) distributions over ages ``classes``."""
        mean, std = age_moments(self.soften(probs), classes)
        low, high = self.bounds(mean, std)
        return np.floor(mean + 0.5).astype(np.int64), low, high


def _scale(mean: np.ndarray, std: np.ndarray, offset: float) -> np.ndarray:
    return std + offset * np.sqrt(np.maximum(mean, 0.0) + 1.0)


def _bounds(mean: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = np.maximum(np.floor(mean - half), 0.0).astype(np.int64)
    return low, np.ceil(mean + half).astype(np.int64)


# Fitted with `analyzer evaluate --fit` on the fitting half of ../shared/data/utkface_eval (RetinaFace,
# our chips); held-out coverage and widths in docs/quality.md.
AGE_CALIBRATIONS: dict[str, AgeCalibration] = {
    "cydral": AgeCalibration(temperature=1.3, q=0.5916, offset=2.0, coverage=0.82),
    # InsightFace gives one age (a one-hot distribution): no spread to soften, a range by age alone
    "insightface": AgeCalibration(temperature=1.0, q=8.0499, offset=0.25, coverage=0.82),
}


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Logistic function, stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _nll(logits: np.ndarray, is_male: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # -log sigmoid(z) for males, -log sigmoid(-z) for females, both as logaddexp(0, -+z)
    signed = np.where(is_male, z, -z)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def fit_temperature(logits: np.ndarray, is_male: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of ``sigmoid(logits / T)``.

    Args:
        logits: (n,) raw log-odds of male.
        is_male: (n,) bool labels.

    Returns:
        T (> 0), found by golden-section search over log T in TEMPERATURE_RANGE (the
        likelihood is unimodal in T); 3 significant digits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    is_male = np.asarray(is_male, dtype=bool)
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):
        a = hi - ratio * (hi - lo)
        b = lo + ratio * (hi - lo)
        if _nll(logits, is_male, math.exp(a)) <= _nll(logits, is_male, math.exp(b)):
            hi = b
        else:
            lo = a
    return float(f"{math.exp((lo + hi) / 2.0):.3g}")


def gender_confidence(p_male: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(says_male (n,) bool, confidence (n,) 0.5-1) of probabilities of male."""
    p_male = np.asarray(p_male, dtype=np.float64)
    return p_male >= 0.5, np.maximum(p_male, 1.0 - p_male)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin over 0.5-1: its range, faces, mean confidence and share right.

    Returns:
        One dict per non-empty bin: ``low``, ``high``, ``count``, ``confidence``, ``accuracy``.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "count": int(inside.sum()),
                    "confidence": float(confidence[inside].mean()),
                    "accuracy": float(correct[inside].mean()),
                }
            )
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error in percentage points: the face-weighted mean, over equal-width
    confidence bins, of |share right - mean confidence|."""
    rows = reliability_bins(confidence, correct, bins)
    total = sum(r["count"] for r in rows)
    if total == 0:
        return float("nan")
    return 100.0 * sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total


def ece_noise_floor(confidence: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The expected calibration error (points) that a perfectly calibrated classifier would still
    show on faces with these confidences, from sampling alone: the mean ECE over ``draws`` sets
    of answers drawn right with probability equal to their confidence. A measured ECE near this
    floor cannot be told apart from perfect calibration on so few faces."""
    confidence = np.asarray(confidence, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return float(
        np.mean(
            [expected_calibration_error(confidence, rng.random(len(confidence)) < confidence) for _ in range(draws)]
        )
    )


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy) when only the most confident faces are answered: for each k, the
    share answered k/n and the share right among the k most confident."""
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    right = np.asarray(correct, dtype=np.float64)[order]
    k = np.arange(1, len(right) + 1)
    return k / len(right), np.cumsum(right) / k


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Share right among the ``coverage`` most confident share of faces (at least one face)."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    _, accuracy = coverage_curve(confidence, correct)
    return float(accuracy[max(1, math.ceil(coverage * n)) - 1])


def wilson_lower(right: int, n: int, z: float = WILSON_Z) -> float:
    """Lower end of the Wilson score interval of a share ``right / n`` (0 when n is 0)."""
    if n == 0:
        return 0.0
    share = right / n
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def choose_min_score(scores: np.ndarray, correct: np.ndarray, target: float = 0.95) -> float:
    """Least whole-percent score s such that the faces with score >= s are right at least
    ``target`` of the time with 95 % confidence: the one-sided Wilson lower bound of their share
    right reaches the target. (Chosen where the share is exactly at the target, a threshold is as
    likely to fall short on new faces as to hold.)

    Args:
        scores: (n,) gender scores in percent, 50-100.
        correct: (n,) bool, whether each face's gender is right.
        target: the share right wanted among answered faces.

    Returns:
        The score in percent (100.0 when no threshold reaches the target).
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    for s in np.arange(50.0, 100.0, 1.0):
        answered = scores >= s
        if answered.any() and wilson_lower(int(correct[answered].sum()), int(answered.sum())) >= target:
            return float(s)
    return 100.0


def age_moments(probs: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) in years of (n, C) distributions over ages ``classes`` (C,)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    classes = np.asarray(classes, dtype=np.float64)
    mean = probs @ classes
    var = probs @ classes**2 - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def fit_age_temperature(probs: np.ndarray, ages: np.ndarray, classes: np.ndarray) -> float:
    """The softening temperature in AGE_TEMPERATURE_GRID whose rounded expectation has the least
    mean absolute error against ``ages`` (ties: the one nearest 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    best = (math.inf, 0.0, 1.0)
    for temperature in AGE_TEMPERATURE_GRID:
        age, _, _ = AgeCalibration(temperature, 0.0, 0.0).estimate(probs, classes)
        error = float(np.mean(np.abs(age - ages)))
        best = min(best, (round(error, 9), abs(temperature - 1.0), temperature))
    return best[2]


def fit_age_interval(
    probs: np.ndarray, ages: np.ndarray, classes: np.ndarray, temperature: float, coverage: float = AGE_FIT_COVERAGE
) -> AgeCalibration:
    """The narrowest range ``mean +- q * (std + offset * sqrt(mean + 1))`` (whole years) that
    holds at least ``coverage`` of the labelled ``ages``, over the offsets in OFFSET_GRID.

    For each offset, q is the least value whose whole-year ranges hold the wanted share, the
    share raised by (n + 1) / n as split-conformal prediction does; the offset whose ranges are
    narrowest on average wins.

    Args:
        probs: (n, C) age distributions over ``classes`` (C,).
        ages: (n,) labelled ages in years.
        temperature: the fitted softening temperature (fit_age_temperature).
        coverage: wanted share of ages inside.
    """
    ages = np.asarray(ages, dtype=np.float64)
    mean, std = age_moments(AgeCalibration(temperature, 0.0, 0.0).soften(probs), classes)
    wanted = min(1.0, coverage * (len(ages) + 1) / len(ages))
    best: tuple[float, AgeCalibration] | None = None
    for offset in OFFSET_GRID:
        scale = _scale(mean, std, offset)
        if np.any(scale <= 0):
            continue
        # candidate q: where a face enters the range, rounded up (4 decimals) so the constant keeps
        # the coverage; the coverage grows with q, so bisect for the least one that holds
        candidates = np.ceil(np.sort(np.abs(ages - mean) / scale) * 1e4) / 1e4
        lo, hi = 0, len(candidates) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            low, high = _bounds(mean, candidates[mid] * scale)
            if np.mean((ages >= low) & (ages <= high)) >= wanted:
                hi = mid
            else:
                lo = mid + 1
        q = float(candidates[lo])
        low, high = _bounds(mean, q * scale)
        if np.mean((ages >= low) & (ages <= high)) < wanted:
            continue
        width = float(np.mean(high - low))
        if best is None or width < best[0]:
            best = (width, AgeCalibration(temperature, q, offset, coverage))
    if best is None:
        raise ValueError("no range reaches the coverage (empty or degenerate input)")
    return best[1]
