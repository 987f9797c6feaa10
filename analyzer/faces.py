"""CLI commands around the face models: ``faces IMAGE...`` and ``models fetch``.

``register(subparsers)`` adds them to the main parser; each sets ``handler`` to a function
``(args) -> int``. Torch and the models are imported inside the handlers, so building the parser
stays cheap.

``faces`` prints one JSON line per face::

    {"file": "obama.jpg", "box": [362.1, 104.1, 621.3, 415.3], "landmarks": [[434.2, 209.6], ...],
     "score": 0.9999, "gender": "male", "p_male": 0.9987, "age": 61, "face_px": 259.2,
     "sharpness": 1952.8}
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from analyzer.errors import InputNotFound, SettingsError, UndecodableVideo, model_errors
from analyzer.settings import DEFAULT_MODEL_DIR
from models.weights import CLASSIFIERS, DEFAULT_CLASSIFIER, DETECTORS

__all__ = ["register", "default_model_dir"]

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "ANALYZER_MODEL_DIR"
DETECTOR_CHOICES = DETECTORS


def default_model_dir() -> str:
    """``$ANALYZER_MODEL_DIR``, else ``./weights``."""
    return os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR


def _add_model_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        default=None,
        help=f"folder with the weight files (env {MODEL_DIR_ENV}; default ./{DEFAULT_MODEL_DIR})",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``faces`` command and the ``models`` command group to ``subparsers``."""
    faces = subparsers.add_parser(
        "faces",
        help="detect faces in images and estimate gender and age; one JSON line per face",
        description="Detect and classify the faces in still images. Prints one JSON line per face: "
        "file, box [x1, y1, x2, y2] in pixels, landmarks, score, gender, p_male, age.",
    )
    faces.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    _add_model_dir_option(faces)
    faces.add_argument("--detector", choices=DETECTOR_CHOICES, default="retinaface", help="face detector")
    faces.add_argument(
        "--classifier",
        choices=tuple(CLASSIFIERS),
        default=DEFAULT_CLASSIFIER,
        help=f"gender-age model (default {DEFAULT_CLASSIFIER}; insightface is non-commercial only)",
    )
    faces.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    faces.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="minimum detector score 0-1 (default 0.9 for retinaface, 0.6 for yunet)",
    )
    faces.add_argument(
        "--det-max-side",
        type=int,
        default=960,
        help="shrink images so the longer side is at most this many pixels for detection; "
        "0 keeps the original size (default 960)",
    )
    faces.set_defaults(handler=run_faces)

    models = subparsers.add_parser("models", help="manage the model weight files")
    actions = models.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        help="fill the model folder, checking every sha256",
        description="Copy the weight files from a local folder (--from) or download them from "
        "their upstream repositories, checking each file's sha256.",
    )
    fetch.add_argument(
        "--from",
        dest="source",
        action="append",
        default=None,
        metavar="DIR",
        help="local folder holding the files (repeatable: each model from the first folder holding it)",
    )
    _add_model_dir_option(fetch)
    fetch.set_defaults(handler=run_models_fetch)


def _read_image(path: Path) -> Any:
    """BGR uint8 (H, W, 3) of the image at ``path``; one-line project errors otherwise."""
    import cv2

    if not path.is_file():
        raise InputNotFound(f"image {path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UndecodableVideo(f"image {path}: not a decodable image")
    return image


def _face_record(path: Path, faces: Any, row: int) -> dict[str, Any]:
    p_male = float(faces.p_male[row])
    return {
        "file": str(path),
        "box": [round(float(v), 2) for v in faces.boxes[row]],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in faces.landmarks[row]],
        "score": round(float(faces.scores[row]), 5),
        "gender": "male" if p_male >= 0.5 else "female",
        "p_male": round(p_male, 5),
        "age": math.floor(float(faces.age[row]) + 0.5),  # an expectation in years, rounded half up
        "face_px": round(float(faces.face_px[row]), 1),
        "sharpness": round(float(faces.sharpness[row]), 1),
    }


@model_errors()
def run_faces(args: argparse.Namespace) -> int:
    """Handler of ``faces``: every image through FaceAnalyzer, one JSON line per face."""
    if args.det_max_side < 0:
        raise SettingsError(f"--det-max-side {args.det_max_side}: must be 0 or more")
    paths = [Path(p) for p in args.images]
    for path in paths:  # fail before loading the models
        if not path.is_file():
            raise InputNotFound(f"image {path}: no such file")

    from models.face_analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer(
        args.model_dir or default_model_dir(),
        detector=args.detector,
        classifier=args.classifier,
        device=args.device,
        det_max_side=args.det_max_side or None,
        score_threshold=args.threshold,
    )
    for path in paths:
        image = _read_image(path)
        faces = analyzer.analyze(image[None])
        log.info("image %s: %d faces", path, len(faces))
        for row in range(len(faces)):
            sys.stdout.write(json.dumps(_face_record(path, faces, row)) + "\n")
    sys.stdout.flush()
    return 0


@model_errors()
def run_models_fetch(args: argparse.Namespace) -> int:
    """Handler of ``models fetch``: one line per installed file."""
    from models.weights import fetch, sha256_of

    model_dir = args.model_dir or default_model_dir()
    for folder in args.source or ():
        if not Path(folder).is_dir():
            raise SettingsError(f"--from {folder}: not a folder")
    for path in fetch(model_dir, args.source):
        sys.stdout.write(f"{path} sha256 {sha256_of(path)[:12]} ok\n")
    sys.stdout.flush()
    return 0
