"""InsightFace gender-age network (2018): gender and age from a 112x112 aligned face.

Source: deepinsight/insightface, commit eda10e8f ("new gender-age model", 2018-10-28), an MXNet
graph (MobileNet-like, about 1 MB) published with "gender accuracy 96% on validation set and
4.1 age MAE" (their validation set). Licence: NON-COMMERCIAL research use only.
Weights: ``insightface_genderage_2018.pth`` (the MXNet .params tensors re-saved with torch);
see ../shared/models/MANIFEST.md.

Porting notes (MXNet semantics):
- BatchNorm eps is 1e-3 (MXNet's default) for every conv BN, 2e-5 for ``bn1`` and ``fc1``.
- ``fix_gamma=True`` (every BN except ``bn1``) means the stored gamma is ignored (scale 1).
- Input normalisation (x - 127.5) * 0.0078125 is part of the graph, so it is part of ``forward``.

Output (N, 202): [0:2] gender logits (index 1 = male), [2:202] 100 (no, yes) pairs whose count
of "yes" is the age.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from models.weights import MODELS

__all__ = ["GenderAge", "GenderAgeClassifier", "decode", "INPUT_SIZE"]

log = logging.getLogger(__name__)

INPUT = MODELS["genderage"].input  # colour order, size, normalisation

INPUT_SIZE = 112  # pixels, square aligned crop
CONV_BN_EPS = 1e-3  # MXNet default, conv BNs carry no eps attribute
HEAD_BN_EPS = 2e-5  # bn1 and fc1
NUM_AGE_PAIRS = 100

# (output channels, depthwise stride) of blocks conv_2 .. conv_14
BLOCKS = (
    (16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1),
    (128, 1), (128, 1), (128, 1), (128, 1), (256, 2), (256, 1),
)  # fmt: skip


class MXBatchNorm(nn.Module):
    """Inference BatchNorm with MXNet's parameter names (gamma, beta, moving_mean, moving_var).

    Args:
        channels: number of channels (dim 1 of the input).
        eps: variance epsilon.
        fix_gamma: when True the stored gamma is ignored and the scale is 1, as MXNet does.
    """

    moving_mean: torch.Tensor
    moving_var: torch.Tensor

    def __init__(self, channels: int, eps: float, fix_gamma: bool) -> None:
        super().__init__()
        self.eps = eps
        self.fix_gamma = fix_gamma
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.fix_gamma else self.gamma
        return F.batch_norm(x, self.moving_mean, self.moving_var, weight, self.beta, False, 0.0, self.eps)


@torch.no_grad()
def fold_batchnorm(layer: nn.Conv2d | nn.Linear, bn: MXBatchNorm) -> None:
    """Fold ``bn`` (which follows ``layer``) into the layer's weight and bias, in place."""
    gamma = torch.ones_like(bn.gamma) if bn.fix_gamma else bn.gamma
    scale = gamma.double() / torch.sqrt(bn.moving_var.double() + bn.eps)
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    weight = layer.weight.double() * scale.view(-1, *([1] * (layer.weight.ndim - 1)))
    layer.weight.copy_(weight.float())
    new_bias = (bn.beta.double() + (bias - bn.moving_mean.double()) * scale).float()
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)


class ConvBNReLU(nn.Module):
    """Conv (no bias) + MXNet BatchNorm + ReLU; flattened names ``conv2d`` and ``batchnorm``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.batchnorm: nn.Module = MXBatchNorm(out_ch, CONV_BN_EPS, fix_gamma=True)  # nn.Identity once folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.batchnorm(self.conv2d(x)))

    def fold(self) -> None:
        """Fold the batch norm into the conv (inference only; changes the state_dict keys)."""
        if isinstance(self.batchnorm, MXBatchNorm):
            fold_batchnorm(self.conv2d, self.batchnorm)
            self.batchnorm = nn.Identity()


class GenderAge(nn.Module):
    """The network: (N, 3, 112, 112) RGB float 0..255 -> (N, 202) raw outputs.

    Submodule names follow the MXNet node names with ``_`` before the parameter suffix turned into
    ``.`` (``conv_3_dw_conv2d_weight`` -> ``conv_3_dw.conv2d.weight``, see ``mxnet_key``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_1 = ConvBNReLU(3, 8, 3)
        in_ch = 8
        for index, (out_ch, stride) in enumerate(BLOCKS, start=2):
            self.add_module(f"conv_{index}_dw", ConvBNReLU(in_ch, in_ch, 3, stride, groups=in_ch))
            self.add_module(f"conv_{index}", ConvBNReLU(in_ch, out_ch, 1))
            in_ch = out_ch
        self.bn1 = MXBatchNorm(in_ch, HEAD_BN_EPS, fix_gamma=False)
        self.relu1 = nn.PReLU(in_ch)
        self.pre_fc1 = nn.Linear(in_ch, 2 + 2 * NUM_AGE_PAIRS)
        self.fc1: nn.Module = MXBatchNorm(2 + 2 * NUM_AGE_PAIRS, HEAD_BN_EPS, fix_gamma=True)  # Identity once folded
        self._blocks = [self.conv_1] + [
            getattr(self, f"conv_{i}{part}") for i in range(2, 2 + len(BLOCKS)) for part in ("_dw", "")
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = INPUT.normalise(x)
        for block in self._blocks:
            x = block(x)
        return cast(torch.Tensor, self.relu1(self.bn1(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.fc1(self.pre_fc1(x.mean(dim=(2, 3)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def fold(self) -> GenderAge:
        """Fold each conv's batch norm into the conv and ``fc1`` into ``pre_fc1`` (``bn1``
        follows a ReLU and stays). For inference after loading; returns self."""
        for block in self._blocks:
            block.fold()
        if isinstance(self.fc1, MXBatchNorm):
            fold_batchnorm(self.pre_fc1, self.fc1)
            self.fc1 = nn.Identity()
        return self


_SUFFIXES = ("_moving_mean", "_moving_var", "_weight", "_bias", "_gamma", "_beta")
_CONV_PARTS = ("_conv2d", "_batchnorm")


def mxnet_key(name: str) -> str:
    """Map an MXNet parameter name to this module's state_dict key.

    ``conv_5_dw_batchnorm_moving_var`` -> ``conv_5_dw.batchnorm.moving_var``;
    ``relu1_gamma`` -> ``relu1.weight`` (PReLU slopes); ``pre_fc1_weight`` -> ``pre_fc1.weight``.
    """
    suffix = next((s for s in _SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise KeyError(f"unexpected gender-age parameter {name!r}")
    node, param = name[: -len(suffix)], suffix[1:]
    if node == "relu1":
        return "relu1.weight"
    part = next((p for p in _CONV_PARTS if node.endswith(p)), None)
    if part is not None:
        node = f"{node[: -len(part)]}.{part[1:]}"
    return f"{node}.{param}"


def decode(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 202) raw outputs -> p_male (N,) float32 in 0..1, age (N,) int64 in 0..100.

    p_male is softmax of the two gender logits, element 1; age is the number of the 100 pairs
    whose argmax is 1.
    """
    outputs = outputs.float()
    p_male = outputs[:, 0:2].softmax(dim=1)[:, 1]
    pairs = outputs[:, 2:].reshape(-1, NUM_AGE_PAIRS, 2)
    age = (pairs.argmax(dim=2) == 1).sum(dim=1)
    return p_male, age


class GenderAgeClassifier:
    """The network plus its pre/post-processing: aligned crops in, p_male and age out.

    Args:
        net: a GenderAge with weights loaded; its device and dtype are the classifier's
            (``from_file`` builds one).

    Example::

        classifier = GenderAgeClassifier.from_file("weights/insightface_genderage_2018.pth")
        p_male, age = classifier.predict(crops_rgb)  # (K, 3, 112, 112) float 0..255
    """

    taskname = "genderage"

    def __init__(self, net: GenderAge) -> None:
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
    ) -> GenderAgeClassifier:
        """Load ``weights_path`` strictly after checking its sha256 (default: the known hash of
        insightface_genderage_2018.pth), fold the batch norms (``GenderAge.fold``), move to
        ``device`` (default "cpu"); ``half`` runs the network in float16 (default False)."""
        from models.weights import MODELS, load_weights

        state = load_weights(weights_path, sha256 or MODELS["genderage"].sha256)
        net = GenderAge()
        net.load_state_dict({mxnet_key(k): v for k, v in state.items()}, strict=True)
        net = net.eval().fold().to(device)
        return cls(net.half() if half else net)

    @torch.inference_mode()
    def forward(self, crops_rgb: torch.Tensor) -> torch.Tensor:
        """(K, 3, 112, 112) RGB float 0..255 -> (K, 202) float32 raw outputs."""
        if crops_rgb.shape[0] == 0:
            return torch.empty(0, 2 + 2 * NUM_AGE_PAIRS, device=crops_rgb.device)
        batch = crops_rgb.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return cast(torch.Tensor, self.net(batch)).float()

    def predict(self, crops_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, 3, 112, 112) RGB float 0..255 -> p_male (K,) float32, age (K,) int64."""
        return decode(self.forward(crops_rgb))
