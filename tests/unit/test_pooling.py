"""Pooling: an appearance's faces into one gender, gender_score, age and range."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.analysis.calibration import AgeCalibration
from analyzer.analysis.pooling import (
    FEMALE,
    MALE,
    POOLINGS,
    AgeCorrection,
    Pooling,
    frontal_pose,
    judge_age,
    judge_gender,
    pooling_digest,
)
from models.cydral import AGE_CLASSES
from tests.unit.test_tracking import age_distribution, logit

AS_READ = AgeCalibration(temperature=1.0, q=1.5, offset=0.5)
MEAN = Pooling(size_slope=0.0, blur_slope=0.0, rho=1.0, age=AS_READ, fitted_on="tests")
SHARP, LARGE = 200.0, 150.0  # sharpness and size past full detail: no extra temperature


def gender(pooling: Pooling, p_male: list[float], weights: list[float], **kwargs: float):
    k = len(p_male)
    return judge_gender(
        pooling,
        np.array([logit(p) for p in p_male]),
        np.full(k, kwargs.get("face_px", LARGE)),
        np.full(k, kwargs.get("sharpness", SHARP)),
        np.array(weights, dtype=float),
        kwargs.get("min_score", 0.0),
    )


@pytest.mark.parametrize(
    ("p_male", "weights", "expected"),
    [
        ([0.55], [1.0], (MALE, 55.0)),  # one barely-decided face is not 100 % sure
        ([0.999999], [1.0], (MALE, 99.9)),  # nor is a face the net is sure of
        ([0.9] * 10, [1.0] * 10, (MALE, 90.0)),  # rho = 1: ten agreeing faces are as sure as one
        ([0.01, 0.02], [0.9, 0.95], (FEMALE, 98.6)),
        ([0.9, 0.9, 0.1], [1.0, 1.0, 1.0], (MALE, 67.5)),  # disagreement lowers the score
        ([0.9, 0.2], [1.0, 0.5], (MALE, 73.2)),  # the face weight weighs the vote
        ([0.9, 0.2], [0.2, 1.0], (FEMALE, 68.8)),
        ([0.8, 0.2], [1.0, 1.0], (None, None)),  # exact tie: no guess
        ([], [], (None, None)),
    ],
)
def test_with_rho_1_the_score_is_the_weighted_mean_log_odds(p_male, weights, expected):
    assert gender(MEAN, p_male, weights) == expected


def test_faces_add_evidence_up_to_one_over_rho_faces():
    pooling = Pooling(0.0, 0.0, rho=0.25, age=AS_READ, fitted_on="tests")
    one = gender(pooling, [0.7], [1.0])
    four = gender(pooling, [0.7] * 4, [1.0] * 4)
    many = gender(pooling, [0.7] * 1000, [1.0] * 1000)
    # 4 faces at rho 0.25: 4 / (1 + 3 * 0.25) = 2.29 faces' worth; 1000: just under 4
    assert one == (MALE, 70.0)
    assert four == (MALE, round(100 * float(1 / (1 + np.exp(-logit(0.7) * 4 / 1.75))), 1))
    assert four[1] < many[1] < round(100 * float(1 / (1 + np.exp(-logit(0.7) * 4))), 1) + 0.05
    assert pooling.effective_faces(np.ones(1)) == pytest.approx(1.0)
    assert pooling.effective_faces(np.array([1.0, 0.0])) == pytest.approx(1.0)  # a zero-weight face adds nothing
    assert Pooling(0.0, 0.0, 0.0, AS_READ, "tests").effective_faces(np.ones(7)) == pytest.approx(7.0)


def test_disagreeing_faces_stay_unsure_however_many():
    pooling = Pooling(0.0, 0.0, rho=0.1, age=AS_READ, fitted_on="tests")
    assert gender(pooling, [0.9, 0.1] * 20, [1.0] * 40) == (None, None)


def test_small_and_blurred_faces_say_less():
    pooling = Pooling(size_slope=0.5, blur_slope=0.25, rho=1.0, age=AS_READ, fitted_on="tests")
    assert pooling.quality_temperature(np.array([112.0, 400.0]), np.array([100.0, 900.0])) == pytest.approx(1.0)
    # 56 px is one halving below full size (+0.5); sharpness 25 is two halvings below 100 (+0.5)
    assert pooling.quality_temperature(np.array([56.0]), np.array([25.0])) == pytest.approx([2.0])
    _, sharp_score = gender(pooling, [0.9], [1.0])
    _, small_score = gender(pooling, [0.9], [1.0], face_px=56.0, sharpness=25.0)
    assert sharp_score == 90.0
    assert small_score == round(100 * float(1 / (1 + np.exp(-logit(0.9) / 2.0))), 1)


def test_gender_score_is_null_or_above_50_with_gender_null_together():
    rng = np.random.default_rng(7)
    pooling = Pooling(0.3, 0.2, rho=0.2, age=AS_READ, fitted_on="tests")
    for _ in range(200):
        k = int(rng.integers(0, 6))
        result = judge_gender(
            pooling, rng.normal(0.0, 3.0, k), rng.uniform(20, 200, k), rng.uniform(1, 300, k), rng.random(k) + 0.1
        )
        assert (result[0] is None) == (result[1] is None)
        assert result[1] is None or 50.0 < result[1] <= 99.9


def test_below_the_least_score_is_none():
    assert gender(MEAN, [0.7], [1.0], min_score=75.0) == (None, None)
    assert gender(MEAN, [0.8], [1.0], min_score=75.0) == (MALE, 80.0)


def test_age_is_the_mixture_expectation_with_its_range():
    probs = np.stack([age_distribution(30, 4.0), age_distribution(40, 4.0)])
    assert judge_age(MEAN, probs, np.array([1.0, 1.0])) == (35, 20, 50)  # 35 +- 1.5 * (6.4 + 0.5 * 6)
    assert judge_age(MEAN, probs, np.array([4.0, 1.0])) == (32, 19, 45)  # the heavier face pulls
    assert judge_age(MEAN, np.zeros((0, len(AGE_CLASSES))), np.zeros(0)) == (None, None, None)


def test_age_correction_is_monotone_and_reads_the_old_older():
    correction = AgeCorrection(
        temperature=1.0,
        knots=(0.0, 20.0, 50.0, 80.0),
        ages=(0.0, 20.0, 60.0, 85.0),
        range_knots=(0.0, 40.0, 85.0),
        below=(1.0, 6.0, 15.0),
        above=(2.0, 8.0, 20.0),
    )
    pooling = Pooling(0.0, 0.0, 1.0, correction, "tests")
    assert judge_age(pooling, age_distribution(10)[None], np.ones(1)) == (10, 7, 14)  # 10 -2.25/+3.5
    assert judge_age(pooling, age_distribution(50)[None], np.ones(1)) == (60, 50, 74)  # 60 -10/+13.3
    assert judge_age(pooling, age_distribution(80)[None], np.ones(1))[0] == 85
    ages = [judge_age(pooling, age_distribution(a)[None], np.ones(1))[0] for a in range(0, 81, 5)]
    assert ages == sorted(ages)
    assert judge_age(pooling, age_distribution(0.25)[None], np.ones(1))[1] == 0  # never below 0


def test_frontal_pose_from_landmarks():
    eyes = [[40.0, 50.0], [80.0, 50.0]]
    mouth = [[45.0, 90.0], [75.0, 90.0]]
    frontal = eyes + [[60.0, 70.0]] + mouth
    turned = eyes + [[70.0, 70.0]] + mouth  # nose halfway to the right eye
    profile = eyes + [[85.0, 70.0]] + mouth  # nose beyond the eye
    poses = frontal_pose(np.array([frontal, turned, profile]))
    assert np.allclose(poses, [1.0, 0.5, 0.0])
    rolled = np.array(frontal) @ np.array([[0.0, 1.0], [-1.0, 0.0]])  # the head tilted 90 degrees
    assert np.allclose(frontal_pose(rolled[None]), [1.0])
    assert np.allclose(frontal_pose(np.full((1, 5, 2), np.nan)), [1.0])  # unknown: frontal


def test_the_digest_follows_the_constants(monkeypatch):
    before = pooling_digest("cydral")
    monkeypatch.setitem(POOLINGS, "cydral", Pooling(0.1, 0.0, 0.5, AS_READ, "tests"))
    assert pooling_digest("cydral") != before
    assert len(before) == 8 and pooling_digest("insightface") != before
