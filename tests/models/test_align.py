"""Batched alignment against the reference matrices and cv2.warpAffine crops; sharpness."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from models.align import ARCFACE_TEMPLATE, invert_affine, sharpness, similarity_transform, warp_faces
from tests.models.conftest import read_bgr

# reference rows per image (reference/README.md)
ROWS = {
    "obama.jpg": [0],
    "biden.jpg": [1, 2],
    "two_people.jpg": [3, 4],
    "insightface_t1.jpg": [5, 6, 7, 8, 9, 10],
    "facenet_pytorch_multiface.jpg": [11, 12, 13, 14, 15, 16],
}
MATRIX_TOLERANCE = 1e-3  # translation reaches hundreds of pixels; float32
CROP_MEAN_TOLERANCE = 0.35  # grey levels; cv2 rounds to uint8 and to 1/32 px
CROP_MAX_TOLERANCE = 1.0


def template() -> torch.Tensor:
    return torch.tensor(ARCFACE_TEMPLATE)


def test_matrices_match_reference(genderage_reference) -> None:
    landmarks = torch.from_numpy(genderage_reference["landmarks"])
    matrices = similarity_transform(landmarks, template())
    assert np.abs(matrices.numpy() - genderage_reference["affine"]).max() < MATRIX_TOLERANCE


def test_exact_similarity_is_recovered() -> None:
    angle, scale, shift = 0.3, 2.5, torch.tensor([10.0, -4.0])
    rotation = scale * torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]).float()
    src = torch.randn(4, 5, 2) * 20
    dst = src @ rotation.T + shift
    matrices = similarity_transform(src, dst)
    torch.testing.assert_close(matrices[:, :, :2], rotation.expand(4, 2, 2), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(matrices[:, :, 2], shift.expand(4, 2), atol=1e-3, rtol=1e-4)
    round_trip = invert_affine(matrices)[:, :, :2] @ matrices[:, :, :2]
    torch.testing.assert_close(round_trip, torch.eye(2).expand(4, 2, 2), atol=1e-5, rtol=1e-5)


def test_crops_match_cv2_reference_in_one_batch(genderage_reference) -> None:
    """All 17 faces of five differently sized images, sampled in one call from one padded batch."""
    names = list(ROWS)
    images = [read_bgr(name) for name in names]
    height, width = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    frames = torch.zeros(len(images), 3, height, width)
    for index, image in enumerate(images):
        frames[index, :, : image.shape[0], : image.shape[1]] = torch.from_numpy(image).permute(2, 0, 1).float()
    rows = [row for name in names for row in ROWS[name]]
    image_index = torch.tensor([index for index, name in enumerate(names) for _ in ROWS[name]])
    matrices = torch.from_numpy(genderage_reference["affine"][rows]).float()

    crops, inside = warp_faces(frames, image_index, matrices)

    expected = torch.from_numpy(genderage_reference["crops_rgb_uint8"][rows]).permute(0, 3, 1, 2).float()
    difference = (crops[:, [2, 1, 0]] - expected).abs()
    assert difference.mean() < CROP_MEAN_TOLERANCE
    assert difference.max() <= CROP_MAX_TOLERANCE
    assert inside.shape == (17, 112, 112)


def test_black_border_and_inside_mask_match_cv2() -> None:
    """A face half outside the frame: zeros there, as cv2.warpAffine with a constant border."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    matrix = np.array([[1.3, 0.2, 40.0], [-0.2, 1.3, 30.0]])  # frame px -> crop px
    expected = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)
    frames = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    crops, inside = warp_faces(frames, torch.zeros(1, dtype=torch.long), torch.from_numpy(matrix)[None].float())
    actual = crops[0].permute(1, 2, 0).numpy()
    assert np.abs(actual - expected).max() <= CROP_MAX_TOLERANCE
    assert 0.1 < inside.float().mean() < 0.9
    far_outside = ~torch.from_numpy(cv2.dilate(inside[0].numpy().astype(np.uint8), np.ones((5, 5))) > 0)
    assert (crops[0][:, far_outside] == 0).all()


def test_single_frame_and_batch_agree(genderage_reference) -> None:
    image = torch.from_numpy(read_bgr("obama.jpg")).permute(2, 0, 1)[None].float()
    matrix = torch.from_numpy(genderage_reference["affine"][:1]).float()
    alone, _ = warp_faces(image, torch.tensor([0]), matrix)
    batch = torch.cat([image * 0.5, image, image * 0.25])
    in_batch, _ = warp_faces(batch, torch.tensor([1]), matrix)
    assert (alone - in_batch).abs().max() < 1e-2


def test_sharpness_drops_when_blurred(genderage_reference) -> None:
    crops = torch.from_numpy(genderage_reference["crops_rgb_uint8"][:4]).permute(0, 3, 1, 2).float()[:, [2, 1, 0]]
    blurred = (
        torch.from_numpy(
            np.stack([cv2.GaussianBlur(c, (0, 0), 2.0) for c in genderage_reference["crops_rgb_uint8"][:4]])
        )
        .permute(0, 3, 1, 2)
        .float()[:, [2, 1, 0]]
    )
    sharp_values, blurred_values = sharpness(crops), sharpness(blurred)
    assert sharp_values.shape == (4,)
    assert (blurred_values < sharp_values / 4).all()


def test_sharpness_ignores_the_black_border() -> None:
    flat = torch.full((1, 3, 112, 112), 128.0)
    inside = torch.ones(1, 112, 112, dtype=torch.bool)
    flat[:, :, :, 80:] = 0.0  # border left by a face at the frame's edge
    inside[:, :, 80:] = False
    assert sharpness(flat, inside).item() == 0.0
    assert sharpness(flat).item() > 0.0


def test_no_faces() -> None:
    crops, inside = warp_faces(torch.zeros(2, 3, 50, 50), torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, 3))
    assert crops.shape == (0, 3, 112, 112) and inside.shape == (0, 112, 112)
    assert sharpness(crops, inside).shape == (0,)
