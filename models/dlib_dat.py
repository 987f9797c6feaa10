"""Reading a dlib DNN saved with ``dlib::serialize`` (a ``.dat`` file) into plain numpy arrays.

What is read, from dlib's own source (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``,
``input.h``, ``loss.h``, ``dlib/cuda/tensor.h``):

- integers: one control byte (low 4 bits = byte count, 0x80 = negative), then the magnitude's
  bytes, little endian; strings: an unsigned length, then the bytes; bools: ASCII ``'0'``/``'1'``;
  floats and doubles: an int64 mantissa and an int16 exponent (value = mantissa * 2**exponent);
  tensors: version 2, num_samples, k, nr, nc, then raw little-endian float32 values; alias
  tensors (views into a layer's params): version 1 and the four sizes only.
- a network nests: each layer writes its version, then its whole subnetwork, then its own
  details and cached tensors. So the file holds every layer's version header from the loss inwards,
  the input layer, then the layers' details from the innermost outwards. Tag and skip layers write a
  version and nothing else: where they sit is not in the file, so the reader is told the network's
  stack (``Stack``) and checks what it finds against it.

Only the layer kinds of dlib's face-recognition ResNet are read (con, affine, relu, max_pool,
avg_pool, add_prev, fc, input_rgb_image_sized, loss_metric); anything else is a WeightsError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import WeightsError

__all__ = ["DatLayer", "DatNetwork", "read_network"]

TAG_KINDS = ("tag", "skip")  # stack entries that write a version header only


@dataclass
class DatLayer:
    """One computational layer as read: its kind (``con``, ``affine``, ...), its scalar settings
    and its parameter arrays (float32, dlib's shapes)."""

    kind: str
    version: str
    settings: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DatNetwork:
    """A whole network: input layer settings, layers from the input outwards, loss settings."""

    input: dict[str, Any]
    layers: list[DatLayer]
    loss: dict[str, Any]


class _Reader:
    def __init__(self, data: bytes, source: Path) -> None:
        self.data, self.pos, self.source = data, 0, source

    def fail(self, what: str) -> WeightsError:
        return WeightsError(f"{self.source}: not the expected dlib network: {what} at byte {self.pos}")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("file ends early")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return math.ldexp(mantissa, exponent)

    def string(self) -> str:
        return self.take(self.integer()).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        value = self.take(1)
        if value not in (b"0", b"1"):
            raise self.fail(f"bad bool {value!r}")
        return value == b"1"

    def sizes(self) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc

    def tensor(self) -> np.ndarray:
        if (version := self.integer()) != 2:
            raise self.fail(f"tensor version {version}")
        shape = self.sizes()
        count = math.prod(shape)
        return np.frombuffer(self.take(4 * count), "<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        if (version := self.integer()) != 1:
            raise self.fail(f"alias tensor version {version}")
        return self.sizes()

    def expect(self, versions: tuple[str, ...]) -> str:
        version = self.string()
        if version not in versions:
            raise self.fail(f"found {version!r} where {' or '.join(versions)} was expected")
        return version


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """The consecutive views dlib's alias tensors make of a layer's params, as arrays."""
    flat, start, parts = params.reshape(-1), 0, []
    for shape in shapes:
        size = math.prod(shape)
        parts.append(flat[start : start + size].reshape(shape).copy())
        start += size
    if start != flat.size:
        raise WeightsError(f"a dlib layer holds {flat.size} parameters where its shapes {shapes} need {start}")
    return parts


def _con(r: _Reader) -> DatLayer:
    version = r.expect(("con_4", "con_5", "con_6"))
    params = r.tensor()
    names = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    settings: dict[str, Any] = {name: r.integer() for name in names}
    filters, biases = r.alias(), r.alias()
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        settings[name] = r.real()
    settings["use_bias"] = r.boolean() if version != "con_4" else True
    if version == "con_6":
        settings["use_relu"] = r.boolean()
    shapes = [filters] + ([biases] if settings["use_bias"] else [])
    arrays = dict(zip(("weight", "bias"), _split(params, *shapes)))
    if "bias" in arrays:
        arrays["bias"] = arrays["bias"].reshape(-1)
    return DatLayer("con", version, settings, arrays)


def _affine(r: _Reader) -> DatLayer:
    version = r.expect(("affine_", "affine_2"))
    params = r.tensor()
    gamma, beta = r.alias(), r.alias()
    settings: dict[str, Any] = {"mode": r.integer()}
    if version == "affine_2":
        settings["disabled"] = r.boolean()
    scale, shift = _split(params, gamma, beta)
    return DatLayer("affine", version, settings, {"gamma": scale.reshape(-1), "beta": shift.reshape(-1)})


def _relu(r: _Reader) -> DatLayer:
    version = r.expect(("relu_", "relu_2"))
    return DatLayer("relu", version, {"disabled": r.boolean()} if version == "relu_2" else {})


def _pool(kind: str) -> Any:
    def read(r: _Reader) -> DatLayer:
        version = r.expect((f"{kind}_2",))
        names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DatLayer(kind, version, {name: r.integer() for name in names})

    return read


def _add_prev(r: _Reader) -> DatLayer:
    return DatLayer("add_prev", r.expect(("add_prev_",)))


def _fc(r: _Reader) -> DatLayer:
    version = r.expect(("fc_2", "fc_3"))
    settings: dict[str, Any] = {"num_outputs": r.integer(), "num_inputs": r.integer()}
    params = r.tensor()
    weights, biases = r.alias(), r.alias()
    settings["bias_mode"] = r.integer()  # 0: with bias, 1: fc_no_bias
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        settings[name] = r.real()
    if version == "fc_3":
        settings["use_bias"] = r.boolean()
    has_bias = settings["bias_mode"] == 0 and settings.get("use_bias", True)
    parts = _split(params, *([weights, biases] if has_bias else [weights]))
    arrays: dict[str, np.ndarray] = {"weight": parts[0].reshape(settings["num_inputs"], settings["num_outputs"])}
    if has_bias:
        arrays["bias"] = parts[1].reshape(-1)
    return DatLayer("fc", version, settings, arrays)  # weight (in, out), as dlib multiplies


_LAYER_READERS = {
    "con": _con,
    "affine": _affine,
    "relu": _relu,
    "max_pool": _pool("max_pool"),
    "avg_pool": _pool("avg_pool"),
    "add_prev": _add_prev,
    "fc": _fc,
}


def _input(r: _Reader) -> dict[str, Any]:
    r.expect(("input_rgb_image_sized",))
    means = [r.real() for _ in range(3)]
    return {"mean_rgb": tuple(means), "nr": r.integer(), "nc": r.integer()}


def _loss(r: _Reader) -> dict[str, Any]:
    version = r.expect(("loss_metric_", "loss_metric_2"))
    if version == "loss_metric_":
        return {}
    return {"margin": r.real(), "distance_threshold": r.real()}


def _layer_trailer(r: _Reader, version: int, bottom: bool) -> None:
    """What an ``add_layer`` writes after its details: three flags and cached tensors (empty in a
    saved model; read and dropped)."""
    for _ in range(3):  # setup called, gradient stale, output and gradient disabled
        r.boolean()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if bottom:
        r.tensor()  # grad_final
        if version >= 3:
            r.integer()  # sample expansion factor
    elif version == 2:
        r.tensor()  # params_grad


def read_network(path: str | Path, stack: list[str]) -> DatNetwork:
    """Read a dlib network saved by ``serialize(net)`` whose layers are ``stack``.

    Args:
        path: the ``.dat`` file.
        stack: the network's layers from the loss inwards (the order of dlib's type, e.g.
            ``fc, avg_pool, relu, add_prev, ..., con``), without the loss and input layers; tag
            and skip layers as ``"tag"``/``"skip"``.

    Returns:
        The input settings, the computational layers from the input outwards, the loss settings.
        WeightsError if the file does not hold exactly that network.
    """
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    if (version := r.integer()) != 1:
        raise r.fail(f"loss layer version {version}")
    loss = _loss(r)
    headers = []
    for index, kind in enumerate(stack):
        version = r.integer()
        bottom = index == len(stack) - 1
        allowed = (1,) if kind in TAG_KINDS else (2, 3) if bottom else (1, 2)
        if version not in allowed:
            raise r.fail(f"{kind} layer version {version}")
        headers.append(version)
    network_input = _input(r)
    layers = []
    for index in reversed(range(len(stack))):
        kind = stack[index]
        if kind in TAG_KINDS:
            continue
        if kind not in _LAYER_READERS:
            raise WeightsError(f"{path}: no reader for dlib layer kind {kind!r}")
        layers.append(_LAYER_READERS[kind](r))
        _layer_trailer(r, headers[index], bottom=index == len(stack) - 1)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes left over")
    return DatNetwork(network_input, layers, loss)
