"""Face alignment for the whole batch on the device, and a sharpness measure of the crops.

Each face's 5 landmarks are mapped onto the 112x112 ArcFace template by a least-squares
similarity transform (rotation + uniform scale + translation), solved in closed form for all
faces at once. All crops of a batch are then sampled in one ``grid_sample`` call from the
full-resolution frames, with ``cv2.warpAffine`` semantics (pixel centres at integer
coordinates, bilinear, black outside the frame).

The frames of the batch are read as one volume (1, C, N, H, W) and each face's grid carries its
frame index as the depth coordinate, so no frame is copied per face. ``warp_faces_multi`` samples
several crops per face (e.g. the 112 px ArcFace crop and the Cydral nets' 64 px chip) in that one
``grid_sample`` call, with their sample points laid end to end; ``oversample`` then lets a chip be
sampled at f x its size and box-filtered down, which keeps small chips of large faces from
aliasing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ARCFACE_TEMPLATE",
    "chip_windows",
    "warp_each",
    "CROP_SIZE",
    "similarity_transform",
    "invert_affine",
    "warp_faces",
    "warp_faces_multi",
    "oversample",
    "sharpness",
]

CROP_SIZE = 112  # pixels, square
# x, y in crop pixels: image-left eye, image-right eye, nose tip, left and right mouth corner
ARCFACE_TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
GREY_WEIGHTS_BGR = (0.114, 0.587, 0.299)  # ITU-R BT.601 luma


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms taking ``src`` points onto ``dst`` points.

    Args:
        src: (K, P, 2) points, e.g. landmarks in frame pixels.
        dst: (P, 2) or (K, P, 2) target points, e.g. the template in crop pixels.

    Returns:
        (K, 2, 3) float32 matrices M = [[a, -b, tx], [b, a, ty]] minimising
        sum |M [x, y, 1]^T - dst|^2 (a, b unconstrained: scale sqrt(a^2 + b^2), no reflection).
    """
    src = src.float()
    dst = dst.to(src).expand_as(src)
    src_mean, dst_mean = src.mean(dim=1, keepdim=True), dst.mean(dim=1, keepdim=True)
    p, q = src - src_mean, dst - dst_mean
    norm = (p**2).sum(dim=(1, 2)).clamp(min=1e-12)
    a = (p * q).sum(dim=(1, 2)) / norm
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(dim=1) / norm
    rotation = torch.stack([torch.stack([a, -b], dim=1), torch.stack([b, a], dim=1)], dim=1)  # (K, 2, 2)
    translation = dst_mean[:, 0] - (rotation @ src_mean[:, 0, :, None])[..., 0]
    return torch.cat([rotation, translation[..., None]], dim=2)


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """(K, 2, 3) affine matrices -> their inverses, (K, 2, 3)."""
    linear_inv = torch.linalg.inv(matrices[:, :, :2])
    return torch.cat([linear_inv, -(linear_inv @ matrices[:, :, 2:])], dim=2)


def _pixel_to_norm(width: int, height: int, device: torch.device) -> torch.Tensor:
    """3x3 map from pixel coordinates (centres at integers) to grid_sample's
    align_corners=True coordinates (-1 and 1 at the centres of the first and last pixel)."""
    sx, sy = 2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)
    return torch.tensor([[sx, 0.0, -1.0], [0.0, sy, -1.0], [0.0, 0.0, 1.0]], device=device)


def oversample(matrices: torch.Tensor, factor: int) -> torch.Tensor:
    """(K, 2, 3) frame -> crop pixel maps for a crop of side S -> maps for the same crop sampled
    at side ``factor`` x S: fine pixel u covers crop pixel (u + 0.5) / factor - 0.5, so averaging
    each ``factor`` x ``factor`` block (``F.avg_pool2d``) gives back the S-pixel crop."""
    shift = (factor - 1) / 2.0
    scaled = matrices.float() * factor
    scaled[:, :, 2] += shift
    return scaled


def _crop_grid(matrices: torch.Tensor, size: int, width: int, height: int) -> torch.Tensor:
    """(K, size, size, 2) sample points in grid_sample's align_corners=True coordinates of a
    width x height frame, for crops whose frame -> crop pixel maps are ``matrices``."""
    faces, device = matrices.shape[0], matrices.device
    inverse = invert_affine(matrices.float())  # crop pixel -> frame pixel
    bottom = torch.tensor([0.0, 0.0, 1.0], device=device).expand(faces, 1, 3)
    inverse_3x3 = torch.cat([inverse, bottom], dim=1)
    norm_to_crop = torch.linalg.inv(_pixel_to_norm(size, size, device))
    theta = (_pixel_to_norm(width, height, device) @ inverse_3x3 @ norm_to_crop)[:, :2]
    return F.affine_grid(theta, [faces, 1, size, size], align_corners=True)


def warp_each(images: torch.Tensor, matrices: torch.Tensor, size: int) -> torch.Tensor:
    """(K, C, size, size) crops, crop k from image k of (K, C, H, W) float32 ``images`` (its own
    window of a frame), bilinear, zeros outside: ``warp_faces_multi``'s arithmetic in a 2-D
    ``grid_sample`` (the same values; the 3-D volume it needs for several crops per frame took
    20 times as long for 9 chips on CPU)."""
    grid = _crop_grid(matrices, size, images.shape[3], images.shape[2])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def chip_windows(matrices: torch.Tensor, size: int, width: int, height: int) -> np.ndarray:
    """(K, 4) int64 x0, y0, x1, y1 (exclusive) of the frame pixels each crop's bilinear samples
    read: the bounding box of its sample points (``matrices``: frame -> crop pixel maps, crop of
    side ``size``) grown by a pixel for the bilinear neighbours, clipped to the width x height
    frame; at least one pixel wide and high. A crop sampled from its window, zeros beyond it, is the
    crop sampled from the whole frame."""
    inverse = invert_affine(matrices.float()).double().cpu()  # crop pixel -> frame pixel
    corners = torch.tensor([[0.0, 0.0, 1.0], [size - 1, 0.0, 1.0], [0.0, size - 1, 1.0], [size - 1, size - 1, 1.0]])
    points = torch.einsum("kij,cj->kci", inverse, corners.double())  # (K, 4, 2)
    low = torch.floor(points.min(dim=1).values) - 1
    high = torch.ceil(points.max(dim=1).values) + 2
    limits = torch.tensor([width, height], dtype=torch.float64)
    low = torch.minimum(torch.clamp(low, min=0), limits - 1)
    high = torch.maximum(torch.minimum(high, limits), low + 1)
    return torch.cat([low, high], dim=1).long().numpy()


def warp_faces_multi(
    frames: torch.Tensor,
    image_index: torch.Tensor,
    crops: list[tuple[torch.Tensor, int]],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sample several aligned crops of every face from the frames in one ``grid_sample``.

    Args:
        frames: (N, C, H, W) float32 frames (any channel order, values kept as they are).
        image_index: (K,) int64, frame of each face.
        crops: per kind of crop, (matrices, size): (K, 2, 3) maps frame pixels -> crop pixels (as
            for ``cv2.warpAffine``) and the crop side in pixels.

    Returns:
        Per kind of crop, in order:
            crops: (K, C, size, size) float32, bilinear, zeros outside the frame.
            inside: (K, size, size) bool, True where the sample point lies within the frame (pixel
                centres 0..W-1, 0..H-1), i.e. not filled with the black border.
    """
    num_frames, channels, height, width = frames.shape
    faces = image_index.shape[0]
    device = frames.device
    if faces == 0:
        return [
            (frames.new_zeros(0, channels, size, size), torch.zeros(0, size, size, dtype=torch.bool, device=device))
            for _, size in crops
        ]
    grids = [_crop_grid(matrices, size, width, height) for matrices, size in crops]
    points = torch.cat([grid.reshape(faces, -1, 2) for grid in grids], dim=1)  # (K, P, 2)

    # Depth coordinate picks the frame: index i sits exactly on depth sample i
    if num_frames > 1:
        z = image_index.float() * (2.0 / (num_frames - 1)) - 1.0
    else:
        z = torch.zeros(faces, device=device)  # a depth of one sample: any z reads it
    points_3d = torch.cat([points, z.view(faces, 1, 1).expand(faces, points.shape[1], 1)], dim=2)
    volume = frames.float().permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, N, H, W), a view
    samples = F.grid_sample(
        volume, points_3d[None, :, None], mode="bilinear", padding_mode="zeros", align_corners=True
    )[0].permute(1, 0, 2, 3)  # (K, C, 1, P)

    results, start = [], 0
    tolerance = 1e-3  # pixels, for rounding in the normalised coordinates
    for grid, (_, size) in zip(grids, crops):
        crop = samples[:, :, 0, start : start + size * size].reshape(faces, channels, size, size)
        start += size * size
        # Sample points in frame pixels, to tell the black border from the frame
        pixel_x = (grid[..., 0] + 1) * (width - 1) / 2
        pixel_y = (grid[..., 1] + 1) * (height - 1) / 2
        inside = (
            (pixel_x >= -tolerance)
            & (pixel_x <= width - 1 + tolerance)
            & (pixel_y >= -tolerance)
            & (pixel_y <= height - 1 + tolerance)
        )
        results.append((crop, inside))
    return results


def warp_faces(
    frames: torch.Tensor,
    image_index: torch.Tensor,
    matrices: torch.Tensor,
    size: int = CROP_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every face's aligned crop from the frames in one ``grid_sample`` (``warp_faces_multi``
    with one kind of crop).

    Args:
        frames: (N, C, H, W) float32 frames (any channel order, values kept as they are).
        image_index: (K,) int64, frame of each face.
        matrices: (K, 2, 3) maps frame pixels -> crop pixels (as for ``cv2.warpAffine``).
        size: crop side in pixels (default 112).

    Returns:
        crops: (K, C, size, size) float32, bilinear, zeros outside the frame.
        inside: (K, size, size) bool, True where the sample point lies within the frame.
    """
    return warp_faces_multi(frames, image_index, [(matrices, size)])[0]


def sharpness(crops_bgr: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
    """Variance of the Laplacian of each grey crop: low for blurred faces.

    Args:
        crops_bgr: (K, 3, S, S) float BGR 0..255.
        inside: optional (K, S, S) bool mask of pixels within the frame; the Laplacian is only
            counted where its whole 3x3 neighbourhood is inside, so the black border of a face
            at the frame edge does not count as detail.

    Returns:
        (K,) float32, in (grey levels)^2; 0 where no pixel qualifies.
    """
    crops = crops_bgr.float()
    if crops.shape[0] == 0:
        return crops.new_zeros(0)
    weights = torch.tensor(GREY_WEIGHTS_BGR, device=crops.device).view(1, 3, 1, 1)
    grey = (crops * weights).sum(dim=1, keepdim=True)
    kernel = torch.tensor(LAPLACIAN, device=crops.device).view(1, 1, 3, 3)
    response = F.conv2d(grey, kernel)[:, 0]  # (K, S-2, S-2), valid positions only
    if inside is None:
        valid = torch.ones_like(response, dtype=torch.bool)
    else:
        valid = -F.max_pool2d(-(inside.float()[:, None]), 3, stride=1)[:, 0] > 0.5  # eroded 3x3
    count = valid.sum(dim=(1, 2)).clamp(min=1)
    mean = (response * valid).sum(dim=(1, 2)) / count
    variance = (((response - mean[:, None, None]) ** 2) * valid).sum(dim=(1, 2)) / count
    return variance
