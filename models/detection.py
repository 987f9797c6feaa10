"""What every face detector returns, and the interface they share.

Detections are flat over a batch (one row per face, ``image_index`` says which image), so a
whole batch of frames moves through NMS, alignment and classification without a Python loop
per frame or per face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from models.nms import batched_nms


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

    def scaled(self, sx: torch.Tensor | float, sy: torch.Tensor | float) -> Detections:
        """The same detections with coordinates multiplied by (sx, sy), e.g. back to source pixels."""
        scale = torch.as_tensor([sx, sy], dtype=self.boxes.dtype, device=self.boxes.device)
        return Detections(
            image_index=self.image_index,
            boxes=self.boxes * scale.repeat(2),
            scores=self.scores,
            landmarks=self.landmarks * scale,
        )


def top_candidates(
    scores: torch.Tensor, top_k: int, threshold: float, inclusive: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image's ``top_k`` best positions whose score passes ``threshold``.

    scores: (N, A) per image and anchor/cell. Returns flat (image_index, position, score), so
    that only these candidates are decoded.
    """
    top_scores, top_position = scores.topk(min(top_k, scores.shape[1]), dim=1)
    passing = top_scores >= threshold if inclusive else top_scores > threshold
    image_index, rank = passing.nonzero(as_tuple=True)
    return image_index, top_position[image_index, rank], top_scores[image_index, rank]


def nms_per_image(
    image_index: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    landmarks: torch.Tensor,
    nms_threshold: float,
) -> Detections:
    """NMS within each image, then the survivors grouped by image, each image's by score."""
    keep = batched_nms(boxes, scores, image_index, nms_threshold)
    keep = keep[image_index[keep].sort(stable=True).indices]
    return Detections(image_index=image_index[keep], boxes=boxes[keep], scores=scores[keep], landmarks=landmarks[keep])


class FaceDetector(Protocol):
    """A detector: takes an N x 3 x H x W BGR batch with values 0-255, returns flat Detections."""

    name: str
    net: nn.Module  # the wrapped network (load_detector stores its weights channels-last)

    def detect(self, images: torch.Tensor, score_threshold: float, nms_threshold: float) -> Detections: ...
