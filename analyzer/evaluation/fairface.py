"""FairFace 540: labelled face crops with FairFace's age bins, and their fit / held-out halves.

The folder (``../shared/data/fairface_540``) holds 540 FairFace crops (448x448 JPEG, margin 0.25; its README says 224)
and ``MANIFEST.tsv`` with the columns ``file``, ``age_bin``, ``gender``, ``sha256``. FairFace is
by Kärkkäinen and Joo ("FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age",
WACV 2021), licensed CC BY 4.0: whatever is fitted on or made from it must credit them (``CREDIT``).
The halves follow ``evalset.halves``, the rule of every labelled set here: within each age bin x
gender cell, crops sorted by sha256 alternate fit / held out.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.evaluation import evalset
from analyzer.evaluation.evalset import FAIRFACE_BINS as AGE_BINS
from analyzer.evaluation.evalset import EvalFace as FairFaceImage

__all__ = ["AGE_BINS", "CREDIT", "HALVES", "LICENCE", "FairFaceImage", "half", "load_fairface", "split"]

LICENCE = "CC BY 4.0"
CREDIT = f"FairFace 540 ({LICENCE}; Kärkkäinen and Joo, WACV 2021)"
HALVES = ("fit", "held_out")


def load_fairface(folder: str | Path) -> list[FairFaceImage]:
    """The crops listed in ``folder/MANIFEST.tsv`` (beside the images), in manifest order
    (``evalset.load``, which reads FairFace's layout: each face's ``age_bin``, no exact age).

    Raises:
        FileNotFoundError: the manifest or a listed image is missing.
        ValueError: a row has an unknown gender or age bin.
    """
    return evalset.load(folder)


def split(images: list[FairFaceImage]) -> tuple[list[FairFaceImage], list[FairFaceImage]]:
    """(fit, held_out): ``evalset.halves`` by FairFace age bin x gender (``evalset.split``)."""
    return evalset.split(images)


def half(images: list[FairFaceImage], name: str) -> list[FairFaceImage]:
    """The crops of one half, ``"fit"`` or ``"held_out"``, or all of them for ``"all"``, in file order."""
    if name == "all":
        return sorted(images, key=lambda image: image.path.name)
    if name not in HALVES:
        raise ValueError(f"unknown half {name!r}: fit, held_out or all")
    return sorted(split(images)[HALVES.index(name)], key=lambda image: image.path.name)
