"""Face chips degraded the way video degrades faces: smaller, blurred, compressed.

A photo chip (UTKFace's 200 px, FairFace's 224 px) shows a face far larger and sharper than most
faces in a video frame. ``degrade`` shrinks the chip so that its face is about ``face_px``
pixels (measured on the clean chip by our own detector), blurs it (lens, focus and motion),
pads it with its own border to a square of CANVAS_FACES face sizes, so that the detector sees
some context (a face filling the image is not what it was trained on) and all chips of a level
share one shape (one batch), and passes it through JPEG (block artefacts like a video codec's).
The chip is never scaled back up: the face the detector and classifier see has the pixels a
small face in a frame has, so per-face quality measures (size, sharpness) mean what they mean
on video.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Degradation", "VIDEO_LEVELS", "degrade"]

CANVAS_FACES = 3.2  # side of the degraded image, in face sizes: every chip of a level has one shape


@dataclass(frozen=True)
class Degradation:
    """One level: target face size (px), Gaussian blur sigma (px, after shrinking), JPEG quality."""

    name: str
    face_px: float
    blur_sigma: float
    jpeg_quality: int


# From a large, fairly sharp video face to the smallest one the worker judges (ANALYZER_MIN_FACE_PX)
VIDEO_LEVELS = (
    Degradation("video-80", 80.0, 0.6, 70),
    Degradation("video-56", 56.0, 0.8, 60),
    Degradation("video-40", 40.0, 1.0, 50),
)


def degrade(image: np.ndarray, clean_face_px: float, level: Degradation) -> np.ndarray:
    """The BGR chip ``image`` as a video would show it at ``level`` (see the module docstring).

    clean_face_px: the face's size in the clean chip (px, FaceBatch.face_px); a face already
    smaller than the level's size is not shrunk.
    """
    scale = min(1.0, level.face_px / max(clean_face_px, 1.0))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    if level.blur_sigma > 0:
        small = cv2.GaussianBlur(small, (0, 0), level.blur_sigma)
    side = max(round(CANVAS_FACES * level.face_px), *small.shape[:2])
    top, left = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    bottom, right = side - small.shape[0] - top, side - small.shape[1] - left
    padded = cv2.copyMakeBorder(small, top, bottom, left, right, cv2.BORDER_REPLICATE)
    ok, encoded = cv2.imencode(".jpg", padded, [cv2.IMWRITE_JPEG_QUALITY, level.jpeg_quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)
