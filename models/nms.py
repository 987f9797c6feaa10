"""Non-maximum suppression in plain torch (no torchvision), batched over images."""

from __future__ import annotations

import torch


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in ``a`` (M, 4) with every box in ``b`` (N, 4), x1y1x2y2 -> (M, N)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; returns indices of the kept boxes, highest score first."""
    groups = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
    return batched_nms(boxes, scores, groups, iou_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS within each group (e.g. image of a batch) in one call; returns the kept
    indices, highest score first (ties in input order).

    Boxes of different groups never suppress each other: the overlap matrix is masked by
    "same group", so a box's fate does not depend on the rest of the batch (batch invariance).

    Greedy NMS keeps box j iff no kept, higher-scoring box overlaps it by more than the
    threshold. That rule has exactly one fixed point, so instead of one host round trip per
    box we iterate ``keep = not any(kept & overlaps)`` on the device until it stops changing
    (at most K rounds, in practice a handful).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    ordered = boxes[order].float()
    same_group = groups[order][:, None] == groups[order][None, :]
    overlaps = (box_iou(ordered, ordered) > iou_threshold) & same_group
    suppresses = torch.triu(overlaps, diagonal=1)  # [i, j]: i outranks and overlaps j
    keep = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    for _ in range(len(order)):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]
