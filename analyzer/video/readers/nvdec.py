"""NVDEC decoding backend: NVIDIA's hardware video decoder through PyNvVideoCodec.

PyNvVideoCodec (``pip install pynvvideocodec``) is optional. Its demuxer (FFmpeg) reads packets,
its decoder returns NV12 surfaces in GPU memory; each sampled surface is copied into a torch
tensor through DLPack, and a batch is converted NV12 -> BGR on the GPU (``nv12_to_bgr``) with the
stream's matrix (BT.709 or BT.601) and range, then rotated like the other backends. Frames never
visit host memory. Every frame is decoded (the hardware cannot skip), only sampled ones are
copied and converted.

The decoder runs on a torch CUDA stream (passed with its context to PyNvVideoCodec), so copies
are ordered after the decoder's own post-processing; each batch is synchronised before it is
handed over, so the consumer may use it on any stream.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from analyzer.errors import InfrastructureError, UndecodableVideo
from analyzer.video.probe import VideoInfo
from analyzer.video.readers.base import DecodeStats, StopFlag
from analyzer.video.sampling import TimestampSampler

logger = logging.getLogger(__name__)

# FFmpeg codec names (``VideoInfo.codec``) that NVDEC decodes on current GPUs (8-bit 4:2:0 output).
NVDEC_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "vp8", "mpeg2video", "mpeg4", "vc1"})
MAX_CONSECUTIVE_ERRORS = 50  # packets in a row that fail before the stream counts as undecodable

# YUV -> RGB matrix coefficients (Kr, Kb) per colour standard.
_COEFFICIENTS = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def unavailable_reason(codec: str | None = None) -> str | None:
    """Why NVDEC cannot be used here (no CUDA, no PyNvVideoCodec, codec), or None if it can."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    problem = _library_problem()
    if problem is not None:
        return problem
    if codec is not None and codec not in NVDEC_CODECS:
        return f"NVDEC does not decode {codec}"
    return None


@functools.cache
def _library_problem() -> str | None:
    """None when PyNvVideoCodec imports (it loads libnvcuvid), else why not."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return "PyNvVideoCodec is not installed"
    try:
        import PyNvVideoCodec  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"PyNvVideoCodec does not load ({exc})"
    return None


def nv12_to_bgr(nv12: torch.Tensor, *, colorspace: str = "bt601", full_range: bool = False) -> torch.Tensor:
    """Convert NV12 pictures to BGR.

    ``nv12``: uint8 N x (H * 3 / 2) x W (the Y plane, then the interleaved U/V plane at half
    resolution), on any device. Returns uint8 N x H x W x 3, BGR, on the same device. Chroma is
    upsampled by repetition (as FFmpeg's unscaled converter does); ``colorspace`` is "bt601" or
    "bt709"; ``full_range`` selects 0-255 rather than 16-235/16-240 levels.
    """
    if nv12.dim() != 3 or nv12.shape[1] % 3 != 0:
        raise ValueError(f"expected N x (H*3/2) x W NV12, got shape {tuple(nv12.shape)}")
    n, rows, width = nv12.shape
    height = rows * 2 // 3
    kr, kb = _COEFFICIENTS[colorspace]
    kg = 1.0 - kr - kb
    y = nv12[:, :height].float()
    uv = nv12[:, height:].reshape(n, height // 2, width // 2, 2).float()
    # Upsample chroma 2x2 by repetition.
    uv = uv.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    u, v = uv[..., 0] - 128.0, uv[..., 1] - 128.0
    if not full_range:
        y = (y - 16.0) * (255.0 / 219.0)
        u = u * (255.0 / 224.0)
        v = v * (255.0 / 224.0)
    r = y + (2.0 * (1.0 - kr)) * v
    b = y + (2.0 * (1.0 - kb)) * u
    g = (y - kr * r - kb * b) / kg
    bgr = torch.stack((b, g, r), dim=-1)
    return bgr.round_().clamp_(0.0, 255.0).to(torch.uint8)


def _current_cuda_context() -> int:
    """The CUcontext handle current on this thread (torch's primary context once it is set)."""
    libcuda = ctypes.CDLL("libcuda.so.1")
    handle = ctypes.c_void_p()
    status = libcuda.cuCtxGetCurrent(ctypes.byref(handle))
    if status != 0 or not handle.value:
        raise InfrastructureError(f"NVDEC: no current CUDA context (cuCtxGetCurrent returned {status})")
    return int(handle.value)


class NvdecReader:
    """Decodes on the GPU; yields sampled NV12 pictures, batches them as BGR CUDA tensors."""

    name = "nvdec"

    def __init__(self, path: Path, info: VideoInfo, *, device: int | None = None, name: str | None = None) -> None:
        import PyNvVideoCodec as nvc

        self.info = info
        self._name = name or path.name
        self._device = torch.cuda.current_device() if device is None else device
        # This runs on the producer thread: make torch's primary context current here.
        torch.cuda.set_device(self._device)
        torch.empty(1, device=f"cuda:{self._device}")
        self.stream = torch.cuda.Stream(device=self._device)
        try:
            self._demuxer = nvc.CreateDemuxer(filename=str(path))
            codec = self._demuxer.GetNvCodecId()
        except Exception as exc:  # PyNvVideoCodec raises its own exception types
            raise UndecodableVideo(f"video {self._name}: the NVDEC demuxer cannot read it ({exc})") from exc
        try:
            self._decoder = nvc.CreateDecoder(
                gpuid=self._device,
                codec=codec,
                cudacontext=_current_cuda_context(),
                cudastream=self.stream.cuda_stream,
                usedevicememory=True,
            )
        except Exception as exc:
            # The stream probed fine, so this is the GPU/driver side (no NVDEC engine, sessions used up).
            raise InfrastructureError(f"video {self._name}: cannot create an NVDEC decoder ({exc})") from exc
        upright = info.rotation in (0, 180)
        self._coded_height = info.height if upright else info.width
        self._coded_width = info.width if upright else info.height

    def frames(
        self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        number = -1
        errors = 0
        with torch.cuda.stream(self.stream):
            while not stop.is_set():
                try:
                    packet = self._demuxer.Demux()
                except StopIteration:
                    return
                try:
                    decoded = self._decoder.Decode(packet)
                    errors = 0
                except Exception as exc:  # PyNvVideoCodec raises plain RuntimeErrors
                    stats.corrupt += 1
                    errors += 1
                    logger.debug("video %s: NVDEC packet error: %s", self._name, exc)
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        raise UndecodableVideo(f"video {self._name}: NVDEC fails on every packet") from exc
                    decoded = []
                for frame in decoded:
                    number += 1
                    stats.decoded += 1
                    ts_ms = self.info.timestamp_ms(int(frame.getPTS()))
                    stats.position_ms = ts_ms
                    if sampler.due(ts_ms):
                        sampler.keep(ts_ms)
                        yield number, ts_ms, self._nv12(frame)
                if packet.bsl == 0:  # end of stream: this empty packet flushed the decoder
                    return

    def _nv12(self, frame: Any) -> torch.Tensor:
        """Copy a decoded surface into its own (H * 3 / 2) x W uint8 CUDA tensor."""
        surface = torch.from_dlpack(frame)
        if surface.dim() == 3 and surface.shape[-1] == 1:
            surface = surface[..., 0]
        rows = self._coded_height * 3 // 2
        if surface.dim() != 2 or surface.shape[0] < rows:
            raise UndecodableVideo(f"video {self._name}: unexpected NVDEC surface shape {tuple(surface.shape)}")
        return surface[:rows, : self._coded_width].clone()

    def collate(self, images: list[torch.Tensor]) -> torch.Tensor:
        """N x H x W x 3 uint8 BGR on the GPU, rotated, ready for any stream."""
        with torch.cuda.stream(self.stream):
            bgr = nv12_to_bgr(torch.stack(images), colorspace=self.info.colorspace, full_range=self.info.full_range)
            if self.info.rotation:
                # rot90 with k > 0 turns counter-clockwise; rotation is clockwise.
                bgr = torch.rot90(bgr, k=-self.info.rotation // 90, dims=(1, 2)).contiguous()
        self.stream.synchronize()
        return bgr

    def close(self) -> None:
        self._decoder = None
        self._demuxer = None
