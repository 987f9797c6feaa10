"""Choosing and opening a reader: ``opencv``, ``pyav``, ``nvdec`` or ``auto``.

- ``opencv`` and ``pyav``: FFmpeg on the CPU (``analyzer.video.readers.opencv``, ``.pyav``).
- ``nvdec``: NVIDIA's hardware decoder through PyNvVideoCodec (``analyzer.video.readers.nvdec``);
  batches are CUDA tensors.
- ``auto``: ``nvdec`` when CUDA, PyNvVideoCodec and a codec it decodes are present, else ``opencv``.

All give the same frames, timestamps and orientation (rotation is applied from ``probe``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from analyzer.errors import SettingsError
from analyzer.video.probe import VideoInfo
from analyzer.video.readers.base import FrameReader
from analyzer.video.readers.opencv import OpenCVReader
from analyzer.video.readers.pyav import PyAVReader

logger = logging.getLogger(__name__)

Backend = Literal["opencv", "pyav", "nvdec", "auto"]
BACKENDS: tuple[str, ...] = ("opencv", "pyav", "nvdec", "auto")
NVDEC_MAX_CPUS = 8  # auto prefers NVDEC up to this many CPUs (see resolve_backend)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_backend(backend: str, info: VideoInfo) -> str:
    """The concrete backend for ``backend``.

    ``auto`` is ``nvdec`` when it can decode ``info`` and the process has at most
    ``NVDEC_MAX_CPUS`` CPUs, else ``opencv``: one NVDEC session decoded 1080p H.264 at 519 fps on an
    H200 machine, where OpenCV reached 328 fps on 4 CPUs (a g5.xlarge has 4 vCPUs) but 734 on 16.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    from analyzer.video.readers import nvdec

    reason = nvdec.unavailable_reason(info.codec)
    if reason is None and usable_cpus() <= NVDEC_MAX_CPUS:
        return "nvdec"
    reason = reason or f"{usable_cpus()} CPUs decode faster than one NVDEC session"
    logger.info("decoder auto: opencv (%s)", reason)
    return "opencv"


def open_reader(backend: str, path: Path, info: VideoInfo, *, threads: int = 0, name: str | None = None) -> FrameReader:
    """Open the reader for a concrete backend name (``threads`` does not apply to nvdec)."""
    if backend == "opencv":
        return OpenCVReader(path, info, threads=threads, name=name)
    if backend == "pyav":
        return PyAVReader(path, info, threads=threads, name=name)
    if backend == "nvdec":
        from analyzer.video.readers import nvdec

        # chosen by name where it cannot run (no CUDA, the library does not load): a setting to fix
        # (exit 2), not a bug (9); settings already refused it where PyNvVideoCodec is not installed
        reason = nvdec.unavailable_reason()
        if reason is not None:
            raise SettingsError(f"invalid setting ANALYZER_DECODER / --decoder: nvdec cannot run here: {reason}")
        return nvdec.NvdecReader(path, info, name=name)
    raise ValueError(f"unknown decoder backend {backend!r}")
