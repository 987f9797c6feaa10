"""A labelled folder of face chips for measuring gender and age: its manifest and its two halves.

Two layouts are read. UTKFace-style (``../shared/data/utkface_eval``): ``MANIFEST.tsv`` with
columns ``file``, ``age``, ``gender``, ``race``, ``sha256`` among others, images under ``images/``.
FairFace-style (``../shared/data/fairface_540``): ``MANIFEST.tsv`` with ``file``, ``age_bin``
(one of FAIRFACE_BINS), ``gender``, ``sha256``, images beside it; the age is known only as a bin.
Every face carries its FairFace bin (``bin``), so both sets are scored by age-bin accuracy alike.
Anything fitted on it (a chip template, a temperature, a threshold, an interval) is fitted on the
``fit`` half and reported on the ``held_out`` half, so no figure is measured on what it was
fitted to. The halves are fixed by the files' sha256, stratified by age bin and gender.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EvalFace",
    "AGE_BINS",
    "FAIRFACE_BINS",
    "age_bin",
    "bin_range",
    "fairface_bin",
    "halves",
    "label_years",
    "load",
    "split",
]

# Lower edges of the age bins the UTKFace set is balanced on: 0-9, 10-19, ..., 60-69, 70+
AGE_BINS = (0, 10, 20, 30, 40, 50, 60, 70)
# FairFace's age bins (its labels), and the whole years each holds; 70+ is taken to end at 89
FAIRFACE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
OLDEST_AGE = 89
GENDERS = ("female", "male")


@dataclass(frozen=True)
class EvalFace:
    """One labelled chip: its path, age in years (None where only the bin is known), gender
    ("male"/"female"), race ("" where unknown), sha256, and FairFace age bin."""

    path: Path
    age: int | None
    gender: str
    race: str
    sha256: str
    bin: str = ""

    def __post_init__(self) -> None:
        if not self.bin:
            if self.age is None:
                raise ValueError(f"{self.path}: neither an age nor an age bin")
            object.__setattr__(self, "bin", fairface_bin(self.age))

    @property
    def is_male(self) -> bool:
        return self.gender == "male"

    @property
    def age_bin(self) -> str:
        """The FairFace bin (``bin``), under the name FairFace's manifest gives it."""
        return self.bin


def age_bin(age: float) -> str:
    """Label of the age bin holding ``age``: "0-9", ..., "60-69", "70+"."""
    lower = max(edge for edge in AGE_BINS if age >= edge) if age >= 0 else 0
    return "70+" if lower == AGE_BINS[-1] else f"{lower}-{lower + 9}"


def fairface_bin(age: float) -> str:
    """FairFace bin holding ``age`` (years): "0-2", "3-9", "10-19", ..., "60-69", "70+"."""
    return next(label for label in reversed(FAIRFACE_BINS) if age >= bin_range(label)[0])


def bin_range(label: str) -> tuple[int, int]:
    """(first, last) whole year of a FairFace bin; "70+" is (70, OLDEST_AGE)."""
    if label not in FAIRFACE_BINS:
        raise ValueError(f"unknown age bin {label!r}")
    if label.endswith("+"):
        return int(label[:-1]), OLDEST_AGE
    low, high = label.split("-")
    return int(low), int(high)


def label_years(ages: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) whole years of each label: its age where known (not NaN), else the first and
    last year of its FairFace bin."""
    import numpy as np  # here: the CLI imports this module on every run, before any stop signal is handled

    ages = np.asarray(ages, dtype=np.float64)
    ranges = np.array([bin_range(b) for b in bins], dtype=np.float64).reshape(-1, 2)
    exact = np.isfinite(ages)
    return np.where(exact, ages, ranges[:, 0]), np.where(exact, ages, ranges[:, 1])


def load(folder: str | Path) -> list[EvalFace]:
    """The faces listed in ``folder/MANIFEST.tsv``, in manifest order.

    Raises:
        FileNotFoundError: the manifest or a listed image is missing.
        ValueError: a row has an unknown gender or a non-integer age.
    """
    folder = Path(folder)
    faces = []
    with open(folder / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["gender"] not in GENDERS:
                raise ValueError(f"{row['file']}: unknown gender {row['gender']!r}")
            path = folder / "images" / row["file"]
            if not path.is_file():
                path = folder / row["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path} is listed in the manifest but missing")
            faces.append(_face(path, row))
    return faces


def _face(path: Path, row: dict[str, str]) -> EvalFace:
    if row.get("age"):
        return EvalFace(path, int(row["age"]), row["gender"], row.get("race", ""), row["sha256"])
    label = row.get("age_bin", "")
    bin_range(label)  # raises ValueError on an unknown bin
    return EvalFace(path, None, row["gender"], row.get("race", ""), row["sha256"], label)


class _Hashed(Protocol):
    @property
    def sha256(self) -> str: ...


Face = TypeVar("Face", bound=_Hashed)


def halves(faces: Iterable[Face], cell: Callable[[Face], Hashable]) -> tuple[list[Face], list[Face]]:
    """(fit, held_out): within each ``cell(face)`` (an age bin x gender), faces sorted by sha256
    alternate between the halves (even index fit, odd held out), so both halves keep the set's
    balance and never change with its order. The one halving rule of every labelled set here."""
    cells: dict[Hashable, list[Face]] = defaultdict(list)
    for face in faces:
        cells[cell(face)].append(face)
    fit: list[Face] = []
    held_out: list[Face] = []
    for members in cells.values():
        for i, face in enumerate(sorted(members, key=lambda f: f.sha256)):
            (fit if i % 2 == 0 else held_out).append(face)
    return fit, held_out


def split(faces: list[EvalFace]) -> tuple[list[EvalFace], list[EvalFace]]:
    """(fit, held_out): ``halves`` by age bin x gender (UTKFace's ten-year bin of the age where it is
    known, else the face's own FairFace bin)."""
    return halves(faces, lambda face: (age_bin(face.age) if face.age is not None else face.bin, face.gender))
