"""The labelled evaluation set: manifest reading and the fixed, balanced halves."""

from __future__ import annotations

from collections import Counter

import pytest

from analyzer.evaluation import evalset
from tests.conftest import SHARED

EVAL_DIR = SHARED / "data" / "utkface_eval"


def cells(faces: list[evalset.EvalFace]) -> Counter:
    return Counter((evalset.age_bin(f.age), f.gender) for f in faces)


def test_age_bins() -> None:
    assert [evalset.age_bin(a) for a in (0, 9, 10, 69, 70, 116)] == ["0-9", "0-9", "10-19", "60-69", "70+", "70+"]


@pytest.mark.skipif(not EVAL_DIR.is_dir(), reason="../shared/data/utkface_eval not present")
def test_halves_are_disjoint_balanced_and_stable() -> None:
    faces = evalset.load(EVAL_DIR)
    fit, held_out = evalset.split(faces)
    assert len(faces) == 1276 and len(fit) + len(held_out) == len(faces)
    assert not {f.path for f in fit} & {f.path for f in held_out}
    for cell, count in cells(faces).items():
        assert abs(cells(fit)[cell] - cells(held_out)[cell]) <= 1, cell
        assert count >= 70
    again_fit, _ = evalset.split(list(reversed(faces)))
    assert {f.path for f in again_fit} == {f.path for f in fit}
