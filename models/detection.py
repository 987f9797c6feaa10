"""What every face detector returns, and the interface they share.

Detections are flat over a batch (one row per face, ``image_index`` says which image), so a
whole batch of frames moves through NMS, alignment and classification without a Python loop
per frame or per face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Detections:
    """Faces found in a batch of images; all tensors live on the detector's device.

    image_index: (K,) int64, index of the image in the batch.
    boxes: (K, 4) float, x1, y1, x2, y2 in pixels of the detector's input.
    scores: (K,) float, face confidence 0-1.
    landmarks: (K, 5, 2) float, x, y in pixels: left eye, right eye, nose, left and right
        mouth corner (left/right as seen in the image).
    """

    image_index: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def scaled(self, sx: torch.Tensor | float, sy: torch.Tensor | float) -> "Detections":
        """The same detections with coordinates multiplied by (sx, sy), e.g. back to source pixels."""
        scale = torch.as_tensor([sx, sy], dtype=self.boxes.dtype, device=self.boxes.device)
        return Detections(
            image_index=self.image_index,
            boxes=self.boxes * scale.repeat(2),
            scores=self.scores,
            landmarks=self.landmarks * scale,
        )


class FaceDetector(Protocol):
    """A detector: takes an N x 3 x H x W BGR batch with values 0-255, returns flat Detections."""

    name: str

    def detect(
        self, images: torch.Tensor, score_threshold: float, nms_threshold: float
    ) -> Detections: ...
