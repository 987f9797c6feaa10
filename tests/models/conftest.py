"""Shared fixtures of the face-model tests: real weights and images from ../shared.

Paths come from ``ANALYZER_SHARED_DIR`` (default ``<repo>/../shared``), as in tests/conftest.py.
Networks are loaded once per session: they are read-only in inference mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ANALYZER_SHARED_DIR", REPO.parent / "shared"))
MODELS_DIR = SHARED / "models"
MEDIA_DIR = SHARED / "media"
REFERENCE_DIR = MODELS_DIR / "reference"
UTKFACE_DIR = MEDIA_DIR / "utkface_dev"


def weights_dir() -> Path:
    """The fetched model folder (tests/conftest.py): every weight file the analyzer loads."""
    from tests.conftest import fetched_models_dir

    return fetched_models_dir()


def read_bgr(name: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR of a file in the shared media folder (or an absolute path)."""
    path = Path(name) if Path(name).is_absolute() else MEDIA_DIR / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image


@pytest.fixture(scope="session")
def genderage_reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE_DIR / "genderage_faces.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def retinaface_detector():
    from models.retinaface import RetinaFaceDetector

    return RetinaFaceDetector.from_file(MODELS_DIR / "retinaface_mobilenet0.25.pth")


@pytest.fixture(scope="session")
def classifier():
    from models.genderage import GenderAgeClassifier

    return GenderAgeClassifier.from_file(MODELS_DIR / "insightface_genderage_2018.pth")


@pytest.fixture(scope="session")
def full_size_analyzer():
    """FaceAnalyzer on CPU at the images' original size, the MANIFEST's threshold 0.8, with the
    InsightFace classifier whose results the MANIFEST lists."""
    from models.face_analyzer import FaceAnalyzer

    return FaceAnalyzer(weights_dir(), device="cpu", det_max_side=None, score_threshold=0.8, classifier="insightface")
