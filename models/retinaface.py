"""RetinaFace with a MobileNet-0.25 backbone: face boxes, scores and 5 landmarks.

Paper: Deng et al., "RetinaFace: Single-stage Dense Face Localisation in the Wild" (CVPR 2020).
Weights: ``retinaface_mobilenet0.25.pth`` from biubug6/Face-Detector-1MB-with-landmark (MIT),
trained on WIDER FACE; see ../shared/models/MANIFEST.md. This fork uses plain ReLU everywhere.

The network (``RetinaFace``) is a bare ``nn.Module`` returning raw head outputs; anchors,
decoding and NMS are named functions; ``RetinaFaceDetector`` chains them behind the
``models.detection.FaceDetector`` interface.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from models.detection import Detections, nms_per_image, top_candidates
from models.weights import MODELS

__all__ = ["RetinaFace", "RetinaFaceDetector", "anchors", "decode", "fold_batchnorm"]

log = logging.getLogger(__name__)

INPUT = MODELS["retinaface"].input  # colour order and normalisation

STEPS = (8, 16, 32)  # pixels per feature-map cell of each level
ANCHOR_SIZES = ((10, 20), (32, 64), (128, 256))  # pixels, per level
VARIANCES = (0.1, 0.2)  # SSD-style: centre offsets, log sizes
PRE_NMS_TOP_K = 5000  # highest-scoring anchors per image that go to NMS
NUM_LANDMARKS = 5


def conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU); checkpoint keys ``0.weight``, ``1.*``."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def conv_dw(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (keys ``0``, ``1``, ``3``, ``4``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride, padding=1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, 1, 1, padding=0, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 x0.25 in three stages: 64 ch at stride 8, 128 at 16, 256 at 32."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, stride=2),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *(conv_dw(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


class FPN(nn.Module):
    """3-level feature pyramid, 64 channels: 1x1 laterals, nearest upsampling + add, 3x3 merge."""

    def __init__(self, in_channels: tuple[int, int, int] = (64, 128, 256), out_ch: int = 64) -> None:
        super().__init__()
        self.output1 = conv_bn(in_channels[0], out_ch, kernel=1)
        self.output2 = conv_bn(in_channels[1], out_ch, kernel=1)
        self.output3 = conv_bn(in_channels[2], out_ch, kernel=1)
        self.merge1 = conv_bn(out_ch, out_ch)
        self.merge2 = conv_bn(out_ch, out_ch)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        out1 = self.output1(features[0])
        out2 = self.output2(features[1])
        out3 = self.output3(features[2])
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """SSH context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated.

    NOTE the mixed ``X``/``x`` spelling of the branch names is the checkpoint's.
    """

    def __init__(self, in_ch: int = 64, out_ch: int = 64) -> None:
        super().__init__()
        self.conv3X3 = conv_bn(in_ch, out_ch // 2, relu=False)
        self.conv5X5_1 = conv_bn(in_ch, out_ch // 4)
        self.conv5X5_2 = conv_bn(out_ch // 4, out_ch // 4, relu=False)
        self.conv7X7_2 = conv_bn(out_ch // 4, out_ch // 4)
        self.conv7x7_3 = conv_bn(out_ch // 4, out_ch // 4, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(x)
        mid = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(mid)
        branch7 = self.conv7x7_3(self.conv7X7_2(mid))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))


class Head(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor, reshaped to (N, H*W*anchors, values)."""

    def __init__(self, values: int, in_ch: int = 64, num_anchors: int = 2) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_ch, num_anchors * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """The network. ``forward`` takes (N, 3, H, W) mean-subtracted BGR and returns raw outputs:

    - loc (N, A, 4): box deltas,
    - conf (N, A, 2): class probabilities after softmax (column 1 = face),
    - landms (N, A, 10): landmark deltas,

    with A = 2 * sum over strides 8, 16, 32 of ceil(H/s) * ceil(W/s), anchors ordered level by
    level, row-major, then anchor size (see ``anchors``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNetV1()
        self.fpn = FPN()
        self.ssh1 = SSH()
        self.ssh2 = SSH()
        self.ssh3 = SSH()
        # NOTE capitalised names are the checkpoint's keys
        self.ClassHead = nn.ModuleList(Head(2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(Head(4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(Head(2 * NUM_LANDMARKS) for _ in STEPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(x))
        features = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landms = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return loc, logits.softmax(dim=-1), landms


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fold_batchnorm(net: ModuleT) -> ModuleT:
    """Fold every BatchNorm2d that follows a Conv2d in a Sequential into that conv (inference).

    The folded conv computes the same function with one pass less over the activations, and it
    makes float16 possible: ``body.stage1.0.1.running_var`` reaches 89549, beyond float16's
    65504, so an unfolded BN would divide by infinity in half precision. Changes the module's
    state_dict keys, so load the checkpoint first. Returns ``net``, changed in place.
    """
    for sequential in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(sequential, conv_name, _folded_conv(conv, bn))
                setattr(sequential, bn_name, nn.Identity())
    return net


@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    gamma, beta, mean, var = bn.weight, bn.bias, bn.running_mean, bn.running_var
    if gamma is None or beta is None or mean is None or var is None:
        raise ValueError(f"cannot fold {bn}: it needs affine parameters and running statistics")
    scale = gamma.double() / torch.sqrt(var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    # Conv2d keeps its 2-tuples typed as tuple[int, ...]
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, cast(tuple[int, int], conv.kernel_size),
        cast(tuple[int, int], conv.stride), cast("str | tuple[int, int]", conv.padding),
        groups=conv.groups, bias=True,
    )  # fmt: skip
    assert folded.bias is not None  # bias=True
    folded.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).float())
    folded.bias.copy_((beta.double() + (bias - mean.double()) * scale).float())
    return folded.to(conv.weight.device)


@functools.lru_cache(maxsize=16)
def _anchors_cpu(height: int, width: int) -> torch.Tensor:
    rows = []
    for step, sizes in zip(STEPS, ANCHOR_SIZES):
        fh, fw = -(-height // step), -(-width // step)  # ceil
        i, j = torch.meshgrid(
            torch.arange(fh, dtype=torch.float64), torch.arange(fw, dtype=torch.float64), indexing="ij"
        )
        cx = ((j + 0.5) * step / width).reshape(-1, 1).expand(-1, len(sizes))
        cy = ((i + 0.5) * step / height).reshape(-1, 1).expand(-1, len(sizes))
        sw = torch.tensor([s / width for s in sizes], dtype=torch.float64).expand_as(cx)
        sh = torch.tensor([s / height for s in sizes], dtype=torch.float64).expand_as(cy)
        rows.append(torch.stack([cx, cy, sw, sh], dim=-1).reshape(-1, 4))
    return torch.cat(rows).float()


_DEVICE_ANCHORS: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def anchors(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Prior boxes for an input of height x width pixels, cached per (size, device).

    Returns:
        (A, 4) float32 (cx, cy, w, h) normalised to the input size: for each level (steps
        8, 16, 32), each cell (i, j) of the ceil(H/step) x ceil(W/step) map in row-major order, each
        anchor size s of that level: ((j + 0.5) * step / W, (i + 0.5) * step / H, s / W, s / H).
    """
    key = (height, width, torch.device(device))
    if key not in _DEVICE_ANCHORS:
        if len(_DEVICE_ANCHORS) >= 32:
            _DEVICE_ANCHORS.clear()
        _DEVICE_ANCHORS[key] = _anchors_cpu(height, width).to(device)
    return _DEVICE_ANCHORS[key]


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """SSD decoding: (..., 4) deltas + (..., 4) priors (cx, cy, w, h) -> (..., 4) x1, y1, x2, y2
    in the priors' (normalised) units."""
    centre = priors[..., :2] + loc[..., :2] * VARIANCES[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(landms: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """(..., 10) deltas + (..., 4) priors -> (..., 5, 2) landmark x, y in normalised units."""
    deltas = landms.reshape(*landms.shape[:-1], NUM_LANDMARKS, 2)
    return priors[..., None, :2] + deltas * VARIANCES[0] * priors[..., None, 2:]


def decode(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    height: int,
    width: int,
    score_threshold: float,
    nms_threshold: float,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> Detections:
    """Turn raw outputs for a batch into flat detections in input pixels.

    Args:
        outputs: (loc, conf, landms) of ``RetinaFace.forward`` for an (N, 3, height, width) input.
        height, width: the network input size in pixels.
        score_threshold: keep anchors with face probability > this (0..1).
        nms_threshold: IoU above which a lower-scoring box of the same image is dropped.
        pre_nms_top_k: at most this many best anchors per image go to NMS (default 5000).

    Returns:
        Float32 Detections on the outputs' device, grouped by image, each image's faces by
        descending score; coordinates not clipped to the image.
    """
    loc, conf, landms = (t.float() for t in outputs)
    scores = conf[..., 1]  # (N, A)

    # Candidates: each image's top k anchors above the threshold
    image_index, anchor_index, cand_scores = top_candidates(scores, pre_nms_top_k, score_threshold)

    # Decode the candidates only, back to pixels
    priors = anchors(height, width, loc.device)[anchor_index]
    scale = torch.tensor([width, height], dtype=torch.float32, device=loc.device)
    boxes = decode_boxes(loc[image_index, anchor_index], priors) * scale.repeat(2)
    landmarks = decode_landmarks(landms[image_index, anchor_index], priors) * scale
    return nms_per_image(image_index, boxes, cand_scores, landmarks, nms_threshold)


class RetinaFaceDetector:
    """RetinaFace behind the FaceDetector interface (models.detection).

    Args:
        net: a RetinaFace with weights loaded; its device and dtype are the detector's
            (``from_file`` builds one from a checkpoint).

    Example::

        detector = RetinaFaceDetector.from_file("weights/retinaface_mobilenet0.25.pth")
        faces = detector.detect(images, score_threshold=0.8, nms_threshold=0.4)
    """

    name = "retinaface"

    def __init__(self, net: RetinaFace) -> None:
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
    ) -> RetinaFaceDetector:
        """Load ``weights_path`` strictly, checking its sha256 (default: the known hash of
        retinaface_mobilenet0.25.pth), fold the batch norms (``fold_batchnorm``), move to
        ``device`` (default "cpu"); ``half`` runs the network in float16 (default False)."""
        from models.weights import MODELS, load_weights

        net = RetinaFace()
        net.load_state_dict(load_weights(weights_path, sha256 or MODELS["retinaface"].sha256))
        net = fold_batchnorm(net.eval()).to(device)
        return cls(net.half() if half else net)

    @torch.inference_mode()
    def detect(self, images: torch.Tensor, score_threshold: float, nms_threshold: float) -> Detections:
        """Faces in a batch.

        Args:
            images: (N, 3, H, W) float BGR 0..255; any H, W.
            score_threshold: minimum face probability 0..1 (the MANIFEST used 0.8 for photos).
            nms_threshold: NMS IoU threshold (the MANIFEST used 0.4).

        Returns:
            Flat Detections on the detector's device, float32, in pixels of ``images``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W images, got shape {tuple(images.shape)}")
        batch = INPUT.normalise(images.to(self.device, self.dtype))
        batch = batch.contiguous(memory_format=torch.channels_last)  # the layout the frames arrive in
        outputs = self.net(batch)
        return decode(outputs, images.shape[2], images.shape[3], score_threshold, nms_threshold)
