"""Batched NMS in torch against a plain greedy loop."""

from __future__ import annotations

import torch

from models.nms import batched_nms, box_iou, nms


def greedy(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> list[int]:
    """Textbook greedy NMS, one box at a time."""
    kept: list[int] = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        if all(groups[j] != groups[i] or box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= threshold for j in kept):
            kept.append(i)
    return kept


def random_boxes(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(count, 2, generator=generator) * 100 - 20  # some reach past the edge
    size = torch.rand(count, 2, generator=generator) * 40 + 5
    scores = torch.rand(count, generator=generator)
    groups = torch.randint(0, 3, (count,), generator=generator)
    return torch.cat([top_left, top_left + size], dim=1), scores, groups


def test_matches_greedy_loop() -> None:
    for seed in range(5):
        boxes, scores, groups = random_boxes(60, seed)
        for threshold in (0.3, 0.5):
            assert batched_nms(boxes, scores, groups, threshold).tolist() == greedy(boxes, scores, groups, threshold)


def test_groups_never_suppress_each_other() -> None:
    boxes = torch.tensor([[-10.0, -10.0, 20.0, 20.0]] * 3)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert sorted(batched_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.4).tolist()) == [0, 1, 2]
    assert nms(boxes, scores, 0.4).tolist() == [0]


def test_empty() -> None:
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.4).numel() == 0
