"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``): a 150x150 RGB face
chip in, a 128-D face descriptor out; two faces of one person lie closer than about 0.6.

Source: Davis King's dlib-models, CC0 1.0 (public domain), as shipped in the PyPI sdist
``face_recognition_models`` 0.3.0; trained on about 3 million faces of about 7,500 people
(FaceScrub, VGG-Face and photos scraped from the internet); 99.38 % on LFW as its author states.
``analyzer models fetch`` reads the ``.dat`` (dlib's own serialization, ``models.dlib_dat``) and
writes its tensors, named as this module's layers, to a ``.pth`` (``convert_dat``).

Architecture (dlib's ``examples/dnn_face_recognition_ex.cpp``, ``anet_type``):
conv 7x7/2 32 (no padding) - affine - ReLU - max pool 3/2 - 14 residual blocks (3 x 32,
64 down + 3 x 64, 128 down + 2 x 128, 256 down + 2 x 256, 256 down) - global average - fc 256->128
without bias. A block is conv 3x3 - affine - ReLU - conv 3x3 - affine, added to its input, ReLU; a
down-sampling block's first convolution has stride 2 and no padding and its shortcut is a 2x2
average pool whose missing channels are zero (``models.cydral.ResidualBlock``, the same dlib
construction). Sizes: 150 -> 72 -> 35 -> 17 -> 8 -> 4 (the stride-2 branch gives 3x3, the
pooled shortcut 4x4: dlib's ``add_prev`` zero-pads the smaller one) -> 2 -> 1.

Porting notes: each ``affine`` (dlib's inference batch norm, per-channel scale and shift) is
kept apart in the ``.pth`` and folded into the convolution before it when the weights are loaded
(float64 maths); the input normalisation ``(RGB byte - mean) / 256`` is part of ``forward``;
dlib's ``loss_metric`` returns the fc output unchanged, so ``forward`` does too: not L2-normalised
(norms about 1.38 on real faces), and dlib's 0.6 threshold is a Euclidean distance between these
raw vectors.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.cydral import AGE_CHIP_SIZE, ResidualBlock
from models.cydral import CHIP_PADDING as CYDRAL_PADDING
from models.errors import WeightsError
from models.weights import MODELS

__all__ = [
    "CHIP_SIZE",
    "CHIP_PADDING",
    "EMBEDDING_SIZE",
    "MATCH_DISTANCE",
    "BLOCKS",
    "DlibResNet",
    "FaceEmbedder",
    "convert_dat",
    "folded_state",
    "chip_template",
]

INPUT = MODELS["dlib_face_recognition"].input  # colour order, size, normalisation

CHIP_SIZE = 150  # pixels, square: dlib's compute_face_descriptor cuts 150 px chips ...
CHIP_PADDING = 0.25  # ... with get_face_chip_details(shape, 150, 0.25)
EMBEDDING_SIZE = 128
# dlib's distance threshold for "same person" (its loss_metric's dist_thresh, stored in the .dat,
# and the threshold of its face_recognition examples), a Euclidean distance between descriptors
MATCH_DISTANCE = 0.6
# (channels, stride) of the residual blocks in the order they run: dlib's alevel4 ... alevel0
BLOCKS: tuple[tuple[int, int], ...] = (
    (32, 1), (32, 1), (32, 1),
    (64, 2), (64, 1), (64, 1), (64, 1),
    (128, 2), (128, 1), (128, 1),
    (256, 2), (256, 1), (256, 1),
    (256, 2),
)  # fmt: skip
STEM_CHANNELS = 32


class DlibResNet(nn.Module):
    """(N, 3, 150, 150) RGB float 0..255 -> (N, 128) float face descriptors, as dlib computes them."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 7, 2, 0)
        blocks, channels = [], STEM_CHANNELS
        for out_channels, stride in BLOCKS:
            blocks.append(ResidualBlock(channels, out_channels, stride))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, EMBEDDING_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(INPUT.normalise(x))), 3, 2)
        x = self.blocks(x)
        return cast(torch.Tensor, self.fc(x.mean(dim=(2, 3))))


def _conv_names() -> list[str]:
    """This module's convolutions in the order they run (the .dat's order, innermost first)."""
    return ["stem"] + [f"blocks.{i}.conv{j}" for i in range(len(BLOCKS)) for j in (1, 2)]


def dat_stack() -> list[str]:
    """dlib's layer stack of ``anet_type`` from the loss inwards (``models.dlib_dat.read_network``)."""
    stack = ["fc", "avg_pool"]
    for _, stride in reversed(BLOCKS):
        block = ["affine", "con", "relu", "affine", "con"]
        if stride == 1:  # ares: relu<add_prev1<block<tag1<...>>>>
            stack += ["relu", "add_prev", *block, "tag"]
        else:  # ares_down: relu<add_prev2<avg_pool<skip1<tag2<block<tag1<...>>>>>>>
            stack += ["relu", "add_prev", "avg_pool", "skip", "tag", *block, "tag"]
    return stack + ["max_pool", "relu", "affine", "con"]


def _check(condition: bool, source: Path, what: str) -> None:
    if not condition:
        raise WeightsError(f"{source}: not dlib's face-recognition ResNet: {what}")


def convert_dat(source: Path, target: Path) -> None:
    """Write the tensors of ``dlib_face_recognition_resnet_model_v1.dat`` as a torch state dict.

    Keys are this module's (``stem.weight``, ``blocks.3.conv1.bias``, ``fc.weight``) plus each
    convolution's affine as ``<conv>.affine.gamma`` / ``.beta``, in the order the layers run;
    ``fc.weight`` is stored (out, in) as ``nn.Linear`` holds it. The layers' sizes, strides,
    paddings and the input normalisation are checked against this module on the way.
    """
    from models.dlib_dat import read_network

    network = read_network(source, dat_stack())
    means = network.input["mean_rgb"]
    _check(np.allclose(means, INPUT.mean, rtol=0, atol=1e-4), source, f"input means {means}")
    _check((network.input["nr"], network.input["nc"]) == (CHIP_SIZE, CHIP_SIZE), source, "input size")
    module = DlibResNet()
    convs = iter(_conv_names())
    state: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    pending = None  # the convolution whose affine comes next
    for layer in network.layers:
        if layer.kind == "con":
            name = next(convs)
            conv = module.get_submodule(name)
            assert isinstance(conv, nn.Conv2d)
            expected = (conv.out_channels, *conv.kernel_size, *conv.stride, *cast(tuple[int, int], conv.padding))
            found = tuple(layer.settings[k] for k in ("num_filters", "nr", "nc", "stride_y", "stride_x"))
            found += (layer.settings["padding_y"], layer.settings["padding_x"])
            _check(found == expected, source, f"{name} is {found}, expected {expected}")
            _check("bias" in layer.arrays, source, f"{name} has no bias")
            state[f"{name}.weight"] = torch.from_numpy(layer.arrays["weight"].copy())
            state[f"{name}.bias"] = torch.from_numpy(layer.arrays["bias"].copy())
            pending = name
        elif layer.kind == "affine":
            _check(pending is not None, source, "an affine layer without a convolution before it")
            state[f"{pending}.affine.gamma"] = torch.from_numpy(layer.arrays["gamma"].copy())
            state[f"{pending}.affine.beta"] = torch.from_numpy(layer.arrays["beta"].copy())
            pending = None
        elif layer.kind in ("max_pool", "avg_pool"):
            pool = tuple(layer.settings[k] for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"))
            allowed = {"max_pool": {(3, 3, 2, 2, 0, 0)}, "avg_pool": {(2, 2, 2, 2, 0, 0), (0, 0, 1, 1, 0, 0)}}
            _check(pool in allowed[layer.kind], source, f"{layer.kind} {pool}")
        elif layer.kind == "fc":
            _check(layer.settings["bias_mode"] == 1, source, "the fc layer has a bias")
            weight = np.ascontiguousarray(layer.arrays["weight"].T)  # dlib's (in, out) -> (out, in)
            _check(weight.shape == tuple(module.fc.weight.shape), source, f"fc {weight.shape}")
            state["fc.weight"] = torch.from_numpy(weight)
    _check(next(convs, None) is None, source, "too few convolutions")
    torch.save(state, target)


def folded_state(raw: collections.abc.Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DlibResNet's state dict from the converted ``.pth``: each affine folded into its
    convolution (float64 maths): weight x gamma per output channel, bias x gamma + beta."""
    state: dict[str, torch.Tensor] = {"fc.weight": raw["fc.weight"].float()}
    for name in _conv_names():
        gamma = raw[f"{name}.affine.gamma"].double()
        beta = raw[f"{name}.affine.beta"].double()
        state[f"{name}.weight"] = (raw[f"{name}.weight"].double() * gamma.view(-1, 1, 1, 1)).float()
        state[f"{name}.bias"] = (raw[f"{name}.bias"].double() * gamma + beta).float()
    return state


def chip_template(template: tuple[tuple[float, float], ...], size: int, padding: float) -> torch.Tensor:
    """Where the 5 landmarks go in a dlib chip of ``size`` px and ``padding``, from their place in
    another dlib chip (``models.cydral.CHIP_TEMPLATES``: 64 px, padding 0.2).

    dlib puts a face point at unit position u (its mean face shape, 0..1) at chip pixel
    (padding + u) / (2 padding + 1) x (size - 1) (``get_face_chip_details``, then
    ``extract_image_chip``, which maps the chip's corner pixels onto the rectangle's corners), so
    one dlib chip's template gives any other's; dlib's ``centered_drect`` makes each chip's
    rectangle one image pixel narrower, a relative 1 / (size x scale) that a fixed template
    ignores (0.03 px at 150 px for a face about 150 px wide). Returns (5, 2) float32, x, y in pixels.
    """
    points = torch.tensor(template, dtype=torch.float64)
    unit = points / (AGE_CHIP_SIZE - 1) * (2 * CYDRAL_PADDING + 1) - CYDRAL_PADDING
    return ((padding + unit) / (2 * padding + 1) * (size - 1)).float()


class FaceEmbedder:
    """The network plus its loading: RGB chips in, 128-D descriptors out.

    Example::

        embedder = FaceEmbedder.from_file("weights/dlib_face_recognition_resnet_v1.pth")
        descriptors = embedder.embed(chips150_rgb)  # (K, 128) float32
    """

    def __init__(self, net: DlibResNet) -> None:
        self.net = net.eval()
        parameter = next(net.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu", half: bool = False) -> FaceEmbedder:
        """Load the converted weights (sha256-checked against models.weights.MODELS) onto
        ``device`` (default "cpu"); ``half`` runs the net in float16 (default False)."""
        from models.weights import load_weights

        state = folded_state(load_weights(path, MODELS["dlib_face_recognition"].sha256))
        with torch.device("meta"):  # no random initialisation of weights that are replaced at once
            net = DlibResNet()
        net.load_state_dict(state, assign=True)
        return cls(net.to(device, torch.float16 if half else torch.float32))

    @torch.inference_mode()
    def embed(self, chips_rgb: torch.Tensor) -> torch.Tensor:
        """(K, 3, 150, 150) RGB float 0..255 -> (K, 128) float32 descriptors."""
        if chips_rgb.shape[0] == 0:
            return torch.empty(0, EMBEDDING_SIZE, device=chips_rgb.device)
        batch = chips_rgb.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return cast(torch.Tensor, self.net(batch)).float()
