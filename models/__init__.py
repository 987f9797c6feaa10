"""Face models in PyTorch: detectors (RetinaFace, YuNet), alignment, gender/age, weights.

The entry point is ``models.face_analyzer.FaceAnalyzer`` (also importable as
``models.FaceAnalyzer``; loaded on first use so that importing a submodule stays cheap).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FaceAnalyzer", "FaceBatch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from models import face_analyzer

        return getattr(face_analyzer, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
