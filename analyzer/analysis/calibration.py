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
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "AgeCalibration",
    "AgeCorrection",
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
    "effective_faces",
    "imputed_ages",
    "pooled_log_odds",
    "soften",
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
        return soften(probs, self.temperature)

    def bounds(self, mean: np.ndarray | float, std: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Whole-year (low, high) arrays: floor(mean - half), ceil(mean + half), low >= 0."""
        mean = np.asarray(mean, dtype=np.float64)
        return _bounds(mean, self.q * _scale(mean, np.asarray(std, dtype=np.float64), self.offset))

    def estimate(self, probs: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(age, low, high) whole-year arrays of (n, C) distributions over ages ``classes``."""
        mean, std = age_moments(self.soften(probs), classes)
        low, high = self.bounds(mean, std)
        return np.floor(mean + 0.5).astype(np.int64), low, high


@dataclass(frozen=True)
class AgeCorrection:
    """How an age distribution becomes an age and a range, in whole years.

    temperature: the distribution is softened to ``p ** (1 / temperature)`` before its expectation.
    knots, ages: the monotone correction, piecewise linear: expectation ``knots[i]`` reads as age
        ``ages[i]`` (both increasing; constant beyond the ends).
    range_knots, below, above: the range is ``[age - below(age), age + above(age)]``, each
        half-width piecewise linear over the corrected age at ``range_knots``.
    coverage: the share of ages per bin the range was fitted to hold.
    """

    temperature: float
    knots: tuple[float, ...]
    ages: tuple[float, ...]
    range_knots: tuple[float, ...]
    below: tuple[float, ...]
    above: tuple[float, ...]
    coverage: float = 0.8

    def corrected(self, expectation: np.ndarray) -> np.ndarray:
        """Corrected ages (years, float) of softened expectations."""
        return np.interp(expectation, self.knots, self.ages)

    def estimate(self, probs: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(age, low, high) whole-year arrays of (n, C) distributions over ages ``classes``."""
        age = self.corrected(soften(probs, self.temperature) @ np.asarray(classes, dtype=np.float64))
        low, high = self.bounds(age)
        return np.floor(age + 0.5).astype(np.int64), low.astype(np.int64), high.astype(np.int64)

    def bounds(self, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whole-year (low, high) float arrays of the range around corrected ages, low >= 0."""
        low = np.maximum(np.floor(age - np.interp(age, self.range_knots, self.below)), 0.0)
        return low, np.ceil(age + np.interp(age, self.range_knots, self.above))


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """(n, C) age distributions raised to ``1 / temperature`` and renormalised."""
    probs = np.asarray(probs, dtype=np.float64)
    if temperature != 1.0:
        probs = np.power(probs, 1.0 / temperature)
    return probs / probs.sum(axis=-1, keepdims=True)


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


def choose_min_score(
    scores: np.ndarray, correct: np.ndarray, target: float = 0.95, z: float = WILSON_Z, least: int = 1
) -> float:
    """Least whole-percent score s such that the faces with score >= s are right at least
    ``target`` of the time with 95 % confidence: the one-sided Wilson lower bound of their share
    right reaches the target. (Chosen where the share is exactly at the target, a threshold is as
    likely to fall short on new faces as to hold.)

    Args:
        scores: (n,) gender scores in percent, 50-100.
        correct: (n,) bool, whether each face's gender is right.
        target: the share right wanted among answered faces.
        z: the Wilson bound's normal quantile (0: the measured share itself, for sets too small
            for a 95 % bound to reach the target at all).
        least: the fewest answered faces a threshold may rest on.

    Returns:
        The score in percent (100.0 when no threshold reaches the target).
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    for s in np.arange(50.0, 100.0, 1.0):
        answered = scores >= s
        n = int(answered.sum())
        if n >= least and wilson_lower(int(correct[answered].sum()), n, z) >= target:
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
    mean, std = age_moments(soften(probs, temperature), classes)
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


# -- fitting the pooling's constants on permissive data (scripts/fit_pooling.py) --

FULL_DETAIL_FACE_PX = 112.0  # px; the aligned crop's size: larger faces add no detail
FULL_DETAIL_SHARPNESS = 100.0  # variance of Laplacian at which a crop looks clearly sharp
SLOPE_GRID = tuple(round(0.05 * i, 2) for i in range(41))  # 0 .. 2, for the quality temperature
RHO_GRID = tuple(round(0.01 * i, 2) for i in range(101))  # 0 .. 1
CORRECTION_TEMPERATURES = (1.0, 1.3, 1.6, 2.0)  # age softening tried under the monotone correction
CORRECTION_KNEES = tuple(float(k) for k in range(20, 65, 5))  # years; where the stretch of old ages starts
CORRECTION_SLOPES = tuple(round(1.0 + 0.05 * i, 2) for i in range(31))  # 1 .. 2.5, the stretch past the knee
AGE_RANGE_TOP = 80  # years; the net's oldest class, the correction's last knot
RANGE_KNOTS = (0.0, 5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 85.0)  # corrected ages (years)
RANGE_KERNEL = 10.0  # years; half-width of the triangular kernel of the range's local quantiles
IMPUTED_AGES = 5  # a face labelled by a bin stands for this many ages spread evenly over the bin
RANGE_STEP = 0.5  # years added per widening step where a bin's coverage falls short
MAX_HALF_WIDTH = 40.0  # years; no side of the range is widened past this
MAX_WIDENINGS = 2000  # steps at most (a bin that cannot reach the coverage stops the widening there)


def quality_halvings(face_px: np.ndarray, sharpness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size, blur) halvings of each face below full detail: log2(FULL / x), 0 at or above full."""
    small = np.log2(np.maximum(FULL_DETAIL_FACE_PX / np.maximum(np.asarray(face_px, np.float64), 1.0), 1.0))
    blurred = np.log2(np.maximum(FULL_DETAIL_SHARPNESS / np.maximum(np.asarray(sharpness, np.float64), 1e-3), 1.0))
    return small, blurred


def _fit_scale(x: np.ndarray, is_male: np.ndarray) -> tuple[float, float]:
    """(beta, nll): the least-log-loss scale of ``sigmoid(beta * x)`` (Newton's method; the loss is
    convex in beta) and its mean negative log-likelihood."""
    signed = np.where(is_male, x, -x)
    beta = 0.5
    for _ in range(20):
        p = sigmoid(-beta * signed)  # the probability given to the wrong answer
        gradient = float(np.mean(-signed * p))
        hessian = float(np.mean(signed**2 * p * (1.0 - p))) + 1e-12
        step = gradient / hessian
        beta = max(beta - step, 1e-3)
        if abs(step) < 1e-7:
            break
    return beta, float(np.mean(np.logaddexp(0.0, -beta * signed)))


def fit_quality_temperature(
    logits: np.ndarray, is_male: np.ndarray, face_px: np.ndarray, sharpness: np.ndarray
) -> tuple[float, float, float]:
    """(T, size_slope, blur_slope) of least negative log-likelihood for
    ``sigmoid(logits / (T * (1 + size_slope * size + blur_slope * blur)))``, the halvings of
    ``quality_halvings``; slopes over SLOPE_GRID, T (3 significant digits) the best for each pair."""
    logits = np.asarray(logits, dtype=np.float64)
    is_male = np.asarray(is_male, dtype=bool)
    small, blurred = quality_halvings(face_px, sharpness)
    best = (math.inf, 1.0, 0.0, 0.0)
    for a in SLOPE_GRID:
        for b in SLOPE_GRID:
            beta, nll = _fit_scale(logits / (1.0 + a * small + b * blurred), is_male)
            best = min(best, (round(nll, 9), 1.0 / beta, a, b))
    return float(f"{best[1]:.3g}"), best[2], best[3]


def effective_faces(weights: np.ndarray, rho: float) -> float:
    """Independent faces' worth of evidence of faces weighing ``weights``: ``n / (1 + (n - 1) *
    rho)`` with n their Kish count ``(sum w)^2 / sum w^2`` (>= 1 for any face)."""
    n = float(np.sum(weights)) ** 2 / float(np.sum(np.square(weights)))
    return n / (1.0 + (n - 1.0) * rho)


def pooled_log_odds(z: np.ndarray, weights: np.ndarray, rho: float) -> float:
    """An appearance's log-odds: its faces' log-odds ``z`` (after their quality), weighted mean,
    times ``effective_faces(weights, rho)``."""
    return float(np.sum(weights * z) / np.sum(weights)) * effective_faces(weights, rho)


def fit_rho(appearances: list[tuple[np.ndarray, np.ndarray]], is_male: np.ndarray) -> float:
    """The correlation ``rho`` in RHO_GRID of least negative log-likelihood of appearances pooled
    as ``mean_w(z) * n / (1 + (n - 1) * rho)`` (n: Kish count of w).

    appearances: (z, w) per appearance: its faces' log-odds of male after their quality and weights.
    """
    means = np.array([float(np.sum(w * z) / np.sum(w)) for z, w in appearances])
    is_male = np.asarray(is_male, dtype=bool)
    scored = []
    for rho in RHO_GRID:
        counts = np.array([effective_faces(w, rho) for _, w in appearances])
        scored.append((round(_nll(means * counts, is_male, 1.0), 9), rho))
    return min(scored)[1]


def _interval_distance(age: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Years from each age to its label's interval [low, high + 1) (0 inside)."""
    return np.maximum(low - age, 0.0) + np.maximum(age - (high + 1.0), 0.0)


def _correction(
    expectation: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The stretch of least mean distance of the corrected ages to their labels' intervals: ages
    read as they are up to a knee, and the expectation past it stretched by a slope (knee in
    CORRECTION_KNEES, slope in CORRECTION_SLOPES), as knots and ages of a piecewise-linear map.
    Two parameters, so that the map follows the broad lean of the net (old faces read young), not
    the noise of a few hundred faces' bins."""
    best = (math.inf, 0.0, 1.0)
    for knee in CORRECTION_KNEES:
        for slope in CORRECTION_SLOPES:
            age = np.where(expectation > knee, knee + slope * (expectation - knee), expectation)
            error = round(float(np.mean(_interval_distance(age, low, high))), 9)
            best = min(best, (error, knee, slope))
    _, knee, slope = best
    top = float(AGE_RANGE_TOP)
    return (0.0, knee, top), (0.0, knee, round(knee + slope * (top - knee), 2))


def imputed_ages(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(n, IMPUTED_AGES) ages spread evenly over each label's interval [low, high + 1)."""
    steps = (np.arange(IMPUTED_AGES) + 0.5) / IMPUTED_AGES
    return low[:, None] + (high - low + 1.0)[:, None] * steps[None, :]


def _local_quantile(centre: np.ndarray, values: np.ndarray, knot: float, share: float) -> float:
    """Weighted quantile of ``values`` (n, m) with triangular weights by each row's ``centre``."""
    weights = np.clip(1.0 - np.abs(centre - knot) / RANGE_KERNEL, 0.0, None)
    if weights.sum() == 0:
        weights = np.exp(-np.abs(centre - knot))  # no face near this knot: the nearest ones speak
    flat, flat_w = values.reshape(-1), np.repeat(weights, values.shape[1])
    order = np.argsort(flat, kind="stable")
    cumulative = np.cumsum(flat_w[order]) / flat_w.sum()
    return float(flat[order][min(np.searchsorted(cumulative, share), len(flat) - 1)])


def _bin_coverage(correction: AgeCorrection, age: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> dict:
    low, high = correction.bounds(age)
    inside = (truth >= low[:, None]) & (truth < high[:, None] + 1.0)
    return {g: float(inside[groups == g].mean()) for g in np.unique(groups)}


def _widen(correction: AgeCorrection, age: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> AgeCorrection:
    """One RANGE_STEP more on the side and at the knot where most of ``rows``' ages outside their
    range lie (the knot nearest the median corrected age of those faces), at most MAX_HALF_WIDTH."""
    low, high = correction.bounds(age)
    above = rows[:, None] & (truth > high[:, None])
    below = rows[:, None] & (truth < low[:, None])
    older = above.sum() >= below.sum()
    missed = (above if older else below).any(axis=1)
    knot = int(np.argmin(np.abs(np.asarray(correction.range_knots) - np.median(age[missed]))))
    widths = list(correction.above if older else correction.below)
    widths[knot] = min(widths[knot] + RANGE_STEP, MAX_HALF_WIDTH)
    return replace(correction, **{"above" if older else "below": tuple(widths)})


def fit_age_correction(
    probs: np.ndarray, low: np.ndarray, high: np.ndarray, classes: np.ndarray, coverage: float = AGE_FIT_COVERAGE
) -> AgeCorrection:
    """The age correction and range of least error, fitted on faces labelled by age intervals.

    probs: (n, C) age distributions over ``classes``; low, high: (n,) each face's label as whole
    years (an exact age has low == high; a bin its first and last year). For each softening
    temperature in CORRECTION_TEMPERATURES a monotone stretch of the expectation past a knee
    (``_correction``) is searched for the least mean distance of the corrected ages to their
    labels' intervals (a distance, not a squared one: it does not pull every age towards the
    middle as a regression to the bins' midpoints would); the temperature whose corrected ages lie
    nearest wins. The range's half-widths at
    RANGE_KNOTS are local quantiles of the label minus the corrected age (a bin label stands for
    IMPUTED_AGES ages spread over it), then widened step by step where a label's coverage falls
    short of ``coverage``, so that it holds in every label group, not only overall.
    """
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    best: tuple[float, float, tuple[float, ...], tuple[float, ...], np.ndarray] | None = None
    for temperature in CORRECTION_TEMPERATURES:
        expectation = soften(probs, temperature) @ np.asarray(classes, dtype=np.float64)
        knots, ages = _correction(expectation, low, high)
        error = float(np.mean(_interval_distance(np.interp(expectation, knots, ages), low, high)))
        if best is None or error < best[0]:
            best = (error, temperature, knots, ages, expectation)
    assert best is not None
    _, temperature, knots, ages, expectation = best
    age = np.interp(expectation, knots, ages)
    truth = imputed_ages(low, high)
    residual = truth - age[:, None]
    tail = (1.0 - coverage) / 2.0
    below = [max(0.0, -_local_quantile(age, residual, k, tail)) for k in RANGE_KNOTS]
    above = [max(0.0, _local_quantile(age, residual, k, 1.0 - tail)) for k in RANGE_KNOTS]
    correction = AgeCorrection(temperature, knots, ages, RANGE_KNOTS, tuple(below), tuple(above), coverage)
    groups = np.array([f"{a:g}-{b:g}" for a, b in zip(low, high)])
    for _ in range(MAX_WIDENINGS):
        shares = _bin_coverage(correction, age, truth, groups)
        short = [g for g, share in shares.items() if share < coverage]
        if not short:
            break
        correction = _widen(correction, age, truth, groups == min(short, key=lambda g: shares[g]))
    return replace(
        correction,
        below=tuple(round(b, 2) for b in correction.below),
        above=tuple(round(a, 2) for a in correction.above),
    )
