"""Calibration arithmetic on data whose answer is known: temperature, ECE, threshold, age range."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.analysis import calibration as cal
from models.cydral import AGE_CLASSES

CLASSES = np.asarray(AGE_CLASSES)


def synthetic_gender(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits that are ``temperature`` times too confident: sigmoid(logit / T) is the true P(male)."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0.0, 2.5, n)
    is_male = rng.random(n) < cal.sigmoid(true_logit)
    return true_logit * temperature, is_male


def test_fit_temperature_recovers_the_overconfidence():
    logits, is_male = synthetic_gender(20_000, 2.5)
    assert cal.fit_temperature(logits, is_male) == pytest.approx(2.5, rel=0.05)
    logits, is_male = synthetic_gender(20_000, 1.0, seed=1)
    assert cal.fit_temperature(logits, is_male) == pytest.approx(1.0, rel=0.05)


def test_ece_is_small_when_calibrated_and_large_when_not():
    logits, is_male = synthetic_gender(20_000, 3.0)
    says_male, confidence = cal.gender_confidence(cal.sigmoid(logits / 3.0))
    assert cal.expected_calibration_error(confidence, says_male == is_male) < 1.0
    says_male, confidence = cal.gender_confidence(cal.sigmoid(logits))
    assert cal.expected_calibration_error(confidence, says_male == is_male) > 5.0


def test_reliability_bins_count_every_face_once():
    confidence = np.array([0.5, 0.52, 0.74, 0.99, 1.0])
    rows = cal.reliability_bins(confidence, np.array([True, False, True, True, True]))
    assert sum(r["count"] for r in rows) == 5
    assert [(r["low"], r["count"]) for r in rows] == [(0.5, 2), (0.7, 1), (0.95, 2)]
    assert rows[0]["accuracy"] == 0.5


def test_accuracy_at_coverage_answers_the_surest_first():
    confidence = np.array([0.99, 0.6, 0.9, 0.55, 0.8])
    correct = np.array([True, False, True, False, False])
    assert cal.accuracy_at_coverage(confidence, correct, 0.4) == 1.0  # 0.99 and 0.9
    assert cal.accuracy_at_coverage(confidence, correct, 0.6) == pytest.approx(2 / 3)
    coverage, accuracy = cal.coverage_curve(confidence, correct)
    assert coverage[-1] == 1.0 and accuracy[-1] == pytest.approx(0.4)


def test_wilson_lower_bound():
    assert cal.wilson_lower(0, 0) == 0.0
    assert cal.wilson_lower(95, 100) < 0.95 < cal.wilson_lower(990, 1000)
    assert cal.wilson_lower(100, 100) == pytest.approx(0.9737, abs=1e-3)


def test_min_score_keeps_answered_faces_right_often_enough():
    # scores 50..99, one face each; faces under 80 are right half the time, from 80 on always
    scores = np.repeat(np.arange(50.0, 100.0), 20)
    correct = np.where(scores >= 80, True, np.arange(len(scores)) % 2 == 0)
    chosen = cal.choose_min_score(scores, correct, 0.95)
    answered = scores >= chosen
    assert correct[answered].mean() >= 0.95
    assert 78.0 <= chosen <= 80.0  # close to where the right answers start, not far stricter
    assert cal.choose_min_score(scores, np.zeros(len(scores), bool), 0.95) == 100.0  # never right: never answer


def test_age_moments_of_a_point_and_a_spread():
    point = np.eye(len(CLASSES))[[CLASSES.tolist().index(40.0)]]
    mean, std = cal.age_moments(point, CLASSES)
    assert mean[0] == 40.0 and std[0] == 0.0
    even = np.zeros((1, len(CLASSES)))
    even[0, [CLASSES.tolist().index(20.0), CLASSES.tolist().index(30.0)]] = 0.5
    mean, std = cal.age_moments(even, CLASSES)
    assert mean[0] == 25.0 and std[0] == 5.0


def gaussian_ages(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distributions centred on a noisy guess of each age, twice too narrow for the noise."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 80, n).astype(float)
    guess = ages + rng.normal(0.0, 6.0, n)
    probs = np.exp(-0.5 * ((CLASSES[None, :] - guess[:, None]) / 3.0) ** 2)
    return probs / probs.sum(axis=1, keepdims=True), ages


def test_fitted_age_range_holds_the_wanted_share_of_new_faces():
    probs, ages = gaussian_ages(3000)
    fitted = cal.fit_age_interval(probs, ages, CLASSES, temperature=1.0, coverage=0.8)
    _, low, high = fitted.estimate(probs, CLASSES)
    assert np.mean((ages >= low) & (ages <= high)) >= 0.8
    new_probs, new_ages = gaussian_ages(3000, seed=1)
    _, low, high = fitted.estimate(new_probs, CLASSES)
    assert np.mean((new_ages >= low) & (new_ages <= high)) == pytest.approx(0.8, abs=0.025)
    # noise of sd 6 needs about +-1.28 sd for 80 %: a range near 16 years wide, not wider
    assert np.mean(high - low) < 19.0


def test_age_temperature_softening_keeps_a_symmetric_mean():
    probs, ages = gaussian_ages(200)
    soft = cal.AgeCalibration(temperature=2.0, q=1.0, offset=0.0)
    mean_raw, std_raw = cal.age_moments(probs, CLASSES)
    mean_soft, std_soft = cal.age_moments(soft.soften(probs), CLASSES)
    inner = (mean_raw > 15) & (mean_raw < 65)  # away from the ends of the class range
    assert np.allclose(mean_soft[inner], mean_raw[inner], atol=0.05)
    assert np.all(std_soft[inner] > std_raw[inner] * 1.3)
    assert cal.fit_age_temperature(probs, ages, CLASSES) in cal.AGE_TEMPERATURE_GRID


# -- fitting the pooling on permissive data --


def test_quality_temperature_finds_the_slope_that_made_the_data():
    rng = np.random.default_rng(1)
    n = 6000
    face_px = rng.choice([40.0, 56.0, 80.0, 150.0], n)
    sharpness = rng.choice([20.0, 200.0], n)
    small, blurred = cal.quality_halvings(face_px, sharpness)
    truth = rng.normal(0.0, 4.0, n)  # true log-odds of each face, divided by 2 * (1 + 0.5 * small)
    is_male = rng.random(n) < cal.sigmoid(truth / (2.0 * (1.0 + 0.5 * small)))
    t, size_slope, blur_slope = cal.fit_quality_temperature(truth, is_male, face_px, sharpness)
    assert t == pytest.approx(2.0, rel=0.2)
    assert size_slope == pytest.approx(0.5, abs=0.2)
    assert blur_slope <= 0.15  # blur said nothing here


def test_rho_is_found_from_how_much_faces_repeat_each_other():
    rng = np.random.default_rng(2)
    appearances, labels = [], []
    for _ in range(3000):
        k = int(rng.integers(1, 15))
        evidence = rng.normal(0.0, 1.5)  # what the appearance shows
        z = np.full(k, evidence) + rng.normal(0.0, 0.05, k)  # faces repeat it almost exactly
        p = cal.sigmoid(evidence)  # so one face's worth is all there is: rho = 1
        appearances.append((z, np.ones(k)))
        labels.append(rng.random() < p)
    assert cal.fit_rho(appearances, np.array(labels)) >= 0.9


def test_age_correction_reads_compressed_ages_back_and_holds_in_every_bin():
    rng = np.random.default_rng(3)
    classes = np.asarray(AGE_CLASSES)
    low = np.repeat([0, 3, 10, 20, 30, 40, 50, 60, 70], 80).astype(float)
    high = np.repeat([2, 9, 19, 29, 39, 49, 59, 69, 89], 80).astype(float)
    true_age = rng.uniform(low, high + 1)
    read = 12 + 0.55 * true_age + rng.normal(0, 3, len(true_age))  # a net that reads the old young
    probs = np.exp(-0.5 * ((classes[None, :] - read[:, None]) / 3.0) ** 2)
    probs /= probs.sum(axis=1, keepdims=True)
    correction = cal.fit_age_correction(probs, low, high, classes, coverage=0.8)
    assert list(correction.ages) == sorted(correction.ages)
    age, lo, hi = correction.estimate(probs, classes)
    assert np.mean(np.abs(age - true_age)) < 8.0 < np.mean(np.abs(np.round(read) - true_age))
    for first in (10, 20, 30, 40, 50, 60, 70):
        rows = low == first
        assert np.mean((true_age[rows] >= lo[rows]) & (true_age[rows] < hi[rows] + 1)) >= 0.7, first
