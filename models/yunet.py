"""YuNet-n face detector (libfacedetection.train), ported to plain PyTorch.

Source of the weights: github.com/ShiqiYu/libfacedetection.train, ``weights/yunet_n.pth``
(an MMDetection checkpoint, Apache-2.0; see ../shared/models/MANIFEST.md section 2). The
architecture below was read from that checkpoint's config and from the graph of the ONNX
export of the same network (``onnx/yunet_n_dynamic.onnx``), against whose outputs the port is
tested (tests/models/test_yunet.py).

Network (all convolutions carry a bias; "DP unit" = 1x1 conv -> depthwise 3x3 conv, then,
except in the prediction heads, BatchNorm + ReLU):

- backbone: ``model0`` = 3x3 stride-2 conv + BN + ReLU, then a DP unit; ``model1..5`` = two DP
  units each; 2x2 max-pool after model0, model2, model3 and model4. model3, model4 and model5
  give 64-channel features at strides 8, 16 and 32.
- neck (top-down FPN): P32 = lateral2(C32); P16 = lateral1(C16 + up2(P32));
  P8 = lateral0(C8 + up2(P16)); ``up2`` is nearest-neighbour upsampling by 2.
- head, per level: one shared DP unit, then four DP units without BN/ReLU: cls (1, sigmoid),
  bbox (4), obj (1, sigmoid), kps (10), each flattened to (N, H*W, C), row-major over cells.

Input: N x 3 x H x W, BGR, float 0..255, no mean/std, H and W multiples of 32.
Decoding (``decode``): score = sqrt(cls * obj); for the cell in row r, column c at stride s,
box centre ((c + dx) * s, (r + dy) * s), size (exp(dw) * s, exp(dh) * s), landmark k at
((c + kps[2k]) * s, (r + kps[2k + 1]) * s).

Example::

    detector = YuNetDetector.from_file("yunet_n.pth", device="cuda", half=True)
    faces = detector.detect(frames_bgr_float, score_threshold=0.6, nms_threshold=0.3)
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from models.detection import Detections, nms_per_image, top_candidates
from models.errors import WeightsError

__all__ = [
    "OUTPUT_NAMES",
    "STRIDES",
    "YuNet",
    "YuNetDetector",
    "decode",
    "load_yunet",
    "pad_to_multiple",
]

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)  # pixels per grid cell of the three output levels
PAD_MULTIPLE = 32  # input height and width must be multiples of the largest stride
CHANNELS = 64  # feature channels of the neck and head
NUM_LANDMARKS = 5
BN_EPS = 1e-5  # MMCV/PyTorch default; the ONNX export's folded weights agree with it
PRE_NMS_TOP_K = 5000  # candidates per image kept before NMS (cv2.FaceDetectorYN's default)

# Raw outputs in the order of the ONNX export (and of YuNet.forward).
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES)


class ConvDPUnit(nn.Module):
    """1x1 conv then depthwise 3x3 conv (both with bias), optionally BatchNorm + ReLU.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, with_bn_relu: bool = True) -> None:
        super().__init__()
        # NOTE names conv1 / conv2 / bn are the checkpoint's keys.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS) if with_bn_relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        if self.bn is not None:
            x = F.relu(self.bn(x))
        return x


class ConvHead(nn.Module):
    """Stem: 3x3 stride-2 conv + BN + ReLU, then a DP unit. (N, 3, H, W) -> (N, out, H/2, W/2)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(mid_channels, eps=BN_EPS)
        self.conv2 = ConvDPUnit(mid_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.conv2(F.relu(self.bn1(self.conv1(x)))))


class DPStage(nn.Module):
    """Two DP units. (N, in, H, W) -> (N, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvDPUnit(in_channels, in_channels)
        self.conv2 = ConvDPUnit(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.conv2(self.conv1(x)))


class YuNetBackbone(nn.Module):
    """Six stages; returns the features of model3/4/5, (N, 64, H/s, W/s) for s = 8, 16, 32."""

    POOL_AFTER = (0, 2, 3, 4)  # stages followed by a 2x2 max-pool

    def __init__(self) -> None:
        super().__init__()
        self.model0 = ConvHead(3, 16, 16)
        self.model1 = DPStage(16, 64)
        self.model2 = DPStage(64, 64)
        self.model3 = DPStage(64, 64)
        self.model4 = DPStage(64, 64)
        self.model5 = DPStage(64, 64)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = (self.model0, self.model1, self.model2, self.model3, self.model4, self.model5)
        features = []
        for index, stage in enumerate(stages):
            x = stage(x)
            if index >= 3:
                features.append(x)
            if index in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return features


class YuNetNeck(nn.Module):
    """Top-down FPN: nearest x2 upsampling, add, DP unit. Same shapes in and out."""

    def __init__(self) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvDPUnit(CHANNELS, CHANNELS) for _ in STRIDES)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.lateral_convs[-1](features[-1])
        outputs = [x]
        for level in range(len(features) - 2, -1, -1):
            x = features[level] + F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.lateral_convs[level](x)
            outputs.insert(0, x)
        return outputs


class YuNetHead(nn.Module):
    """Per level: a shared DP unit, then cls / bbox / obj / kps DP units (no BN, no ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        levels = range(len(STRIDES))
        # NOTE the inner ModuleList gives the checkpoint's `multi_level_share_convs.L.0.*` keys.
        self.multi_level_share_convs = nn.ModuleList(nn.ModuleList([ConvDPUnit(CHANNELS, CHANNELS)]) for _ in levels)
        self.multi_level_cls = nn.ModuleList(ConvDPUnit(CHANNELS, 1, False) for _ in levels)
        self.multi_level_bbox = nn.ModuleList(ConvDPUnit(CHANNELS, 4, False) for _ in levels)
        self.multi_level_obj = nn.ModuleList(ConvDPUnit(CHANNELS, 1, False) for _ in levels)
        self.multi_level_kps = nn.ModuleList(ConvDPUnit(CHANNELS, 2 * NUM_LANDMARKS, False) for _ in levels)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        cls, obj, bbox, kps = [], [], [], []
        for level, x in enumerate(features):
            for unit in cast(nn.ModuleList, self.multi_level_share_convs[level]):
                x = unit(x)
            cls.append(_flatten(self.multi_level_cls[level](x)).sigmoid())
            obj.append(_flatten(self.multi_level_obj[level](x)).sigmoid())
            bbox.append(_flatten(self.multi_level_bbox[level](x)))
            kps.append(_flatten(self.multi_level_kps[level](x)))
        return (*cls, *obj, *bbox, *kps)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W, C), cells row-major."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class YuNet(nn.Module):
    """The bare YuNet-n network.

    forward: (N, 3, H, W) BGR float 0..255, H and W multiples of 32 -> 12 tensors in
    ``OUTPUT_NAMES`` order: cls_s (N, n_s, 1) and obj_s (N, n_s, 1) as probabilities,
    bbox_s (N, n_s, 4) and kps_s (N, n_s, 10) raw, with n_s = (H/s) * (W/s), s = 8, 16, 32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = YuNetBackbone()
        self.neck = YuNetNeck()
        self.bbox_head = YuNetHead()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return cast(tuple[torch.Tensor, ...], self.bbox_head(self.neck(self.backbone(images))))


def load_yunet(weights_path: str | Path) -> YuNet:
    """YuNet-n with the MMDetection checkpoint at ``weights_path`` loaded strictly, on CPU, eval.

    The checkpoint is a dict whose ``state_dict`` keys (``backbone.*``, ``neck.*``,
    ``bbox_head.*``) are this module's names. Raises WeightsError (one line) when the file is
    missing, unreadable or does not fit the network.
    """
    path = Path(weights_path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"YuNet weights {path}: file not found") from exc
    except Exception as exc:  # torch.load raises many types for a corrupt file
        raise WeightsError(f"YuNet weights {path}: cannot be read ({exc})") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise WeightsError(f"YuNet weights {path}: not an MMDetection checkpoint (no state_dict)")
    net = YuNet()
    try:
        net.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise WeightsError(f"YuNet weights {path}: do not fit YuNet-n ({first_line})") from exc
    log.debug("YuNet weights %s loaded", path)
    return net.eval()


@functools.lru_cache(maxsize=32)
def _grid(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells of all levels for an input of height x width pixels (multiples of 32).

    Returns:
        Cells (A, 2) float32 as (column, row) and strides (A, 1) float32, in the order of
        the concatenated head outputs (level by level, row-major), A = sum of (H/s) * (W/s).
    """
    cells, strides = [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        cells.append(torch.stack((c.reshape(-1), r.reshape(-1)), dim=1))
        strides.append(torch.full((rows * cols, 1), stride))
    return torch.cat(cells).float().to(device), torch.cat(strides).float().to(device)


def decode(
    outputs: tuple[torch.Tensor, ...],
    height: int,
    width: int,
    score_threshold: float,
    nms_threshold: float,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> Detections:
    """Turn YuNet's raw outputs for a batch into flat, NMS-filtered detections.

    Args:
        outputs: the 12 tensors of ``YuNet.forward`` for an input of (N, 3, height, width).
        height, width: the network input size in pixels (multiples of 32).
        score_threshold: keep cells with score >= this, score = sqrt(cls * obj) in 0..1.
        nms_threshold: IoU above which a lower-scoring box of the same image is dropped.
        pre_nms_top_k: at most this many highest-scoring cells per image go to NMS
            (default 5000).

    Returns:
        Detections (float32, on the outputs' device), grouped by image, each image's faces
        by descending score; coordinates in input pixels, not clipped to the image.
    """
    n = len(STRIDES)
    cls, obj, bbox, kps = (torch.cat(outputs[i * n : (i + 1) * n], dim=1).float() for i in range(4))
    scores = (cls.clamp(0, 1) * obj.clamp(0, 1)).sqrt().squeeze(2)  # (N, A)

    # Candidates: each image's top k cells, then the score threshold
    image_index, cell_index, cand_scores = top_candidates(scores, pre_nms_top_k, score_threshold, inclusive=True)

    # Decode boxes and landmarks of the candidates only
    cells, strides = _grid(height, width, scores.device)
    cell, stride = cells[cell_index], strides[cell_index]
    deltas = bbox[image_index, cell_index]
    centre = (cell + deltas[:, :2]) * stride
    half_size = deltas[:, 2:].exp() * stride / 2
    boxes = torch.cat((centre - half_size, centre + half_size), dim=1)
    landmarks = cell[:, None, :] + kps[image_index, cell_index].view(-1, NUM_LANDMARKS, 2)
    landmarks = landmarks * stride[:, None, :]
    return nms_per_image(image_index, boxes, cand_scores, landmarks, nms_threshold)


def pad_to_multiple(images: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Zero-pad (N, C, H, W) at the bottom and right to H and W multiples of ``multiple``."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h))


class YuNetDetector:
    """YuNet-n behind the FaceDetector interface (models.detection).

    Args:
        net: a loaded YuNet in eval mode; its device and dtype are the detector's (use
            ``from_file`` to build one from a checkpoint).

    Example::

        detector = YuNetDetector.from_file(path, device="cpu")
        faces = detector.detect(images, score_threshold=0.6, nms_threshold=0.3)
    """

    name = "yunet"

    def __init__(self, net: YuNet) -> None:
        self.net = net.eval()
        parameter = next(net.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @classmethod
    def from_file(
        cls,
        weights_path: str | Path,
        device: str | torch.device = "cpu",
        half: bool = False,
        sha256: str | None = None,
    ) -> YuNetDetector:
        """Load ``weights_path`` (yunet_n.pth), checking its sha256 (default: the known hash of
        yunet_n.pth), onto ``device``; ``half`` runs the network in float16 (CUDA in practice)."""
        from models.weights import MODELS, verify_file

        net = load_yunet(verify_file(weights_path, sha256 or MODELS["yunet"].sha256)).to(device)
        return cls(net.half() if half else net)

    @torch.inference_mode()
    def detect(self, images: torch.Tensor, score_threshold: float, nms_threshold: float) -> Detections:
        """Faces in a batch.

        Args:
            images: (N, 3, H, W) float BGR 0..255 on any device; any H, W (padded internally
                with zeros at the bottom and right to multiples of 32).
            score_threshold: minimum face score 0..1 (0.6 reproduces the MANIFEST's results).
            nms_threshold: NMS IoU threshold (the MANIFEST used 0.3).

        Returns:
            Flat Detections on the detector's device, float32, in pixels of ``images``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W images, got shape {tuple(images.shape)}")
        batch = pad_to_multiple(images.to(self.device, self.dtype))
        outputs = self.net(batch)
        return decode(outputs, batch.shape[2], batch.shape[3], score_threshold, nms_threshold)
