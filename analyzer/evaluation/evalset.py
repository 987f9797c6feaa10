"""A labelled folder of face chips for measuring gender and age: its manifest and its two halves.

The folder holds ``MANIFEST.tsv`` (columns ``file``, ``age``, ``gender``, ``race``, ``sha256``
among others) and the images under ``images/``, as ``../shared/data/utkface_eval`` does.
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
from typing import Protocol, TypeVar

__all__ = ["EvalFace", "AGE_BINS", "age_bin", "halves", "load", "split"]

# Lower edges of the age bins the set is balanced on: 0-9, 10-19, ..., 60-69, 70+
AGE_BINS = (0, 10, 20, 30, 40, 50, 60, 70)
GENDERS = ("female", "male")


@dataclass(frozen=True)
class EvalFace:
    """One labelled chip: its path, age in years, gender ("male"/"female"), race, sha256."""

    path: Path
    age: int
    gender: str
    race: str
    sha256: str

    @property
    def is_male(self) -> bool:
        return self.gender == "male"


def age_bin(age: float) -> str:
    """Label of the age bin holding ``age``: "0-9", ..., "60-69", "70+"."""
    lower = max(edge for edge in AGE_BINS if age >= edge) if age >= 0 else 0
    return "70+" if lower == AGE_BINS[-1] else f"{lower}-{lower + 9}"


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
                raise FileNotFoundError(f"{path} is listed in the manifest but missing")
            faces.append(EvalFace(path, int(row["age"]), row["gender"], row["race"], row["sha256"]))
    return faces


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
    """(fit, held_out) of UTKFace-style faces: ``halves`` by age bin (of the age) x gender."""
    return halves(faces, lambda face: (age_bin(face.age), face.gender))
