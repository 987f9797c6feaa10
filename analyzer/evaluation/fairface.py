"""FairFace 540: labelled face crops with FairFace's age bins, and their fit / held-out halves.

The folder (``../shared/data/fairface_540``) holds 540 FairFace crops (448x448 JPEG, margin 0.25; its README says 224)
and ``MANIFEST.tsv`` with the columns ``file``, ``age_bin``, ``gender``, ``sha256``. FairFace is
by Kärkkäinen and Joo ("FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age",
WACV 2021), licensed CC BY 4.0: whatever is fitted on or made from it must credit them (``CREDIT``).
The halves follow ``evalset.halves``, the rule of every labelled set here: within each age bin x
gender cell, crops sorted by sha256 alternate fit / held out.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from analyzer.evaluation.evalset import GENDERS, halves

__all__ = ["AGE_BINS", "CREDIT", "HALVES", "LICENCE", "FairFaceImage", "half", "load_fairface", "split"]

AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
LICENCE = "CC BY 4.0"
CREDIT = f"FairFace 540 ({LICENCE}; Kärkkäinen and Joo, WACV 2021)"
HALVES = ("fit", "held_out")


@dataclass(frozen=True)
class FairFaceImage:
    """One labelled crop: its path, age bin (one of ``AGE_BINS``), gender, sha256."""

    path: Path
    age_bin: str
    gender: str
    sha256: str

    @property
    def is_male(self) -> bool:
        return self.gender == "male"


def load_fairface(folder: str | Path) -> list[FairFaceImage]:
    """The crops listed in ``folder/MANIFEST.tsv`` (beside the images), in manifest order.

    Raises:
        FileNotFoundError: the manifest or a listed image is missing.
        ValueError: a row has an unknown gender or age bin.
    """
    folder = Path(folder)
    images = []
    with open(folder / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["gender"] not in GENDERS:
                raise ValueError(f"{row['file']}: unknown gender {row['gender']!r}")
            if row["age_bin"] not in AGE_BINS:
                raise ValueError(f"{row['file']}: unknown age bin {row['age_bin']!r}")
            path = folder / row["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path} is listed in the manifest but missing")
            images.append(FairFaceImage(path, row["age_bin"], row["gender"], row["sha256"]))
    return images


def split(images: list[FairFaceImage]) -> tuple[list[FairFaceImage], list[FairFaceImage]]:
    """(fit, held_out): ``evalset.halves`` by FairFace age bin x gender."""
    return halves(images, lambda image: (image.age_bin, image.gender))


def half(images: list[FairFaceImage], name: str) -> list[FairFaceImage]:
    """The crops of one half, ``"fit"`` or ``"held_out"``, or all of them for ``"all"``, in file order."""
    if name == "all":
        return sorted(images, key=lambda image: image.path.name)
    if name not in HALVES:
        raise ValueError(f"unknown half {name!r}: fit, held_out or all")
    return sorted(split(images)[HALVES.index(name)], key=lambda image: image.path.name)
