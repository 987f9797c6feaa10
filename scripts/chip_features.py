"""Per-face outputs of the default models on a labelled chip set, clean and degraded, cached as .npz.

    .venv/bin/python scripts/chip_features.py ../shared/data/fairface_540 out/features/fairface
    .venv/bin/python scripts/chip_features.py ../shared/data/utkface_eval out/features/utkface

Writes ``<prefix>-<level>.npz`` for the clean chips and each level of
``analyzer.evaluation.degrade.VIDEO_LEVELS``: the raw gender logit, age distribution, detector
score, face size, sharpness and frontal measure of each face, with its labels and half, the input
of ``scripts/fit_pooling.py``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from analyzer.evaluation import evalset, quality
from analyzer.evaluation.degrade import VIDEO_LEVELS
from analyzer.faces import default_model_dir
from models.face_analyzer import FaceAnalyzer


def save(outputs: quality.ChipOutputs, fit: set[str], path: Path) -> None:
    faces = outputs.faces
    np.savez_compressed(
        path,
        found=outputs.found,
        gender_logit=outputs.gender_logit,
        age_probs=outputs.age_probs,
        det_score=outputs.det_score,
        face_px=outputs.face_px,
        sharpness=outputs.sharpness,
        frontal=outputs.frontal,
        is_male=np.array([f.is_male for f in faces]),
        age=np.array([np.nan if f.age is None else f.age for f in faces]),
        bin=np.array([f.bin for f in faces]),
        fit_half=np.array([f.sha256 in fit for f in faces]),
        sha256=np.array([f.sha256 for f in faces]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("prefix")
    parser.add_argument("--half", choices=("fit", "held-out"), help="only this half (default: all faces)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    faces = evalset.load(args.folder)
    fit = {f.sha256 for f in evalset.split(faces)[0]}
    if args.half:
        faces = [f for f in faces if (f.sha256 in fit) == (args.half == "fit")]
    analyzer = FaceAnalyzer(default_model_dir(), detector="retinaface", classifier="cydral", device="cpu")
    clean = quality.run_chips(analyzer, faces)
    save(clean, fit, Path(f"{args.prefix}-clean.npz"))
    for level in VIDEO_LEVELS:
        save(quality.run_chips(analyzer, faces, level, clean), fit, Path(f"{args.prefix}-{level.name}.npz"))
        logging.info("%s: %s done", args.prefix, level.name)


if __name__ == "__main__":
    main()
