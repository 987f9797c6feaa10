"""How far a monotone age correction of the Cydral net can go: every correction of the family that
``analyzer.analysis.calibration.fit_age_correction`` searches, scored where nothing was fitted.

    .venv/bin/python scripts/age_frontier.py [--fairface out/features/fairface] [--utkface out/features/utkface]

(the .npz files of scripts/chip_features.py, clean chips.) For each softening temperature, knee and
slope (ages read as they are up to the knee, stretched by the slope past it) it scores the FairFace
540 fit half's age-bin accuracy (what a fit could select on), the held-out half's, and UTKFace's
held-out MAE overall and over 60, and prints the best correction for each figure and those that
meet issue 18's targets (UTKFace MAE <= 6.5 and <= 9 over 60, FairFace bin accuracy >= 0.42).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from analyzer.analysis.calibration import CORRECTION_KNEES, CORRECTION_SLOPES, CORRECTION_TEMPERATURES, soften
from analyzer.evaluation.evalset import fairface_bin
from models.cydral import AGE_CLASSES

CLASSES = np.asarray(AGE_CLASSES, dtype=np.float64)
COLUMNS = ("temperature", "knee", "slope", "ff_fit_bin_acc", "ff_held_bin_acc", "utk_mae", "utk_mae_over_60")


def load(prefix: str) -> dict[str, np.ndarray]:
    data = dict(np.load(f"{prefix}-clean.npz"))
    return {name: values[data["found"]] for name, values in data.items()}


def scores(fairface: dict[str, np.ndarray], utkface: dict[str, np.ndarray]) -> list[tuple[float, ...]]:
    fit, held = fairface["fit_half"], ~fairface["fit_half"]
    utk = ~utkface["fit_half"]
    truth, old = utkface["age"][utk], utkface["age"][utk] >= 60
    rows = []
    for temperature in CORRECTION_TEMPERATURES:
        ff = soften(fairface["age_probs"], temperature) @ CLASSES
        ages = soften(utkface["age_probs"][utk], temperature) @ CLASSES
        for knee, slope in itertools.product(CORRECTION_KNEES, CORRECTION_SLOPES):

            def read(e: np.ndarray) -> np.ndarray:
                return np.floor(np.where(e > knee, knee + slope * (e - knee), e) + 0.5)  # noqa: B023

            bins = np.array([fairface_bin(float(a)) for a in read(ff)])
            error = np.abs(read(ages) - truth)
            rows.append(
                (
                    temperature,
                    knee,
                    slope,
                    round(float(np.mean(bins[fit] == fairface["bin"][fit])), 3),
                    round(float(np.mean(bins[held] == fairface["bin"][held])), 3),
                    round(float(error.mean()), 2),
                    round(float(error[old].mean()), 2),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fairface", default="out/features/fairface")
    parser.add_argument("--utkface", default="out/features/utkface")
    args = parser.parse_args()
    rows = scores(load(args.fairface), load(args.utkface))
    show = lambda row: dict(zip(COLUMNS, row))  # noqa: E731
    print(f"{len(rows)} corrections")
    for column, sign in (("ff_fit_bin_acc", -1), ("ff_held_bin_acc", -1), ("utk_mae", 1), ("utk_mae_over_60", 1)):
        i = COLUMNS.index(column)
        print(f"best {column}:", show(min(rows, key=lambda row: sign * row[i])))
    meeting = [row for row in rows if row[5] <= 6.5 and row[6] <= 9.0 and row[4] >= 0.42]
    print(f"meeting all three targets: {len(meeting)}", *[show(row) for row in meeting[:5]], sep="\n")


if __name__ == "__main__":
    main()
